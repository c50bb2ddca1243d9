"""Server-sent events: an incremental splitter and the plumbing shared by SSE stream parsers.

Splitting is byte-exact (each raw event keeps its own terminator) so that the same splitter can
serve both the meter, which only reads events, and the usage filter, which must forward every
byte it does not deliberately remove.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ._common import loads
from .base import CallResult

# A blank line ends an event. Line endings are CRLF, LF or a lone CR; a CR at the very end of
# the buffer is not taken as a lone CR, because its LF may be in the next chunk.
_LINE_END = rb"(?:\r\n|\r(?=[^\n])|\n)"
_EVENT_END = re.compile(_LINE_END + _LINE_END)
_MAX_SEPARATOR = 4

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""An event larger than this is dropped by the meter (never by the filter, which forwards it)."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One decoded event: its ``event:`` name and its ``data:`` lines joined by LF."""

    event: str | None
    data: bytes
    has_data: bool


class SseSplitter:
    """Cuts a byte stream into raw events, whatever the chunking.

    ``feed`` returns only whole events, each with its blank-line terminator; the incomplete
    rest is held. With ``max_event_bytes`` set, an event growing past it is discarded up to its
    terminator, so a hostile or broken stream cannot hold unbounded memory.
    """

    __slots__ = ("_buf", "_max", "_skipping", "overflowed")

    def __init__(self, max_event_bytes: int | None = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_event_bytes
        self._skipping = False
        self.overflowed = False

    @property
    def pending(self) -> int:
        """How many bytes of an incomplete event are held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        scan = max(0, len(buf) - (_MAX_SEPARATOR - 1))  # a separator may straddle chunks
        buf += data
        events: list[bytes] = []
        pos = 0
        while (match := _EVENT_END.search(buf, max(pos, scan))) is not None:
            end = match.end()
            if self._skipping:
                self._skipping = False
            elif self._max is not None and end - pos > self._max:
                self.overflowed = True  # whole in one chunk, but dropped all the same
            else:
                events.append(bytes(buf[pos:end]))
            pos = end
        if pos:
            del buf[:pos]
        if self._max is not None and len(buf) > self._max:
            del buf[: -(_MAX_SEPARATOR - 1)]  # keep a possible partial separator
            self._skipping = True
            self.overflowed = True
        return events

    def take(self) -> bytes:
        """Hand over (and forget) the held incomplete event."""
        held = b"" if self._skipping else bytes(self._buf)
        self._buf.clear()
        self._skipping = False
        return held


def parse_event(raw: bytes) -> SseEvent:
    """Fields of one raw event; comment lines (``:``…) and unknown fields are ignored."""
    name: str | None = None
    data: list[bytes] = []
    for line in raw.splitlines():
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    return SseEvent(name, b"\n".join(data), bool(data))


def looks_like_sse(body: bytes) -> bool:
    """Whether a whole body is an event stream (a buffered stream handed to parse_response)."""
    head = body.lstrip()[:16]
    return head.startswith((b"data:", b"event:", b"id:", b":"))


def decode_events(raws: Iterable[bytes]) -> Iterator[tuple[str | None, object]]:
    """``(event name, decoded JSON data)`` for each raw event that carries JSON.

    ``[DONE]``, comments and malformed data are skipped, never decoded as something else.
    """
    for raw in raws:
        event = parse_event(raw)
        payload = event.data.strip()
        if not event.has_data or not payload or payload == b"[DONE]":
            continue
        obj = loads(payload)
        if obj is not None:
            yield event.event, obj


class SseStreamParser:
    """Base of the SSE stream parsers: feed splits and keeps, result decodes; neither raises.

    Subclasses implement ``_keep`` (cheap: bytes checks on one raw event, store it or not) and
    ``_build`` (the JSON work, run once off the event loop).
    """

    def __init__(self) -> None:
        self._splitter = SseSplitter()
        self._broken = False
        self._done = False

    def feed(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            for raw in self._splitter.feed(data):
                self._keep(raw)
        except Exception:  # a parser bug must never break the proxied stream
            self._broken = True

    def result(self) -> CallResult:
        try:
            if not self._done:
                self._done = True
                tail = self._splitter.take()
                if tail.strip():
                    self._keep(tail)  # a last event cut before its blank line may be whole
            result = self._build()
            if self._broken or self._splitter.overflowed:
                result.tokens_complete = False
            return result
        except Exception:
            return CallResult()

    def _keep(self, raw: bytes) -> None:
        raise NotImplementedError

    def _build(self) -> CallResult:
        raise NotImplementedError
