"""Byte relay between two streams: the edge's hot path once a connection is routed.

Large reads, `drain()` for back-pressure, and nothing else per chunk. An end of stream on one
side is passed on as a half-close (TLS and HTTP/1.1 clients may shut down their sending side
and still wait for the answer); an error on either side closes both.
"""

from __future__ import annotations

import asyncio
import contextlib

from halton_meter.edge.wire import CHUNK

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    read, write, drain = reader.read, writer.write, writer.drain
    while data := await read(CHUNK):
        write(data)
        await drain()
    if not writer.is_closing() and writer.can_write_eof():
        writer.write_eof()


async def relay(client: Stream, server: Stream) -> None:
    """Copy both ways until both sides have ended, or either fails; then close both."""

    def failed(task: asyncio.Task[None]) -> None:
        # The client reset: stop waiting for a server that may stay silent for minutes.
        if task.cancelled() or task.exception() is not None:
            close(client[1])
            close(server[1])

    upstream = asyncio.create_task(_pipe(client[0], server[1]))
    upstream.add_done_callback(failed)
    try:
        await _pipe(server[0], client[1])
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
