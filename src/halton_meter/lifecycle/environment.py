"""The environment variables that make clients use the meter: proxy and CA, every spelling."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

# Every CA variable a common client reads (see docs/configuration.md for which client reads what).
CA_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    # Codex CLI: read before SSL_CERT_FILE and added to the system roots, for its HTTPS and
    # its WebSockets (openai/codex codex-rs/codex-client/src/custom_ca.rs); set so that a value
    # left from elsewhere cannot hide the meter's CA.
    "CODEX_CA_CERTIFICATE",
)
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
LOOPBACK = ("localhost", "127.0.0.1", "::1")


# undici (Node's fetch, Claude Code) sends proxy credentials only when the URL has both a user
# and a password, so the project name comes with this placeholder password.
PROJECT_PASSWORD = "meter"


def proxy_url(port: int, project: str | None = None) -> str:
    """The proxy URL; a project rides in its user part and reaches the meter as
    Proxy-Authorization, so no process lookup is needed."""
    user = f"{quote(project, safe='')}:{PROJECT_PASSWORD}@" if project else ""
    return f"http://{user}127.0.0.1:{port}"


def meter_environment(
    base: Mapping[str, str], port: int, bundle: Path, project: str | None = None
) -> dict[str, str]:
    """`base` plus the proxy and CA variables; the user's NO_PROXY entries are kept and
    loopback is always added."""
    env = dict(base)
    url = proxy_url(port, project)
    for name in PROXY_VARIABLES:
        env[name] = url
    for name in CA_VARIABLES:
        env[name] = str(bundle)
    env["NODE_USE_ENV_PROXY"] = "1"
    existing = env.get("NO_PROXY") or env.get("no_proxy") or ""
    entries = [item.strip() for item in existing.replace(" ", ",").split(",") if item.strip()]
    entries += [host for host in LOOPBACK if host not in entries]
    env["NO_PROXY"] = env["no_proxy"] = ",".join(entries)
    return env


def without_credentials(value: str | None) -> str | None:
    """A proxy URL may carry a corporate user and password: never write them to disk."""
    if value is None or "@" not in value:
        return value
    parts = urlsplit(value)
    if parts.password is None and parts.username is None:
        return value
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
