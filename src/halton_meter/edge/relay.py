"""Byte relay between two streams: the edge's hot path once a connection is routed.

Large reads, `drain()` for back-pressure, and nothing else per chunk. An end of stream on one
side is passed on as a half-close (TLS and HTTP/1.1 clients may shut down their sending side
and still wait for the answer); an error on either side closes both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from halton_meter.edge.wire import CHUNK

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# Shown each chunk as it passes (only for connections the edge watches).
Note = Callable[[bytes], None]


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, note: Note | None = None
) -> None:
    read, write, drain = reader.read, writer.write, writer.drain
    if note is None:
        while data := await read(CHUNK):
            write(data)
            await drain()
    else:
        while data := await read(CHUNK):
            note(data)
            write(data)
            await drain()
    if not writer.is_closing() and writer.can_write_eof():
        writer.write_eof()


async def relay(
    client: Stream, server: Stream, up: Note | None = None, down: Note | None = None
) -> None:
    """Copy both ways until both sides have ended, or either fails; then close both. `up` and
    `down` are shown each chunk, client to server and back."""

    def failed(task: asyncio.Task[None]) -> None:
        # The client reset: stop waiting for a server that may stay silent for minutes.
        if task.cancelled() or task.exception() is not None:
            close(client[1])
            close(server[1])

    upstream = asyncio.create_task(_pipe(client[0], server[1], up))
    upstream.add_done_callback(failed)
    try:
        await _pipe(server[0], client[1], down)
        await upstream
    except (OSError, asyncio.IncompleteReadError, RuntimeError):
        pass  # a reset or a write after close: the connection is over either way
    finally:
        if not upstream.done():
            upstream.cancel()
        close(client[1])
        close(server[1])
        with contextlib.suppress(BaseException):
            await upstream


def close(writer: asyncio.StreamWriter) -> None:
    """Close without waiting: a peer that stopped reading must not hold the edge."""
    if not writer.is_closing():
        writer.close()
