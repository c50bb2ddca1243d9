"""The SSE splitter: byte-exact events whatever the chunking and line endings."""

from __future__ import annotations

from halton_meter.providers.sse import SseSplitter, decode_events, looks_like_sse, parse_event

from .helpers import chunkings


def split(chunks: list[bytes], max_event_bytes: int | None = None) -> tuple[list[bytes], bytes]:
    splitter = SseSplitter(max_event_bytes)
    events = [event for chunk in chunks for event in splitter.feed(chunk)]
    return events, splitter.take()


def test_lf_and_crlf_events_in_any_chunking() -> None:
    lf = b'event: a\ndata: {"n":1}\n\n: keep-alive\n\ndata: {"n":2}\n\n'
    crlf = lf.replace(b"\n", b"\r\n")
    for data in (lf, crlf):
        expected = [data[: data.index(b"}") + 1 + (2 if data is lf else 4)]]
        for chunks in chunkings(data):
            events, tail = split(chunks)
            assert b"".join(events) == data  # nothing lost, nothing added
            assert len(events) == 3 and tail == b""
            assert events[0] == expected[0]


def test_separator_split_across_chunks_is_not_taken_early() -> None:
    # A lone CR at the end of a chunk may be the first half of CRLF: it must wait.
    events, tail = split([b"data: 1\r\n\r", b"\ndata: 2\r\n\r\n"])
    assert events == [b"data: 1\r\n\r\n", b"data: 2\r\n\r\n"]
    assert tail == b""


def test_lone_cr_and_mixed_endings() -> None:
    events, _ = split([b"data: 1\r\rdata: 2\r\n\ndata: 3\n\r\n"])
    assert events == [b"data: 1\r\r", b"data: 2\r\n\n", b"data: 3\n\r\n"]


def test_incomplete_event_is_held() -> None:
    events, tail = split([b'data: 1\n\ndata: {"half'])
    assert events == [b"data: 1\n\n"] and tail == b'data: {"half'


def test_parse_event_fields_comments_and_multiline_data() -> None:
    event = parse_event(b': comment\r\nevent: update\r\nid: 7\r\ndata: {"a":\r\ndata:1}\r\n\r\n')
    assert event.event == "update"
    assert event.data == b'{"a":\n1}'
    assert event.has_data
    assert parse_event(b": only a comment\n\n").has_data is False


def test_decode_events_skips_done_comments_and_garbage() -> None:
    raws = [
        b": OPENROUTER PROCESSING\n\n",
        b'data: {"ok": 1}\n\n',
        b"data: [DONE]\n\n",
        b"data: {not json\n\n",
        b"event: ping\n\n",
    ]
    assert list(decode_events(raws)) == [(None, {"ok": 1})]


def test_oversized_event_is_dropped_up_to_its_end() -> None:
    big = b"data: " + b"x" * 5000 + b"\n\n"
    data = b"data: 1\n\n" + big + b"data: 2\n\n"
    for chunks in ([data], [data[i : i + 100] for i in range(0, len(data), 100)]):
        splitter = SseSplitter(max_event_bytes=1000)
        events = [e for chunk in chunks for e in splitter.feed(chunk)]
        assert events == [b"data: 1\n\n", b"data: 2\n\n"]
        assert splitter.overflowed


def test_looks_like_sse() -> None:
    assert looks_like_sse(b"event: message_start\ndata: {}\n\n")
    assert looks_like_sse(b"\r\ndata: {}\r\n\r\n")
    assert looks_like_sse(b": OPENROUTER PROCESSING\n\n")
    assert not looks_like_sse(b'{"data": 1}')
    assert not looks_like_sse(b"[{")
