"""The AWS event-stream frame reader: published test vectors, every split point, broken frames."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from halton_meter.providers.eventstream import (
    MAX_MESSAGE,
    EventStreamReader,
    Message,
    encode_message,
    parse_headers,
)

# aws-c-event-stream's encoded/positive test vectors (github.com/awslabs/aws-c-event-stream).
EMPTY_MESSAGE = bytes.fromhex("000000100000000005c248eb7d98c8ff")
FOO_BAR = bytes.fromhex(
    "0000001d00000000fd528c5a7b27666f6f273a27626172277dc3653936"
)  # payload {'foo':'bar'}, no headers
# A ConverseStream `metadata` message, built by hand from the spec (research notes, section 1.4).
METADATA = bytes.fromhex(
    "000000b80000004ed4f1f02b0d3a6d6573736167652d747970650700056576656e740b3a6576656e742d"
    "747970650700086d657461646174610d3a636f6e74656e742d747970650700106170706c69636174696f"
    "6e2f6a736f6e7b227573616765223a7b22696e707574546f6b656e73223a31322c226f7574707574546f"
    "6b656e73223a372c22746f74616c546f6b656e73223a31397d2c226d657472696373223a7b226c617465"
    "6e63794d73223a3330307d7d88c2a149"
)
EVENT = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}


def chunk_frame(inner: dict[str, object], padding: str = "abcdefgh") -> bytes:
    payload = {"bytes": base64.b64encode(json.dumps(inner).encode()).decode(), "p": padding}
    return encode_message(EVENT, json.dumps(payload).encode())


def stream() -> bytes:
    return b"".join(
        [
            chunk_frame({"type": "message_start", "message": {"usage": {"input_tokens": 40}}}),
            chunk_frame({"type": "content_block_delta", "delta": {"text": "Hi"}}, "abc"),
            METADATA,
            EMPTY_MESSAGE,
            FOO_BAR,
        ]
    )


def read_all(chunks: list[bytes]) -> tuple[list[Message], EventStreamReader]:
    reader = EventStreamReader()
    out: list[Message] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out, reader


def test_published_vectors() -> None:
    (empty,), _ = read_all([EMPTY_MESSAGE])
    assert empty == Message({}, b"")
    (foo,), _ = read_all([FOO_BAR])
    assert foo == Message({}, b"{'foo':'bar'}")
    (metadata,), _ = read_all([METADATA])
    assert metadata.event_type == "metadata" and metadata.message_type == "event"
    assert json.loads(metadata.payload)["usage"]["outputTokens"] == 7


def test_the_encoder_matches_the_published_vectors() -> None:
    assert encode_message({}, b"") == EMPTY_MESSAGE
    assert encode_message({}, b"{'foo':'bar'}") == FOO_BAR


def test_every_split_point_gives_the_same_messages() -> None:
    data = stream()
    whole, _ = read_all([data])
    assert len(whole) == 5
    for cut in range(len(data) + 1):
        messages, reader = read_all([data[:cut], data[cut:]])
        assert messages == whole, cut
        assert reader.pending == 0 and not reader.broken
    for cut1 in range(0, len(data), 7):
        for cut2 in range(cut1, len(data), 13):
            messages, _ = read_all([data[:cut1], data[cut1:cut2], data[cut2:]])
            assert messages == whole
    messages, _ = read_all([data[i : i + 1] for i in range(len(data))])
    assert messages == whole


@pytest.mark.parametrize("where", ["prelude", "payload", "message_crc"])
def test_a_corrupt_crc_stops_the_reader_for_good(where: str) -> None:
    first = chunk_frame({"type": "message_start"})
    second = bytearray(chunk_frame({"type": "message_stop"}))
    index = {"prelude": 5, "payload": len(second) // 2, "message_crc": len(second) - 1}[where]
    second[index] ^= 0x01
    messages, reader = read_all([first + bytes(second) + EMPTY_MESSAGE])
    assert len(messages) == 1 and reader.broken and reader.pending == 0
    assert "CRC" in (reader.error or "")
    assert reader.feed(EMPTY_MESSAGE) == []  # nothing more is read once broken


def test_a_truncated_stream_holds_its_incomplete_message() -> None:
    data = stream()
    for cut in (1, 11, 12, 40, len(data) - 1):
        messages, reader = read_all([data[:cut]])
        assert not reader.broken
        assert reader.pending > 0
        assert len(messages) < 5


def test_impossible_lengths_are_broken_frames() -> None:
    for total, header_len in ((8, 0), (20, 10), (MAX_MESSAGE + 1, 0)):
        prelude = struct.pack(">II", total, header_len)
        head = prelude + struct.pack(">I", zlib.crc32(prelude))
        _, reader = read_all([head + b"\x00" * 8])
        assert reader.broken, (total, header_len)


def test_header_types_other_than_strings_are_skipped_by_size() -> None:
    block = (
        b"\x01a\x00"  # bool true
        + b"\x01b\x02\x7f"  # byte
        + b"\x01c\x03\x00\x01"  # short
        + b"\x01d\x04\x00\x00\x00\x01"  # int
        + b"\x01e\x05"
        + b"\x00" * 8  # long
        + b"\x01f\x06\x00\x02xy"  # bytes
        + b"\x01g\x08"
        + b"\x00" * 8  # timestamp
        + b"\x01h\x09"
        + b"\x00" * 16  # uuid
        + b"\x01i\x07\x00\x02ok"  # string
    )
    assert parse_headers(block) == {"i": "ok"}


def test_a_bad_header_type_breaks_the_frame() -> None:
    block = b"\x01z\x0f"
    prelude = struct.pack(">II", 16 + len(block), len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + block
    frame = head + struct.pack(">I", zlib.crc32(head))
    messages, reader = read_all([frame])
    assert messages == [] and reader.broken
