"""LLM connections the edge carries unmetered: counted, spooled, and ended at a quiet moment.

While the daemon is down the edge tunnels LLM hosts itself (fail-open). A pooled client
(httpx in the Python SDKs, undici in Node, curl) keeps such a tunnel for as long as it likes,
so without help its calls would stay unmetered long after the daemon is back. Once the daemon
answers again, each such tunnel is closed at a quiet moment, and the client's pool opens a
fresh connection, which the edge hands to the daemon.

The edge cannot read inside the tunnel (TLS), so "between two calls" is inferred from what it
sees: no bytes either way for `quiet` seconds (shrinking, once the daemon answers, for a pool
too busy ever to be quiet that long; see `Watched.quiet_needed`); the client has sent nothing
since the provider last did beyond a few control bytes (an HTTP/2 WINDOW_UPDATE or PING ack,
not a request: a request is larger), so no call waits for its answer; and the provider has
answered since the client's last request (for the first request, more than TLS 1.3's session
tickets, which a server sends right after the handshake, while the request may already be
waiting). The client socket must also have nothing unread at that instant. Clients drop an
idle pooled connection the server closed (they see the end of stream) and open another; a
request written in the instant of the close never reaches the provider (the edge reads no more
from either side), so it is not billed, and the SDKs retry it (docs/architecture.md, "Metering
resumes").

Every unmetered connection is also counted per host (`GET /status`) and written to the spool
(unmetered.py) for the ledger's unmetered spans.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import select
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from halton_meter.unmetered import UnmeteredConnection, append

# Both directions silent this long, after an answer, means the call is over: at least
# RESUME_QUIET, and QUIET_FACTOR times the longest pause seen inside a response on this
# connection (streams that pause for long get a longer wait), at most QUIET_CAP. See the
# module's notes and bench/pooled_resume.py for how they were chosen.
RESUME_QUIET = 0.25
QUIET_FACTOR = 3.0
QUIET_CAP = 10.0
# A busy pool may never be quiet for RESUME_QUIET (an agent or batch job calling back to back).
# Once a tunnel is due (the daemon answers again), the quiet it needs halves every
# QUIET_HALVING seconds down to BUSY_QUIET (never below QUIET_FACTOR x its longest pause inside
# an answer): a client that leaves BUSY_QUIET plus the edge's reaction between its calls is
# metered again within about QUIET_HALVING x log2(RESUME_QUIET / its gap) seconds.
QUIET_HALVING = 2.0
BUSY_QUIET = 0.03
# Client bytes after the provider's last ones that are still not a request: HTTP/2 control
# frames (a WINDOW_UPDATE is 13 bytes, a PING ack 17, each ~22 more in a TLS record).
CONTROL_TAIL = 100
# The first request's answer must be larger than TLS 1.3's session tickets (~2 x 250 bytes).
FIRST_ANSWER_MIN = 1024
RESUME_TICK = 0.05  # how often open tunnels are looked at while the daemon is back
BUSY_TICK = 0.005  # ... while one needs less than 3 ticks of quiet (a short gap is caught early)
PROGRESS_SECONDS = 60.0  # a long-lived unmetered tunnel is spooled this often


@dataclass(slots=True, eq=False)
class Watched:
    """One unmetered connection: its counts and the timing that tells a quiet moment."""

    record: UnmeteredConnection
    close: Callable[[], None]  # ends it (both sides)
    fileno: int  # the client socket, checked for unread bytes before closing
    last_up: float = 0.0  # monotonic
    last_down: float = 0.0
    tail_up: int = 0  # client bytes since the provider last sent
    requests: int = 0  # client bursts larger than CONTROL_TAIL (the TLS ClientHello counts)
    answer: int = 0  # provider bytes since the client's last request
    pause: float = 0.0  # the longest silence inside a response so far
    http1_only: bool | None = None  # from the ClientHello's ALPN; None until seen
    spooled_at: float = field(default_factory=time.monotonic)
    due_since: float | None = None  # monotonic: since the daemon answers again

    def up(self, data: bytes) -> None:
        size = len(data)
        if self.http1_only is None:
            self.http1_only = offers_only_http1(data)
        self.last_up = time.monotonic()
        self.record.bytes_up += size
        if self.tail_up <= CONTROL_TAIL < self.tail_up + size:
            self.requests += 1
            self.answer = 0
        self.tail_up += size

    def down(self, data: bytes) -> None:
        now = time.monotonic()
        # A pause between two pieces of one answer (the first request's answer may follow
        # the session tickets after the whole call's wait, so it does not count).
        if self.answer and self.requests > 2:
            self.pause = max(self.pause, now - self.last_down)
        self.last_down = now
        self.record.bytes_down += len(data)
        self.tail_up = 0
        self.answer += len(data)

    def quiet_needed(self, now: float, quiet: float) -> float:
        """The silence that says a call is over: `quiet`, halving every QUIET_HALVING s the
        tunnel has been due, down to BUSY_QUIET; at least QUIET_FACTOR x the longest pause
        inside an answer here; at most QUIET_CAP."""
        if self.due_since is not None:
            halvings = (now - self.due_since) / QUIET_HALVING
            quiet = max(min(quiet, BUSY_QUIET), quiet * 0.5**halvings)
        return min(max(quiet, QUIET_FACTOR * self.pause), QUIET_CAP)

    def at_rest(self, now: float, quiet: float) -> bool:
        """Between two calls, as far as the edge can tell. Only HTTP/1.1 connections: over
        HTTP/2 one call can wait while another's answer ends, which looks the same from
        outside TLS."""
        if not self.http1_only or self.tail_up > CONTROL_TAIL:
            return False
        if now - max(self.last_up, self.last_down) < self.quiet_needed(now, quiet):
            return False
        needed = FIRST_ANSWER_MIN if self.requests <= 2 else 1
        return self.answer >= needed and not _readable(self.fileno)

    def touched(self) -> float:
        """Unix time of the last byte either way."""
        last = max(self.last_up, self.last_down)
        if not last:
            return self.record.opened_at
        return time.time() - (time.monotonic() - last)


def offers_only_http1(data: bytes) -> bool:
    """Whether a TLS ClientHello (the tunnel's first bytes) rules HTTP/2 out: its ALPN
    extension does not offer `h2`, or it has none (HTTP/2 over TLS needs ALPN). A hello that
    does not parse (split over reads, not TLS) is False: such a tunnel is left open."""
    try:
        if data[0] != 0x16 or data[5] != 0x01:  # handshake record, ClientHello
            return False
        at = 9 + 2 + 32  # record and handshake headers, version, random
        at += 1 + data[at]  # session id
        at += 2 + int.from_bytes(data[at : at + 2])  # cipher suites
        at += 1 + data[at]  # compression methods
        end = at + 2 + int.from_bytes(data[at : at + 2])
        at += 2
        while at + 4 <= end:
            kind = int.from_bytes(data[at : at + 2])
            length = int.from_bytes(data[at + 2 : at + 4])
            if kind == 0x0010:  # ALPN: a 2-byte list length, then length-prefixed names
                names, cursor, stop = [], at + 6, at + 4 + length
                while cursor < stop:
                    names.append(data[cursor + 1 : cursor + 1 + data[cursor]])
                    cursor += 1 + data[cursor]
                return b"h2" not in names
            at += 4 + length
    except IndexError:
        return False
    return at == end


def _readable(fileno: int) -> bool:
    """Whether the client has sent bytes the edge has not read yet (a request on its way)."""
    try:
        ready, _, _ = select.select([fileno], [], [], 0)
    except (OSError, ValueError):
        return True  # cannot tell: leave it alone
    return bool(ready)


@dataclass(slots=True)
class HostTotals:
    """Per `host:port`, since the edge started (`GET /status`)."""

    connections: int = 0
    open: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    first_at: float | None = None
    last_at: float | None = None
    resumed: int = 0  # closed by the edge so that metering resumes


class Unmetered:
    """The unmetered connections of one edge; `resume` runs while any is open."""

    def __init__(self, home: Path, quiet: float = RESUME_QUIET) -> None:
        self.home = home
        self.quiet = quiet
        self.open: set[Watched] = set()
        self.hosts: dict[str, HostTotals] = {}
        self.resumed = 0
        self.spool_failures = 0
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{time.time_ns()}"
        self._task: asyncio.Task[None] | None = None

    def start(
        self,
        host: str,
        port: int,
        kind: str,
        close: Callable[[], None],
        fileno: int,
        healthy: Callable[[], Awaitable[bool]],
    ) -> Watched:
        """Count a new unmetered connection; a tunnel also starts the resume loop, which asks
        `healthy` whether the daemon is back."""
        now = time.time()
        record = UnmeteredConnection(
            f"{self._prefix}-{next(self._ids)}", host, port, kind, now, now
        )
        watched = Watched(record, close, fileno)
        totals = self.hosts.setdefault(f"{host}:{port}", HostTotals(first_at=now))
        totals.connections += 1
        totals.open += 1
        if kind == "tunnel":
            self.open.add(watched)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._resume(healthy))
        return watched

    def end(self, watched: Watched, closed_by: str) -> None:
        """The connection is over: total it and spool its final line."""
        self.open.discard(watched)
        record = watched.record
        if record.closed_at is not None:
            return
        record.last_at = watched.touched()
        record.closed_at = time.time()
        record.closed_by = closed_by
        totals = self.hosts[f"{record.host}:{record.port}"]
        totals.open -= 1
        totals.bytes_up += record.bytes_up
        totals.bytes_down += record.bytes_down
        totals.last_at = record.last_at
        self._spool(record)

    def _spool(self, record: UnmeteredConnection) -> None:
        if not append(self.home, record):
            self.spool_failures += 1

    async def _resume(self, healthy: Callable[[], Awaitable[bool]]) -> None:
        """While unmetered tunnels are open: once the daemon answers, close each at rest."""
        tick = RESUME_TICK
        while self.open:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for watched in [w for w in self.open if now - w.spooled_at >= PROGRESS_SECONDS]:
                watched.spooled_at = now
                watched.record.last_at = watched.touched()
                self._spool(watched.record)
            if not self.open or not await healthy():
                tick = RESUME_TICK
                continue
            now = time.monotonic()
            tick = RESUME_TICK
            for watched in list(self.open):
                if watched.due_since is None:
                    watched.due_since = now
                if watched.http1_only and watched.quiet_needed(now, self.quiet) < 3 * RESUME_TICK:
                    tick = BUSY_TICK  # (an HTTP/2 tunnel is never closed: no hurry for it)
                if watched.at_rest(now, self.quiet):
                    self.resumed += 1
                    self.hosts[f"{watched.record.host}:{watched.record.port}"].resumed += 1
                    self.end(watched, "resumed")
                    watched.close()

    def status(self) -> dict[str, object]:
        """Totals per host since the edge started, open connections' bytes included."""
        hosts: dict[str, dict[str, object]] = {}
        for name, totals in self.hosts.items():
            live = [w for w in self.open if f"{w.record.host}:{w.record.port}" == name]
            hosts[name] = {
                "connections": totals.connections,
                "open": totals.open,
                "bytes_up": totals.bytes_up + sum(w.record.bytes_up for w in live),
                "bytes_down": totals.bytes_down + sum(w.record.bytes_down for w in live),
                "first_at": totals.first_at,
                "last_at": max([w.touched() for w in live], default=totals.last_at),
                "resumed": totals.resumed,
            }
        return {
            "open": len(self.open),
            "resumed": self.resumed,
            "spool_failures": self.spool_failures,
            "quiet_seconds": self.quiet,
            "hosts": hosts,
        }
