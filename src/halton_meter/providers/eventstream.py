"""The AWS event-stream binary framing (`application/vnd.amazon.eventstream`), read incrementally.

Amazon Bedrock streams (InvokeModelWithResponseStream, ConverseStream) are not SSE but a
sequence of binary messages (Smithy's "Amazon Event Stream Specification"; integers big-endian):

    total_length u32 | headers_length u32 | prelude_crc u32 = crc32(first 8 bytes)
    headers (headers_length bytes) | payload | message_crc u32 = crc32(everything before it)

Each header is `name_len u8, name, type u8, value`; the value's size depends on its type. Both
CRCs are CRC-32 (zlib's). The reader hands on whole messages whatever the chunking, holds at most
one incomplete message, and stops for good at the first bad CRC or impossible length: after
that, frame boundaries cannot be trusted, so nothing more is read (the bytes still reach the
client untouched; the meter only reads a copy).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

CONTENT_TYPE = "application/vnd.amazon.eventstream"
PRELUDE = 12  # total length, headers length, prelude CRC
MIN_MESSAGE = 16  # a prelude and the message CRC
# The spec's limits are 24 MiB of payload and 128 KiB of headers; anything larger is not a
# frame we can trust.
MAX_MESSAGE = 24 * 1024 * 1024 + 128 * 1024 + MIN_MESSAGE

_PRELUDE = struct.Struct(">III")
_U16 = struct.Struct(">H")
_CRC = struct.Struct(">I")
# Value sizes of the fixed-width header types: bool true/false, byte, short, int, long,
# (6, 7: length-prefixed), timestamp, uuid.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class FrameError(ValueError):
    """A frame that breaks the framing rules (CRC, lengths, header types)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message: its string headers (`:message-type`, `:event-type`, …) and raw payload."""

    headers: dict[str, str]
    payload: bytes

    @property
    def message_type(self) -> str | None:
        return self.headers.get(":message-type")

    @property
    def event_type(self) -> str | None:
        return self.headers.get(":event-type")


def is_event_stream(content_type: str | None) -> bool:
    return content_type is not None and CONTENT_TYPE in content_type.lower()


def parse_headers(block: bytes) -> dict[str, str]:
    """The string-typed headers of a header block; other types are skipped by their size."""
    headers: dict[str, str] = {}
    pos, end = 0, len(block)
    while pos < end:
        name_len = block[pos]
        pos += 1
        name = block[pos : pos + name_len].decode("utf-8", "replace")
        pos += name_len
        if pos >= end:
            raise FrameError("header without a value type")
        kind = block[pos]
        pos += 1
        if kind in (6, 7):
            if pos + 2 > end:
                raise FrameError("header value length cut short")
            (size,) = _U16.unpack_from(block, pos)
            pos += 2
            if kind == 7:
                headers[name] = block[pos : pos + size].decode("utf-8", "replace")
            pos += size
        elif kind in _FIXED:
            pos += _FIXED[kind]
        else:
            raise FrameError(f"unknown header type {kind}")
        if pos > end:
            raise FrameError("header runs past its block")
    return headers


class EventStreamReader:
    """Cuts a byte stream into messages. `feed` never raises: a broken frame sets `broken`
    (and `error`) and every later byte is ignored."""

    __slots__ = ("_buf", "broken", "error", "messages_read")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.broken = False
        self.error: str | None = None
        self.messages_read = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held (non-zero at the end: a truncated stream)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        if self.broken:
            return []
        # The usual chunk holds whole frames: read it in place, copying nothing but payloads.
        buf: bytes | bytearray = data
        if self._buf:
            self._buf += data
            buf = self._buf
        out: list[Message] = []
        pos = 0
        try:
            with memoryview(buf) as view:
                size = len(view)
                while size - pos >= PRELUDE:
                    total, header_len, prelude_crc = _PRELUDE.unpack_from(view, pos)
                    if zlib.crc32(view[pos : pos + 8]) != prelude_crc:
                        raise FrameError("prelude CRC mismatch")
                    if not MIN_MESSAGE + header_len <= total <= MAX_MESSAGE:
                        raise FrameError(f"impossible lengths {total}/{header_len}")
                    if size - pos < total:
                        break
                    end = pos + total
                    (message_crc,) = _CRC.unpack_from(view, end - 4)
                    if zlib.crc32(view[pos : end - 4]) != message_crc:
                        raise FrameError("message CRC mismatch")
                    start = pos + PRELUDE
                    headers = _headers(bytes(view[start : start + header_len]))
                    out.append(Message(headers, bytes(view[start + header_len : end - 4])))
                    pos = end
        except (FrameError, IndexError, struct.error) as error:
            self.broken, self.error = True, str(error) or type(error).__name__
            self._buf = bytearray()
            self.messages_read += len(out)
            return out
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])
        self.messages_read += len(out)
        return out


_HEADER_CACHE: dict[bytes, dict[str, str]] = {}
_HEADER_CACHE_SIZE = 256


def _headers(block: bytes) -> dict[str, str]:
    """`parse_headers`, remembered: a stream repeats the same few header blocks (every `chunk`
    event has the same three headers), so each is parsed once. The dict is shared: read only."""
    found = _HEADER_CACHE.get(block)
    if found is None:
        found = parse_headers(block)
        if len(_HEADER_CACHE) < _HEADER_CACHE_SIZE:
            _HEADER_CACHE[block] = found
    return found


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers (for tests, benchmarks and the fake upstream)."""
    block = b"".join(
        bytes([len(name.encode())])
        + name.encode()
        + b"\x07"
        + _U16.pack(len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    total = PRELUDE + len(block) + len(payload) + 4
    prelude = struct.pack(">II", total, len(block))
    head = prelude + _CRC.pack(zlib.crc32(prelude)) + block + payload
    return head + _CRC.pack(zlib.crc32(head))
