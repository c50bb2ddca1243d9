"""The meter's CA (mitmproxy's own files) and the bundle that clients' CA variables point at.

The CA lives in mitmproxy's folder (`~/.mitmproxy`) so an upgrade or reinstall keeps the same
CA forever; a CA already there is reused. The client bundle holds the public roots plus our CA,
because every CA variable except NODE_EXTRA_CA_CERTS *replaces* a client's default roots.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path

import certifi

from halton_meter.config import Config
from halton_meter.paths import Paths
from halton_meter.runstate import write_atomic

CA_BASENAME = "mitmproxy"  # fixed by mitmproxy
CA_ORGANIZATION = "Halton Meter"
CA_COMMON_NAME = "Halton Meter local CA"


def ca_dir(config: Config, paths: Paths) -> Path:
    return config.ca_dir if config.ca_dir is not None else paths.default_ca_dir()


def ca_cert_path(config: Config, paths: Paths) -> Path:
    return ca_dir(config, paths) / f"{CA_BASENAME}-ca-cert.pem"


def ensure_ca(config: Config, paths: Paths) -> Path:
    """Reuse the CA in the CA folder or create one named after the product; returns the
    certificate's path. Folder 0700, private key files 0600."""
    folder = ca_dir(config, paths)
    if not (folder / f"{CA_BASENAME}-ca.pem").exists():
        from mitmproxy import certs  # slow to import; only needed the first time

        certs.CertStore.create_store(
            folder, CA_BASENAME, 2048, organization=CA_ORGANIZATION, cn=CA_COMMON_NAME
        )
    if os.name != "nt":
        folder.chmod(0o700)
        for secret in (f"{CA_BASENAME}-ca.pem", f"{CA_BASENAME}-ca.p12"):
            if (folder / secret).exists():
                (folder / secret).chmod(0o600)
    return folder / f"{CA_BASENAME}-ca-cert.pem"


def thumbprint(cert: Path) -> str:
    """The SHA-1 of the certificate's DER bytes in upper-case hex: how certutil and `security`
    name a certificate."""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha1(der).hexdigest().upper()


def client_bundle_bytes(config: Config, paths: Paths) -> bytes:
    """Public roots + the meter's CA (+ the corporate roots of `[upstream] ca_bundle`)."""
    parts = [Path(certifi.where())]
    if config.upstream.ca_bundle is not None:
        parts.append(config.upstream.ca_bundle)
    parts.append(ensure_ca(config, paths))
    return _concatenate(parts)


def write_client_bundle(config: Config, paths: Paths) -> Path:
    """The client bundle, written atomically to a stable path outside any virtualenv."""
    write_atomic(paths.ca_bundle, client_bundle_bytes(config, paths))
    return paths.ca_bundle


def write_upstream_bundle(config: Config, paths: Paths) -> Path | None:
    """Roots the proxy trusts for upstream TLS: certifi plus `[upstream] ca_bundle`, or None
    to keep mitmproxy's default (certifi alone)."""
    if config.upstream.ca_bundle is None:
        return None
    text = _concatenate([Path(certifi.where()), config.upstream.ca_bundle])
    target = paths.home / "upstream-ca.pem"
    write_atomic(target, text)
    return target


def _concatenate(files: list[Path]) -> bytes:
    """PEM files joined as bytes: corporate bundles may carry UTF-8 comments."""
    return b"".join(path.read_bytes().strip() + b"\n" for path in files)
