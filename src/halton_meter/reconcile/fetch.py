"""One direct HTTPS GET to a provider's admin API, never through the meter's own proxy.

The CLI (and the daemon) may run with HTTPS_PROXY pointing at the meter; the admin API is not an
LLM call and the key must not pass through a capturing proxy, so the environment's proxy
variables are ignored. `[upstream] proxy` (a corporate proxy) is honoured with CONNECT, and
`[upstream] resolve` / `ca_bundle` apply as they do to the daemon's upstream connections, so a
split-horizon network (and the tests' local fake) is reached under the real host names.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from halton_meter import __version__
from halton_meter.config import UpstreamSettings
from halton_meter.upstream import resolve_target

TIMEOUT = 30.0


class FetchError(Exception):
    """The provider could not be reached or answered something unreadable."""


class KeyRefused(Exception):
    """The provider refused the admin key (401/403): wrong kind of key, revoked, or lacking
    the permission to read usage and cost reports."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Transport:
    """How to reach a provider: `[upstream]` settings, nothing from the environment."""

    upstream: UpstreamSettings

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.upstream.ca_bundle is not None:
            context.load_verify_locations(cafile=str(self.upstream.ca_bundle))
        return context

    def connection(self, host: str, port: int = 443) -> http.client.HTTPSConnection:
        context = self.context()
        if self.upstream.proxy:
            proxy = urlsplit(self.upstream.proxy)
            connection = http.client.HTTPSConnection(
                proxy.hostname or "", proxy.port or 3128, context=context, timeout=TIMEOUT
            )
            headers = {}
            if proxy.username is not None:
                pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
                headers["Proxy-Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            connection.set_tunnel(host, port, headers=headers)
            return connection
        address = resolve_target(self.upstream.resolve, host, port)
        return _ResolvedConnection(host, port, address, context)

    def get_json(self, url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> Any:
        """GET `url?params`; the parsed JSON (numbers as Decimal) of a 200, KeyRefused for
        401/403, FetchError for anything else. The key is in `headers`: never in a message."""
        parts = urlsplit(url)
        target = parts.path + ("?" + urlencode(params) if params else "")
        connection = self.connection(parts.hostname or "", parts.port or 443)
        try:
            connection.request(
                "GET",
                target,
                headers={
                    **headers,
                    "accept": "application/json",
                    "user-agent": f"halton-meter/{__version__} (reconcile)",
                },
            )
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException, ssl.SSLError) as error:
            raise FetchError(f"cannot reach {parts.hostname}: {error}") from None
        finally:
            connection.close()
        message = _error_message(raw)
        if response.status in (401, 403):
            raise KeyRefused(response.status, message)
        if response.status != 200:
            raise FetchError(f"{parts.hostname}{parts.path} answered {response.status}: {message}")
        try:
            return json.loads(raw, parse_float=Decimal)
        except ValueError:
            raise FetchError(f"{parts.hostname}{parts.path} answered non-JSON") from None


class _ResolvedConnection(http.client.HTTPSConnection):
    """Connects to `address` but verifies and names `host` (SNI, Host header)."""

    def __init__(
        self, host: str, port: int, address: tuple[str, int], context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, context=context, timeout=TIMEOUT)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection(self._address, self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _error_message(raw: bytes) -> str:
    """The provider's error text (both use {"error": {"message": ...}}), short."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace")
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
    return raw[:200].decode("utf-8", "replace")
