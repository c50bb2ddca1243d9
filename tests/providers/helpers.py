"""Shared test helpers: awkward chunkings of a byte stream and the usage invariants."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

from halton_meter.providers import (
    CallResult,
    Route,
    Usage,
    parse_response,
    stream_parser,
)

SSE = "text/event-stream; charset=utf-8"


def crlf(text: str) -> bytes:
    """A stream written with LF line ends, sent the way some servers do: CRLF."""
    return text.replace("\n", "\r\n").encode()


def chunkings(data: bytes) -> Iterator[list[bytes]]:
    """The same stream cut in many awkward ways: whole, byte by byte, fixed sizes, and split
    inside every event separator (LF LF and CR LF CR LF) and in the middle of every event."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for size in (2, 3, 7, 64, 1000):
        yield [data[i : i + size] for i in range(0, len(data), size)]
    for separator in (b"\r\n\r\n", b"\n\n"):
        start = 0
        while (at := data.find(separator, start)) != -1:
            for offset in range(1, len(separator)):
                yield [data[: at + offset], data[at + offset :]]
            start = at + 1
    events = data.split(b"\n\n")
    cuts, pos = [], 0
    for event in events:
        cuts.append(pos + len(event) // 2)  # mid-event
        pos += len(event) + 2
    pieces, last = [], 0
    for cut in cuts:
        if last < cut <= len(data):
            pieces.append(data[last:cut])
            last = cut
    pieces.append(data[last:])
    yield pieces


def feed(route: Route, chunks: list[bytes], content_type: str | None = SSE) -> CallResult:
    parser = stream_parser(route, content_type)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.result()


def results_for_all_chunkings(
    route: Route, data: bytes, content_type: str | None = SSE
) -> list[CallResult]:
    """Feed every chunking; also checks that each one gives the very same result."""
    results = [feed(route, chunks, content_type) for chunks in chunkings(data)]
    for result in results[1:]:
        assert result == results[0]
    return results


def check_leaves(usage: Usage) -> None:
    """Every reported count is a non-negative int, and the subsets fit inside their totals."""
    for field in dataclasses.fields(usage):
        value = getattr(usage, field.name)
        assert value is None or (type(value) is int and value >= 0), (field.name, value)
    if usage.cache_write_1h_tokens is not None:
        assert usage.cache_write_tokens is not None
        assert usage.cache_write_1h_tokens <= usage.cache_write_tokens
    if usage.reasoning_tokens is not None and usage.output_tokens is not None:
        assert usage.reasoning_tokens <= usage.output_tokens


def prompt_total(usage: Usage) -> int:
    """input + cache read + cache write: what the provider calls the whole prompt."""
    return (
        (usage.input_tokens or 0) + (usage.cache_read_tokens or 0) + (usage.cache_write_tokens or 0)
    )


def raw(result: CallResult) -> object:
    assert result.raw_usage is not None
    return json.loads(result.raw_usage)


def assert_robust(route: Route, data: bytes, content_type: str | None = SSE) -> None:
    """Every truncation and a few corruptions of ``data``: no exception, sane leaves."""
    step = max(1, len(data) // 150)
    variants = [data[:cut] for cut in range(0, len(data), step)]
    variants += [data.replace(b"{", b"[", 1), data.replace(b'"', b"", 3), data[::-1]]
    variants += [b"\xff\xfe\x00garbage", b"null", b"[]", b"{}", b"42", b'"text"']
    for variant in variants:
        for result in (
            parse_response(route, variant, 200),
            parse_response(route, variant, 500),
            feed(route, [variant], content_type),
            feed(route, [variant[i : i + 5] for i in range(0, len(variant), 5)], content_type),
        ):
            assert isinstance(result, CallResult)
            check_leaves(result.usage)
