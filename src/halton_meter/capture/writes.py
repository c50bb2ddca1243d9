"""One socket write per connection per mitmproxy event, not one per `SendData` command.

mitmproxy's `ConnectionHandler.server_event` feeds an event (bytes read, a hook done) through
the layers and writes each `SendData` command to its connection's transport as it comes: a
response's head and its body are two TLS records and two loopback writes, and the same for the
request upstream. The send syscalls were a fifth of the daemon's CPU under load
(bench/README.md, issue 21).

`join_writes()` wraps `server_event` so that, while it runs, each connection's writes collect
in a list, written as one when it returns (and before a close or a half-close, which happen
inside it). The bytes and their order are unchanged; nothing waits for more data: the event is
processed synchronously (mitmproxy holds a lock and does not await inside), so the joined write
leaves in the same step of the event loop the separate ones would have. Outside `server_event`
writes go straight through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any

from mitmproxy.proxy import server

ServerEvent = Callable[[Any, Any], Coroutine[Any, Any, None]]


class JoinedWriter:
    """A StreamWriter whose writes are held while its handler processes an event."""

    __slots__ = ("_inner", "_parts", "_state")

    def __init__(self, inner: asyncio.StreamWriter, state: _HandlerState) -> None:
        self._inner = inner
        self._state = state
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self._state.depth:
            if not self._parts:
                self._state.pending.append(self)
            self._parts.append(data)
        else:
            self.flush()
            self._inner.write(data)

    def flush(self) -> None:
        parts = self._parts
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        if not self._inner.is_closing():
            self._inner.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _HandlerState:
    __slots__ = ("depth", "pending")

    def __init__(self) -> None:
        self.depth = 0
        self.pending: list[JoinedWriter] = []

    def wrap(self, transports: MutableMapping[Any, Any]) -> None:
        for io in transports.values():
            writer = io.writer
            if type(writer) is asyncio.StreamWriter:
                io.writer = JoinedWriter(writer, self)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for writer in pending:
            writer.flush()


def joining(original: ServerEvent) -> ServerEvent:
    """`server_event` with each connection's writes joined while it runs."""

    async def server_event(self: Any, event: Any) -> None:
        state = self.__dict__.get("_halton_writes")
        if state is None:
            state = self._halton_writes = _HandlerState()
        state.wrap(self.transports)
        state.depth += 1
        try:
            await original(self, event)
        finally:
            state.depth -= 1
            state.flush()

    server_event.__halton_joined__ = True  # type: ignore[attr-defined]
    return server_event


def join_writes() -> bool:
    """Install on mitmproxy's ConnectionHandler (once per process); False if already there."""
    handler = server.ConnectionHandler
    if getattr(handler.server_event, "__halton_joined__", False):
        return False
    handler.server_event = joining(handler.server_event)  # type: ignore[method-assign,assignment]
    return True
