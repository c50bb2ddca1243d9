"""`[upstream] resolve`: a DNS override for the daemon's outgoing connections, like curl's
--resolve.

It is applied where names are resolved (the event loop's getaddrinfo), not by rewriting a
connection's address: mitmproxy reuses an upstream connection only when its address equals the
request's host and port, so a rewritten address would open a new connection per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

Overrides = Mapping[tuple[str, int], tuple[str, int]]


def resolve_target(overrides: Overrides, host: str, port: int) -> tuple[str, int]:
    """Where a connection to host:port really goes."""
    return overrides.get((host.lower(), port), (host, port))


def install_resolve_overrides(loop: asyncio.AbstractEventLoop, overrides: Overrides) -> None:
    if not overrides:
        return
    original = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and port is not None:
            # A service name such as "https" is not a port: no override applies.
            with contextlib.suppress(ValueError):
                host, port = resolve_target(overrides, host, int(port))
        return await original(host, port, *args, **kwargs)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
