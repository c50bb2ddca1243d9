"""Where the daemon's outgoing connections really go.

`[upstream] resolve` is a DNS override (like curl's --resolve) applied where names are resolved,
the event loop's getaddrinfo, not by rewriting a connection's address: mitmproxy reuses an
upstream connection only when its address equals the request's host and port, so a rewritten
address would open a new connection per request.

The same wrapper is the last guard against forwarding to our own listeners: whatever name a
client used, if it resolves to a loopback address on one of our ports, the connection fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Collection, Mapping
from typing import Any

Overrides = Mapping[tuple[str, int], tuple[str, int]]


class OwnListenerError(OSError):
    """A connection that would reach one of the meter's own listeners."""


def resolve_target(overrides: Overrides, host: str, port: int) -> tuple[str, int]:
    """Where a connection to host:port goes after `[upstream] resolve`."""
    return overrides.get((host.lower(), port), (host, port))


def is_loopback_name(host: str) -> bool:
    """True for every spelling of this machine that needs no DNS: `localhost`, `127.1`,
    `0x7f.1`, `2130706433`, `[::1]`, `::ffff:127.0.0.1`, `0.0.0.0`, `localhost.`."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(name)
    except ValueError:
        try:  # the shorthand forms inet_aton accepts: 127.1, 0x7f.1, 2130706433
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except (OSError, ValueError):  # ValueError: a NUL in the name
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def install_resolver(
    loop: asyncio.AbstractEventLoop, overrides: Overrides, own_ports: Collection[int]
) -> None:
    """Wrap the loop's getaddrinfo with the overrides and the own-listener guard."""
    original = loop.getaddrinfo
    ports = frozenset(own_ports)

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        number = None
        if isinstance(host, str) and port is not None:
            # A service name such as "https" is not a port: no override applies.
            with contextlib.suppress(ValueError):
                number = int(port)
                host, port = resolve_target(overrides, host, number)
                number = int(port)
        results = await original(host, port, *args, **kwargs)
        if number in ports and any(is_loopback_name(str(info[4][0])) for info in results):
            raise OwnListenerError(f"{host}:{number} is one of Halton Meter's own listeners")
        return results

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
