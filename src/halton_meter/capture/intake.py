"""The daemon's listening socket and its drain.

mitmproxy's proxy server binds a socket of its own and offers no way to pass one in, so the
daemon keeps mitmproxy's `server` option off and runs the listener itself: an asyncio server
on a socket it bound (or took over from the daemon before it, over `daemon.sock` with
edge/handover.py, exactly as the edge does), feeding each accepted connection to a mitmproxy
`ServerInstance`'s `handle_stream`, which is all mitmproxy's own listener does with it.

Why a handed-over socket rather than SO_REUSEPORT: with SO_REUSEPORT the kernel spreads new
connections over two sockets, and connections waiting in the old socket's accept queue when
it closes are reset (Linux migrates them only with the `tcp_migrate_req` sysctl, off by
default). With one socket shared by both processes, the old daemon simply stops calling
accept; the queue belongs to the socket, so nothing is lost, and every hand-off from the edge
reaches a daemon that meters it.

On SIGTERM: stop accepting (a successor, if any, accepts on the same socket; without one the
socket closes and the edge tunnels new connections unmetered: fail-open), answer requests that
arrive on open HTTP/1 connections with `Connection: close` so clients move to a fresh
connection, let the calls in flight finish for `[daemon] drain_seconds`, then stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halton_meter.edge import handover

if TYPE_CHECKING:
    from mitmproxy import http
    from mitmproxy.proxy.mode_servers import ServerInstance

log = logging.getLogger(__name__)

BACKLOG = 1024
POLL_SECONDS = 0.02


class Intake:
    """The listening socket (bound or taken over), its asyncio server and its offer to a
    successor."""

    def __init__(self, home: Path, host: str, port: int, *, take_over: bool) -> None:
        self.home, self.host, self.port = home, host, port
        self.take_over = take_over
        self.took_over = False
        self._socket: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._offer: handover.Offer | None = None
        self.offers_handover = False

    def bind(self) -> None:
        """Take the predecessor's socket over when asked to, else bind: OSError when the port
        is taken."""
        inherited = None
        if self.take_over:
            inherited = handover.take_over(
                self.home, self.host, self.port, handover.DAEMON_SOCKET_NAME
            )
        if inherited is not None:
            self._socket, self.took_over = inherited, True
            return
        # IPPROTO_TCP named, not 0: accepted sockets inherit the listener's `proto`, and asyncio
        # sets TCP_NODELAY only on sockets whose proto says TCP. Without it every response
        # written in two parts (head, body) waited on the client's delayed ACK: ~40 ms a call
        # (bench/run.py, scenario 1, 2026-12).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            if not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # as asyncio binds on POSIX
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        self._socket = sock

    async def serve(self, instance: ServerInstance[Any]) -> None:
        """Accept connections for mitmproxy's handler, and offer the socket to a successor."""
        assert self._socket is not None
        self._server = await asyncio.start_server(instance.handle_stream, sock=self._socket)
        self._offer = handover.Offer(self.home, self._socket.fileno(), handover.DAEMON_SOCKET_NAME)
        self.offers_handover = await self._offer.start()

    @property
    def handed_over(self) -> bool:
        return self._offer is not None and self._offer.given > 0

    async def stop_accepting(self) -> None:
        """Stop taking connections: first stop calling accept (a connection the kernel has
        queued stays queued for the successor), then close our copy of the socket. Safe to
        call again."""
        if self._offer is not None:
            await self._offer.close()
        server, self._server = self._server, None
        if server is not None:
            loop = asyncio.get_running_loop()
            for listener in server.sockets:
                with contextlib.suppress(NotImplementedError, ValueError, OSError):
                    loop.remove_reader(listener.fileno())
            await asyncio.sleep(0.05)  # accepted just now: let it reach its handler
            server.close()
        elif self._socket is not None:
            self._socket.close()
        self._socket = None


@dataclass(slots=True)
class DrainResult:
    calls: int
    finished: int
    cut: int
    seconds: float


class InFlight:
    """A mitmproxy addon that knows which HTTP exchanges are in flight (request head seen,
    response not ended), and while draining asks HTTP/1 clients to close their connection."""

    def __init__(self) -> None:
        self.open: set[str] = set()
        self.draining = False
        self._seen_while_draining: set[str] = set()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT":  # the tunnel, not a call: never "responded"
            return
        self.open.add(flow.id)
        if self.draining:
            self._seen_while_draining.add(flow.id)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if self.draining and response is not None and response.http_version.startswith("HTTP/1"):
            response.headers["connection"] = "close"

    def response(self, flow: http.HTTPFlow) -> None:
        self.open.discard(flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        self.open.discard(flow.id)

    async def drain(self, limit: float) -> DrainResult:
        """Wait until no exchange is in flight, at most `limit` seconds."""
        self.draining = True
        self._seen_while_draining = set(self.open)
        started = time.monotonic()
        deadline = started + limit
        while self.open and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
        calls = len(self._seen_while_draining)
        cut = len(self.open & self._seen_while_draining)
        return DrainResult(calls, calls - cut, cut, time.monotonic() - started)
