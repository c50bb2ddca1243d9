"""The edge: the always-on listener on the port clients use.

Clients keep `HTTPS_PROXY` pointed at this port whatever happens to the daemon, so the edge
does as little as possible: read a request head, then either hand the connection to the
daemon's interception listener (an LLM host, daemon healthy) or relay the bytes itself (any
other host, or the daemon down: fail-open). It never decrypts and never records.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from halton_meter import __version__
from halton_meter.edge import handover
from halton_meter.edge.claims import ClaimsWatch
from halton_meter.edge.health import DaemonHealth, describe
from halton_meter.edge.log import JsonLog
from halton_meter.edge.relay import Stream, close, relay
from halton_meter.edge.resume import RESUME_QUIET, Unmetered
from halton_meter.edge.wire import (
    HEAD_LIMIT,
    REASONS,
    RequestHead,
    WireError,
    copy_body,
    parse_request,
    parse_response,
    read_head,
    reply,
)
from halton_meter.providers.claimed import ClaimedHosts
from halton_meter.runstate import (
    CLAIMED_HOSTS_FILE,
    DAEMON_ANSWER_TIMEOUT,
    DRAIN_SECONDS,
    EDGE_GRACE_SECONDS,
    EDGE_LISTEN_FD_ENV,
    EDGE_STATE_FILE,
    GUARD_STATE_FILE,
    TAKE_OVER_ENV,
    EdgeState,
    live_pid,
    remove_own_state,
)
from halton_meter.upstream import is_loopback_name, resolve_target

if TYPE_CHECKING:
    import ssl

    from halton_meter.config import Config
    from halton_meter.paths import Paths

LISTEN_HOST = "127.0.0.1"
DAEMON_HOST = "127.0.0.1"
HEAD_TIMEOUT = 60.0  # a client that connects and sends no request head is dropped
DAEMON_CONNECT_TIMEOUT = 0.5  # loopback: refused or accepted in microseconds
UPSTREAM_CONNECT_TIMEOUT = 15.0
ACCEPT_SETTLE = 0.05  # at a stop, time for just-accepted connections to get their handler
BIND_RETRY = 1.0  # a taken port with no edge running: tried again this long (Edge._bind)
CONNECTED = b"HTTP/1.1 200 Connection established\r\n\r\n"


class EdgeStartError(RuntimeError):
    """The edge could not start; the message says what to do."""


class UpstreamError(Exception):
    """The target (or the corporate proxy in front of it) could not be reached."""


class OwnListenerError(UpstreamError):
    """The target turned out to be one of our own listeners."""


@dataclass(frozen=True, slots=True)
class UpstreamProxy:
    """`[upstream] proxy`, parsed once: where to connect and what credentials to send."""

    host: str
    port: int
    tls: bool
    authorization: str | None

    @classmethod
    def parse(cls, url: str) -> UpstreamProxy:
        parts = urlsplit(url)
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        tls = parts.scheme == "https"
        return cls(parts.hostname or "", parts.port or (443 if tls else 80), tls, authorization)


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Everything the edge needs from config.toml, computed once at start."""

    port: int
    internal_port: int
    own_ports: frozenset[int]
    claimed: ClaimedHosts
    resolve: Mapping[tuple[str, int], tuple[str, int]]
    home: Path
    log_file: Path | None
    proxy: UpstreamProxy | None = None
    ca_bundle: Path | None = None
    log_level: str = "info"
    grace: float = EDGE_GRACE_SECONDS
    take_over: bool = False  # ask a running edge for its listening socket (handover.py)
    resume_quiet: float = RESUME_QUIET  # edge/resume.py
    # How long open connections may take once a successor has taken the socket over.
    drain: float = DRAIN_SECONDS

    @classmethod
    def from_config(cls, config: Config, paths: Paths) -> EdgeSettings:
        from halton_meter.providers import claimed_hosts

        daemon = config.daemon
        upstream = config.upstream
        return cls(
            port=daemon.proxy_port,
            internal_port=daemon.internal_port,
            own_ports=frozenset({daemon.proxy_port, daemon.internal_port, daemon.api_port}),
            claimed=claimed_hosts(config.endpoints, gated=bool(config.chatgpt_clients)),
            resolve=dict(upstream.resolve),
            home=paths.home,
            log_file=paths.logs / "edge.jsonl",
            proxy=UpstreamProxy.parse(upstream.proxy) if upstream.proxy else None,
            ca_bundle=upstream.ca_bundle,
            log_level=daemon.log_level,
            take_over=os.environ.get(TAKE_OVER_ENV) == "1",
            drain=daemon.drain_seconds,
        )

    @property
    def state_file(self) -> Path:
        return self.home / EDGE_STATE_FILE


@dataclass(slots=True)
class Counters:
    """What the edge has done since it started (in `GET /status` and the stop log line)."""

    connections: int = 0  # client connections accepted
    active: int = 0  # open right now
    handed_off: int = 0  # given to the daemon to meter
    tunnelled: int = 0  # relayed by the edge itself (CONNECT tunnels, plain-HTTP connections)
    fallbacks: int = 0  # LLM connections tunnelled unmetered because the daemon was down
    handoff_failures: int = 0  # handoffs the daemon refused or did not answer
    switches: int = 0  # changes between metering and passthrough
    http_requests: int = 0  # plain-HTTP requests forwarded by the edge
    refused: int = 0  # 403: a target that is one of our own listeners
    failed: int = 0  # 502: a target that could not be reached


@dataclass(slots=True)
class _Upstream:
    key: tuple[str, int]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self, key: tuple[str, int]) -> bool:
        return key == self.key and not self.reader.at_eof() and not self.writer.is_closing()


class Edge:
    """The listener and its routing; one instance per process."""

    def __init__(self, settings: EdgeSettings, log: JsonLog) -> None:
        self.settings = settings
        self.log = log
        self.counters = Counters()
        self.started_at = time.time()
        self.health = DaemonHealth(settings.internal_port, self._switched, DAEMON_HOST)
        self.claims = ClaimsWatch(settings.claimed, settings.home / CLAIMED_HOSTS_FILE)
        self.unmetered = Unmetered(settings.home, settings.resume_quiet)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._idle: set[asyncio.Task[object]] = set()  # waiting for a request head
        self._ssl: ssl.SSLContext | None = None
        self._offer: handover.Offer | None = None
        self.took_over = False  # the listening socket came from the edge before us
        self.offers_handover = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the listening socket over from a running edge on our port (an upgrade's
        restart), else bind the port; `EdgeStartError` names it and says what to do when it
        is taken."""
        inherited = _kept_listener(LISTEN_HOST, self.settings.port)
        if inherited is None and self.settings.take_over:
            inherited = handover.take_over(self.settings.home, LISTEN_HOST, self.settings.port)
        try:
            if inherited is not None:
                self.took_over = True
                self._server = await asyncio.start_server(
                    self._handle, sock=inherited, limit=HEAD_LIMIT, backlog=1024
                )
            else:
                self._server = await self._bind()
        except OSError as error:
            raise EdgeStartError(self._bind_problem(error)) from None
        home = self.settings.home
        self._offer = handover.Offer(
            home, self._server.sockets[0].fileno(), keeper=lambda: live_pid(home / GUARD_STATE_FILE)
        )
        self.offers_handover = await self._offer.start()

    async def _bind(self) -> asyncio.Server:
        """Bind the port; while it is taken but no edge runs, try again for BIND_RETRY seconds:
        the guard (guard.py) holds a copy of a stopped edge's socket until it sees the stop."""
        deadline = time.monotonic() + BIND_RETRY
        while True:
            try:
                return await asyncio.start_server(
                    self._handle, LISTEN_HOST, self.settings.port, limit=HEAD_LIMIT, backlog=1024
                )
            except OSError as error:
                taken = error.errno == errno.EADDRINUSE
                if (
                    not taken
                    or time.monotonic() > deadline
                    or _running_edge(self.settings.state_file)
                ):
                    raise
            await asyncio.sleep(0.05)

    def _bind_problem(self, error: OSError) -> str:
        port = self.settings.port
        where = f"cannot listen on {LISTEN_HOST}:{port}"
        if error.errno != errno.EADDRINUSE:
            return f"{where}: {error.strerror or error}."
        other = _running_edge(self.settings.state_file)
        if other is not None:
            return (
                f"{where}: another Halton Meter edge (pid {other}) is already serving it. "
                "Leave it running, or stop it first."
            )
        find = (
            f"netstat -ano | findstr :{port}" if os.name == "nt" else f"ss -ltnp 'sport = :{port}'"
        )
        return (
            f"{where}: the port is held by another program (find it with `{find}`). "
            "Stop that program, or set [daemon] proxy_port in config.toml to a free port."
        )

    async def shutdown(self) -> None:
        """Stop accepting, let open connections finish for the grace period, then cut them.
        (A successor that took the listening socket over keeps accepting on it; then nothing
        is in a hurry, and open connections get the drain period instead.)"""
        handed_over = self._offer is not None and self._offer.given > 0
        if self._offer is not None:
            await self._offer.close()
        loop = asyncio.get_running_loop()
        wait = max(self.settings.grace, self.settings.drain if handed_over else 0.0)
        deadline = loop.time() + wait
        if self._server is not None:
            # Stop accepting first, then close: asyncio gives an accepted connection its
            # transport a few loop turns later and drops it (a reset) if the server closed
            # meanwhile. Any connection not accepted yet waits for the successor, if any.
            for listener in self._server.sockets:
                with contextlib.suppress(NotImplementedError, ValueError, OSError):
                    loop.remove_reader(listener.fileno())
            await asyncio.sleep(ACCEPT_SETTLE)
            self._server.close()
        for task in list(self._idle):  # waiting for a request that may never come
            task.cancel()
        while (tasks := set(self._tasks)) and loop.time() < deadline:
            await asyncio.wait(tasks, timeout=deadline - loop.time())
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @property
    def mode(self) -> str:
        return "passthrough" if self.health.healthy is False else "metering"

    def status(self) -> dict[str, object]:
        return {
            "component": "edge",
            "version": __version__,
            "pid": os.getpid(),
            "port": self.settings.port,
            "internal_port": self.settings.internal_port,
            "started_at": self.started_at,
            "mode": self.mode,
            "daemon_healthy": self.health.healthy,
            "daemon_reason": self.health.reason,
            "counters": asdict(self.counters),
            "unmetered": self.unmetered.status(),
        }

    def _switched(self, previous: bool | None, healthy: bool, reason: str) -> None:
        if previous is None:
            return  # the first answer is in the "started" line
        mode = "metering" if healthy else "passthrough"
        self.counters.switches += 1
        emit = self.log.info if healthy else self.log.warning
        emit("switch", mode=mode, reason=reason, switches=self.counters.switches)

    # --- one client connection ----------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        counters = self.counters
        counters.connections += 1
        counters.active += 1
        try:
            head = await self._next_head(reader, first=True)
            if head is not None:
                await self._route(head, (reader, writer))
        except WireError as error:
            self._answer(writer, error.status, str(error))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # the client went away or stalled
        except Exception as error:  # a bug must cost one connection, never the edge
            self.log.error("connection_error", error=repr(error))
        finally:
            close(writer)
            counters.active -= 1
            self._tasks.discard(task)

    async def _next_head(
        self, reader: asyncio.StreamReader, *, first: bool = False
    ) -> RequestHead | None:
        """The next request head. A keep-alive connection waiting for a follow-up counts as
        idle (a stop closes it at once); a new one's first request is awaited for the grace
        period, since its client has just been accepted and is sending it."""
        task = asyncio.current_task()
        assert task is not None
        if not first:
            self._idle.add(task)
        try:
            raw = await asyncio.wait_for(read_head(reader), HEAD_TIMEOUT)
        finally:
            self._idle.discard(task)
        return None if raw is None else parse_request(raw)

    def _answer(self, writer: asyncio.StreamWriter, status: int, text: str) -> None:
        if not writer.is_closing():
            writer.write(reply(status, REASONS.get(status, "Error"), text))

    def _is_own_listener(self, host: str, port: int) -> bool:
        host, port = resolve_target(self.settings.resolve, host, port)
        return port in self.settings.own_ports and is_loopback_name(host)

    async def _route(self, head: RequestHead, client: Stream) -> None:
        if head.origin_form:
            await self._local(head, client[1])
        elif self._is_own_listener(head.host, head.port):
            self._refuse(head, client[1])
        elif head.is_connect:
            await self._connect(head, client)
        else:
            await self._plain_http(head, client)

    def _refuse(self, head: RequestHead, writer: asyncio.StreamWriter) -> None:
        self.counters.refused += 1
        self._answer(writer, 403, f"{head.authority} is one of Halton Meter's own listeners.")

    async def _local(self, head: RequestHead, writer: asyncio.StreamWriter) -> None:
        """Requests to the edge itself: `GET /status` for status and tests."""
        if head.method == "GET" and head.path.split("?", 1)[0] == "/status":
            await self.health.check()
            body = json.dumps(self.status()).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return
        port = self.settings.port
        self._answer(
            writer,
            404,
            f"This is Halton Meter's edge, a proxy: use it as HTTPS_PROXY=http://127.0.0.1:{port}"
            " (GET /status for its state).",
        )

    def _claimed(self, head: RequestHead) -> bool:
        return self.claims.claims(head.host, head.port)

    async def _connect(self, head: RequestHead, client: Stream) -> None:
        claimed = self._claimed(head)
        if claimed:
            if self.health.worth_trying() and await self._hand_off(head, client):
                return
            self.counters.fallbacks += 1
        try:
            server = await self._open(head, tunnel=True)
        except UpstreamError as error:
            self._unreachable(head, client[1], error)
            return
        client[1].write(CONNECTED)
        self.counters.tunnelled += 1
        if claimed:
            await self._unmetered_tunnel(head, client, server)
        else:
            await relay(client, server)

    async def _unmetered_tunnel(self, head: RequestHead, client: Stream, server: Stream) -> None:
        """An LLM connection tunnelled because the daemon is down: counted and spooled as
        unmetered, and closed at a quiet moment once the daemon is back (edge/resume.py)."""

        sock = client[1].get_extra_info("socket")
        fileno = sock.fileno() if sock is not None else -1

        def close_both() -> None:
            # The client's end of stream goes out now, not a loop turn later: a pooled client
            # that sees it before its next request opens a new connection instead.
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.shutdown(socket.SHUT_WR)
            close(client[1])
            close(server[1])

        watched = self.unmetered.start(
            head.host, head.port, "tunnel", close_both, fileno, self.health.check
        )
        closed_by = "client"
        try:
            await relay(client, server, watched.up, watched.down)
        except asyncio.CancelledError:
            closed_by = "edge-stop"
            raise
        finally:
            self.unmetered.end(watched, closed_by)

    async def _hand_off(self, head: RequestHead, client: Stream) -> bool:
        """Give the connection to the daemon; False (nothing sent to the client) when the
        daemon cannot take it, so the caller can tunnel instead."""
        port = self.settings.internal_port
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(DAEMON_HOST, port, limit=HEAD_LIMIT),
                DAEMON_CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as error:
            self._handoff_failed(describe(error, DAEMON_HOST, port))
            return False
        peer = client[1].get_extra_info("peername")
        who = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unknown"
        writer.write(head.for_daemon(who))
        if head.is_connect:
            # Wait for the daemon's own answer before saying anything to the client: a daemon
            # that accepts but dies or hangs still leaves the choice of tunnelling.
            hung = False
            try:
                answer = await asyncio.wait_for(read_head(reader), DAEMON_ANSWER_TIMEOUT)
            except (OSError, TimeoutError, WireError) as error:
                answer, problem = None, describe(error, DAEMON_HOST, port)
                hung = isinstance(error, TimeoutError)
            else:
                problem = f"{DAEMON_HOST}:{port} closed the connection without answering"
            if answer is None:
                close(writer)
                self._handoff_failed(problem, hung=hung)
                return False
            client[1].write(answer)
        self.health.mark(True, f"{DAEMON_HOST}:{port} took a connection")
        self.counters.handed_off += 1
        await relay(client, (reader, writer))
        return True

    def _handoff_failed(self, reason: str, *, hung: bool = False) -> None:
        self.counters.handoff_failures += 1
        self.health.mark(False, reason, hung=hung)

    def _unreachable(
        self, head: RequestHead, writer: asyncio.StreamWriter, error: Exception
    ) -> None:
        if isinstance(error, OwnListenerError):
            self._refuse(head, writer)
            return
        self.counters.failed += 1
        self.log.warning("upstream_unreachable", target=head.authority, error=str(error))
        self._answer(writer, 502, f"Halton Meter edge: cannot reach {head.authority}: {error}")

    # --- outgoing connections -----------------------------------------------------------------

    async def _open(self, head: RequestHead, *, tunnel: bool) -> Stream:
        """A connection towards the target: direct (after `[upstream] resolve`), or through
        the corporate proxy, with a CONNECT of our own when `tunnel`."""
        proxy = self.settings.proxy
        if proxy is None:
            return await self._dial(*resolve_target(self.settings.resolve, head.host, head.port))
        host, port = resolve_target(self.settings.resolve, proxy.host, proxy.port)
        stream = await self._dial(host, port, tls_name=proxy.host if proxy.tls else None)
        if not tunnel:
            return stream
        reader, writer = stream
        lines = [f"CONNECT {head.authority} HTTP/1.1", f"Host: {head.authority}"]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            raw = await asyncio.wait_for(read_head(reader), UPSTREAM_CONNECT_TIMEOUT)
            answer = None if raw is None else parse_response(raw)
        except (OSError, TimeoutError, WireError) as error:
            close(writer)
            raise UpstreamError(f"upstream proxy {proxy.host}:{proxy.port}: {error}") from None
        if answer is None or not 200 <= answer.status < 300:
            close(writer)
            said = "closed the connection" if answer is None else f"answered {answer.status}"
            raise UpstreamError(f"upstream proxy {proxy.host}:{proxy.port} {said}")
        return reader, writer

    async def _dial(self, host: str, port: int, *, tls_name: str | None = None) -> Stream:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    limit=HEAD_LIMIT,
                    happy_eyeballs_delay=0.25,
                    ssl=self._tls() if tls_name else None,
                    server_hostname=tls_name,
                ),
                UPSTREAM_CONNECT_TIMEOUT,
            )
        except TimeoutError:
            raise UpstreamError("timed out connecting") from None
        except OSError as error:
            raise UpstreamError(error.strerror or str(error)) from None
        except ValueError as error:  # a name getaddrinfo cannot encode (the parser refuses
            raise UpstreamError(f"cannot resolve the name: {error}") from None  # those: 400)
        # A name that only resolves to this machine must not loop back into our listeners.
        peer = writer.get_extra_info("peername")
        own = self.settings.own_ports
        if isinstance(peer, tuple) and peer[1] in own and is_loopback_name(str(peer[0])):
            close(writer)
            raise OwnListenerError(f"{host}:{port} is one of Halton Meter's own listeners")
        return reader, writer

    def _tls(self) -> ssl.SSLContext:
        """For an https:// corporate proxy only, so `ssl` is not loaded otherwise."""
        if self._ssl is None:
            import ssl

            self._ssl = ssl.create_default_context()
            if self.settings.ca_bundle is not None:
                self._ssl.load_verify_locations(cafile=str(self.settings.ca_bundle))
        return self._ssl

    # --- plain HTTP ---------------------------------------------------------------------------

    async def _plain_http(self, head: RequestHead, client: Stream) -> None:
        """Forward plain-HTTP proxy requests one by one, keeping the client's connection (and
        one upstream connection per host) alive between them."""
        upstream: _Upstream | None = None
        counted = False
        try:
            while True:
                if self._claimed(head) and self.health.worth_trying():
                    if upstream is not None:
                        close(upstream.writer)
                    if await self._hand_off(head, client):
                        return
                    self.counters.fallbacks += 1
                proxy = self.settings.proxy
                key = (proxy.host, proxy.port) if proxy else (head.host, head.port)
                if upstream is None or not upstream.usable(key):
                    if upstream is not None:
                        close(upstream.writer)
                    try:
                        upstream = _Upstream(key, *await self._open(head, tunnel=False))
                    except UpstreamError as error:
                        self._unreachable(head, client[1], error)
                        return
                if not counted:
                    counted = True
                    self.counters.tunnelled += 1
                self.counters.http_requests += 1
                if not await self._exchange(head, client, upstream):
                    return
                following = await self._next_head(client[0])
                if following is None:
                    return
                head = following
                if (
                    head.origin_form
                    or head.is_connect
                    or self._is_own_listener(head.host, head.port)
                ):
                    close(upstream.writer)
                    await self._route(head, client)
                    return
        finally:
            if upstream is not None:
                close(upstream.writer)

    async def _exchange(self, head: RequestHead, client: Stream, upstream: _Upstream) -> bool:
        """One request and its response; True when both sides keep the connection open."""
        proxy = self.settings.proxy
        request_length = head.body_length()
        upstream.writer.write(head.for_proxy(proxy.authorization) if proxy else head.for_origin())
        sending = asyncio.create_task(copy_body(client[0], upstream.writer, request_length))
        answered = False
        try:
            while True:
                raw = await read_head(upstream.reader)
                if raw is None:
                    raise UpstreamError("the server closed the connection without answering")
                response = parse_response(raw)
                client[1].write(raw)
                answered = True
                if response.status == 101:  # Upgrade: from now on, opaque bytes both ways
                    await sending
                    await relay(client, (upstream.reader, upstream.writer))
                    return False
                if response.status >= 200:
                    break
                await client[1].drain()  # 100 Continue and friends, as they come
            response_length = response.body_length(head.method)
            await copy_body(upstream.reader, client[1], response_length)
            await client[1].drain()
            if not sending.done():  # answered before the body was sent (an early error)
                return False
            await sending
            return head.keep_alive() and response.keep_alive() and response_length != -1
        except (UpstreamError, WireError, OSError, asyncio.IncompleteReadError) as error:
            if not answered:
                self._unreachable(head, client[1], error)
            return False
        finally:
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(BaseException):
                    await sending


def _kept_listener(host: str, port: int) -> socket.socket | None:
    """The listening socket the guard kept open while no edge ran (EDGE_LISTEN_FD_ENV), when it
    is one on our address: the connections clients made meanwhile wait in its queue."""
    fileno = os.environ.pop(EDGE_LISTEN_FD_ENV, None)
    if fileno is None or not fileno.isdigit():
        return None
    try:
        listener = socket.socket(fileno=int(fileno))
    except OSError:
        return None
    try:
        address = listener.getsockname()
        listening = listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        address, listening = None, 0
    if not listening or not isinstance(address, tuple) or tuple(address[:2]) != (host, port):
        listener.close()  # another port (the configuration changed): bind our own
        return None
    return listener


def _running_edge(state_file: Path) -> int | None:
    """The live pid of another edge that published edge.json, if any (after a failed bind)."""
    pid = live_pid(state_file)
    return pid if pid != os.getpid() else None


def _write_state(edge: Edge) -> None:
    settings = edge.settings
    state = EdgeState(
        pid=os.getpid(),
        port=settings.port,
        internal_port=settings.internal_port,
        version=__version__,
        started_at=edge.started_at,
        handover=edge.offers_handover,
        drains=True,
    )
    state.write(settings.state_file)


async def serve(settings: EdgeSettings, log: JsonLog) -> int:
    """Run the edge until SIGTERM/SIGINT; 0 after a clean stop."""
    edge = Edge(settings, log)
    await edge.start()
    await edge.health.check()
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    settings.home.mkdir(parents=True, exist_ok=True)
    _write_state(edge)
    log.info(
        "started",
        port=settings.port,
        internal_port=settings.internal_port,
        version=__version__,
        pid=os.getpid(),
        mode=edge.mode,
        reason=edge.health.reason,
        took_over=edge.took_over,
    )
    try:
        await stop.wait()
        log.info("stopping", active=edge.counters.active)
        await edge.shutdown()
    finally:
        remove_own_state(settings.state_file)
    log.info("stopped", **asdict(edge.counters))
    return 0


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows' Proactor loop
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))


def run_edge(settings: EdgeSettings) -> int:
    """Foreground entry point for the CLI and `python -m halton_meter.edge`."""
    log = JsonLog(settings.log_file, settings.log_level)
    try:
        return asyncio.run(serve(settings, log))
    except EdgeStartError as error:
        log.error("start_failed", port=settings.port, error=str(error))
        raise
    finally:
        log.close()


def main() -> None:
    """`python -m halton_meter.edge`: the edge without the CLI's imports."""
    from halton_meter.config import ConfigError, load_config
    from halton_meter.paths import resolve_paths

    paths = resolve_paths()
    try:
        config = load_config(paths)
    except ConfigError as error:
        print(f"halton-meter edge: invalid config: {error}", file=sys.stderr)
        sys.exit(3)
    try:
        from halton_meter.lifecycle.ports import effective_config

        code = run_edge(EdgeSettings.from_config(effective_config(config, paths), paths))
    except EdgeStartError as error:
        print(f"halton-meter edge: {error}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
