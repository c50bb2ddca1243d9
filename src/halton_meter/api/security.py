"""What keeps a web page the user happens to visit from using the loopback API.

- DNS rebinding: a page on evil.example can make its own name resolve to 127.0.0.1, but its
  requests still say `Host: evil.example`, so any Host other than localhost, 127.0.0.1 or [::1]
  with the API's port is refused.
- Cross-site requests: a page may send a "simple" POST anywhere without a CORS preflight. Every
  state-changing request must carry the per-install token (a file only the user can read) and
  must not come from another origin (`Origin` / `Sec-Fetch-Site`), allow-listed or not.
- Reads: CORS headers only for the origins in `[cors] allow_origins` (none by default), on
  the answer and on the preflight a browser sends first for a read with extra headers; a
  preflight for anything but a read is refused, whatever the origin.
- Captured bodies (`/v1/requests/{id}/body`) are read like a state change: token required,
  never from another origin, no CORS headers (nor a preflight) even for an allow-listed one.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from halton_meter.paths import Paths

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_HEADER = "x-halton-token"
# What an allow-listed origin may do across origins: read, with these request headers.
CORS_METHODS = frozenset({"GET", "HEAD"})
CORS_HEADERS = frozenset(
    {"accept", "accept-language", "content-language", "content-type", "cache-control"}
    | {"if-none-match", "authorization", TOKEN_HEADER}
)
CORS_MAX_AGE = b"600"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# The dashboard loads nothing from elsewhere and may not be framed (clickjacking).
SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
        b"form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def load_or_create_token(paths: Paths) -> str:
    """The per-install API token; created 0600 on first use (race-safe: O_EXCL)."""
    path = paths.api_token
    try:
        return _read_token(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read_token(path)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return token


def _read_token(path: Path) -> str:
    token = path.read_text(encoding="ascii").strip()
    if len(token) < 32:
        raise ValueError(f"{path} holds no usable token; delete it and restart the daemon")
    if os.name != "nt":
        with contextlib.suppress(OSError):
            path.chmod(0o600)
    return token


def allowed_hosts(port: int) -> frozenset[str]:
    return frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)


def same_origins(port: int) -> frozenset[str]:
    return frozenset(f"http://{name}:{port}" for name in LOOPBACK_NAMES)


class Guard:
    """ASGI middleware in front of everything the API serves, the dashboard included."""

    def __init__(
        self, app: ASGIApp, *, port: int, token: str, cors_origins: tuple[str, ...]
    ) -> None:
        self.app = app
        self.hosts = allowed_hosts(port)
        self.own_origins = same_origins(port)
        self.token = token.encode()
        self.cors_origins = frozenset(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope["headers"]
        }
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            await _refuse(send, 403, "host_not_allowed", f"Host {host!r} is not this API's")
            return
        origin = headers.get("origin")
        method = scope["method"]
        cross_origin = origin is not None and origin.lower() not in self.own_origins
        allowed_cors = origin is not None and origin.lower() in self.cors_origins
        sensitive = _is_sensitive(scope.get("path", ""))
        if sensitive:
            allowed_cors = False
        if method == "OPTIONS" and origin is not None:
            await self._preflight(send, origin if allowed_cors else None, headers)
            return
        if method not in SAFE_METHODS or sensitive:
            fetch_site = headers.get("sec-fetch-site", "")
            if cross_origin or fetch_site in ("cross-site", "same-site"):
                await _refuse(
                    send, 403, "cross_origin", "state-changing requests must come from this API"
                )
                return
            presented = headers.get(TOKEN_HEADER) or _bearer(headers.get("authorization", ""))
            if not presented or not hmac.compare_digest(presented.encode(), self.token):
                await _refuse(
                    send,
                    401,
                    "token_required",
                    "send the token from ~/.halton-meter/api-token as X-Halton-Token",
                )
                return
        extra = list(SECURITY_HEADERS)
        if allowed_cors:
            assert origin is not None
            extra += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
            ]
        # Without CORS headers the browser keeps a cross-origin answer from the page.

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _preflight(self, send: Send, origin: str | None, headers: dict[str, str]) -> None:
        """A browser asks before a cross-origin read that carries extra headers; only reads
        are ever allowed cross-origin, so a preflight for anything else fails. The answer
        must name the origin (Access-Control-Allow-Origin), or the browser refuses the read."""
        if origin is None:
            await _refuse(send, 403, "cross_origin", "origin not in [cors] allow_origins")
            return
        wanted = headers.get("access-control-request-method", "GET").strip().upper()
        if wanted not in CORS_METHODS:
            await _refuse(
                send, 403, "cross_origin", f"only reads are allowed cross-origin, not {wanted}"
            )
            return
        asked = headers.get("access-control-request-headers", "")
        names = {name.strip().lower() for name in asked.split(",") if name.strip()}
        if not names <= CORS_HEADERS:
            extra = ", ".join(sorted(names - CORS_HEADERS))
            await _refuse(send, 403, "cross_origin", f"header not allowed cross-origin: {extra}")
            return
        answer = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", b"GET, HEAD"),
            (b"access-control-allow-headers", ", ".join(sorted(CORS_HEADERS)).encode()),
            (b"access-control-max-age", CORS_MAX_AGE),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": answer})
        await send({"type": "http.response.body", "body": b""})


def _is_sensitive(path: str) -> bool:
    """A captured body: prompts and answers, which may hold what redaction could not know."""
    return path.startswith("/v1/requests/") and path.rstrip("/").endswith("/body")


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials else None


async def _refuse(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
