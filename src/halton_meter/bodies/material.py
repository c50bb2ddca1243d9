"""What a finished call hands the writer for body capture: references, never copies.

`BodyMaterial` rides along in `CallFacts.body`; only when the call's project captures does the
writer side decode, assemble, redact and store it (bodies/sink.py). `StreamKeeper` is the one
place stream bytes are kept, and only for a call the addon thinks may capture, at most
`limit` bytes (past it the rest is counted, not kept).
"""

from __future__ import annotations

from dataclasses import dataclass


class StreamKeeper:
    """The decoded bytes of one tapped stream, bounded: O(chunk) per chunk, `limit` in all."""

    __slots__ = ("_parts", "dropped", "kept", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = 0
        self.dropped = 0
        self._parts: list[bytes] = []

    def add(self, data: bytes) -> None:
        room = self.limit - self.kept
        if room <= 0:
            self.dropped += len(data)
            return
        part = data if len(data) <= room else data[:room]
        self._parts.append(part)
        self.kept += len(part)
        self.dropped += len(data) - len(part)

    def data(self) -> bytes:
        return b"".join(self._parts)


@dataclass(slots=True)
class BodyMaterial:
    """The raw bodies of one call as the hooks referenced them (still content-encoded)."""

    wire: str
    api: str
    request: bytes
    request_encoding: str | None = None
    response: bytes | None = None  # a whole (non-stream) response
    response_encoding: str | None = None
    stream: StreamKeeper | None = None  # a tapped stream, decoded, when the addon kept it
    content_type: str | None = None
    # WebSocket calls: the server's terminal event (the whole response, for Responses).
    socket_messages: tuple[bytes, ...] = ()
