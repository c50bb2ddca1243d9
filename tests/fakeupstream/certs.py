"""A throwaway PKI so the fake upstream can pose as the real provider hosts over TLS.

The proxy under test verifies upstream certificates against a CA we hand it, so one server
certificate covering every provider host lets a single fake listener stand in for all of them.
Files are cached in the given directory and reused while valid, because generating keys on
every test run is wasted time and parallel runs must agree on one CA.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "Halton Meter Test Upstream CA"
SERVER_NAME = "Halton Meter Fake Upstream"

DNS_NAMES: tuple[str, ...] = (
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
    "cloudcode-pa.googleapis.com",
    "api.x.ai",
    "api.groq.com",
    "api.mistral.ai",
    "api.deepseek.com",
    "openrouter.ai",
    "api.together.xyz",
    "api.fireworks.ai",
    "api.cerebras.ai",
    "api.perplexity.ai",
    "chatgpt.com",
    "bedrock-runtime.us-east-1.amazonaws.com",
    "bedrock-runtime.us-west-2.amazonaws.com",
    "bedrock-runtime-fips.us-east-1.amazonaws.com",
    "aiplatform.googleapis.com",
    "us-east5-aiplatform.googleapis.com",
    "us-central1-aiplatform.googleapis.com",
    "halton-test.openai.azure.com",
    "halton-test.cognitiveservices.azure.com",
    "halton-test.services.ai.azure.com",
    "api.moonshot.ai",
    "example.org",
    "localhost",
)
IP_ADDRESSES: tuple[str, ...] = ("127.0.0.1",)

CA_DAYS = 3650
SERVER_DAYS = 365
RENEW_MARGIN = dt.timedelta(days=7)


@dataclass(frozen=True)
class TestPKI:
    """Paths of the PEM files; hand `ca_cert` to clients and the proxy as the trust root."""

    __test__ = False  # not a pytest test class despite the name

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def make_test_pki(directory: Path) -> TestPKI:
    """Create (or reuse, when still valid) the test CA and the multi-host server certificate."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pki = TestPKI(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca-key.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
    )
    with _locked(directory / ".lock"):
        if not _is_valid(pki):
            _generate(pki)
    return pki


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise check-and-generate so concurrent test processes never mix two CAs."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_valid(pki: TestPKI) -> bool:
    """True when all files exist, chain together, cover every name and are not near expiry."""
    try:
        ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
        key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
        serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    deadline = dt.datetime.now(dt.UTC) + RENEW_MARGIN
    if ca.not_valid_after_utc < deadline or server.not_valid_after_utc < deadline:
        return False
    if server.issuer != ca.subject or ca.subject.rfc4514_string() != f"CN={CA_NAME}":
        return False
    try:
        server.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != server.public_key().public_bytes(*spki):
        return False
    try:
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(DNS_NAMES) <= dns and set(IP_ADDRESSES) <= ips


def _generate(pki: TestPKI) -> None:
    """Issue a fresh CA and server certificate (EC P-256: instant to generate, widely accepted)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in DNS_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    _write(pki.ca_key, _key_pem(ca_key), private=True)
    _write(pki.server_key, _key_pem(server_key), private=True)
    _write(pki.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    _write(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write atomically so a reader never sees half a PEM file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
