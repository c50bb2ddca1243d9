"""The fuzz targets: each checks one parser's invariants on one input.

Every target is a function of bytes (what Atheris and the long Hypothesis runs feed it, see
fuzz/run.py) built on a structured check the suite's Hypothesis tests call directly
(tests/test_fuzz_*.py). A target returns normally, or raises: an `AssertionError` when an
invariant is broken, any other exception when the parser raised where it must not.

Invariants (docs/architecture.md, issue 18):
- the edge answers every request head it can parse, and what it parses a resolver can take;
- a stream tap never raises and the client gets exactly the upstream's bytes;
- every wire format's parsers never raise out of their dispatchers, give the same result
  however a stream is cut, and a call always becomes a row SQLite accepts (or the failure is
  counted by the writer);
- config.toml gives a Config or a ConfigError naming key and line, nothing else;
- the team server's ingest refuses what it cannot store, before storing anything.

Wire formats come from `providers.registry.WIRES`, so one added later is fuzzed too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import json
import socket
import sqlite3
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from halton_meter import providers
from halton_meter.capture.record import CapturedCall
from halton_meter.capture.tap import StreamTap
from halton_meter.config import ConfigError, parse_config
from halton_meter.decoding import chunk_decoder
from halton_meter.edge.wire import REASONS, WireError, parse_request, parse_response
from halton_meter.ledger.build import RowBuilder
from halton_meter.ledger.row import INSERT_SQL
from halton_meter.ledger.schema import migrate
from halton_meter.providers.base import CallResult, Route, Usage
from halton_meter.providers.registry import WIRES
from halton_meter.providers.sse import SseSplitter
from halton_meter.providers.stream_usage import InjectedUsageFilter
from halton_meter.providers.wireformat import WireFormat
from halton_meter.teamserver import ingest
from halton_meter.upstream import is_loopback_name

# --- routes and content types, from the registry ----------------------------------------------

# Paths with a variable part, for wire formats that match paths themselves (`match_path`): a
# model in the URL (Gemini, Bedrock-style), a method after a colon (Code Assist).
SAMPLE_PATHS = (
    "/v1beta/models/gemini-2.5-flash:generateContent",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    "/v1beta/models/text-embedding-004:embedContent",
    "/v1beta/models/text-embedding-004:batchEmbedContents",
    "/v1beta/models/gemini-2.5-flash:countTokens",
    "/v1internal:generateContent",
    "/v1internal:streamGenerateContent",
    "/v1internal:countTokens",
    "/model/anthropic.claude-sonnet-4-5-v1:0/invoke",
    "/model/anthropic.claude-sonnet-4-5-v1:0/invoke-with-response-stream",
    "/model/anthropic.claude-sonnet-4-5-v1:0/converse",
    "/model/anthropic.claude-sonnet-4-5-v1:0/converse-stream",
    "/v1/responses",
    "/v1/realtime",
)
CONTENT_TYPES: tuple[str | None, ...] = (
    "text/event-stream; charset=utf-8",
    "application/json",
    "application/vnd.amazon.eventstream",
    None,
)
ENCODINGS: tuple[str | None, ...] = (None, "gzip", "deflate", "br", "zstd", "x-unknown")


def routes_of(wire: WireFormat) -> list[Route]:
    """Every route a wire format produces: its fixed paths and the sample variable paths."""
    found = [wire.route("fuzz", rule) for rule in wire.paths]
    for path in SAMPLE_PATHS:
        route = wire.match_path("fuzz", path, anchored=False)
        if route is not None:
            found.append(route)
    if not found:  # a wire format whose paths we cannot guess: its parsers all the same
        found.append(Route("fuzz", wire.name, wire.name))
    unique = {(r.api, r.model_from_path, r.zero_cost): r for r in found}
    return list(unique.values())


@functools.cache
def all_routes() -> tuple[Route, ...]:
    """Every route of every registered wire format, in a stable order."""
    return tuple(route for name in sorted(WIRES) for route in routes_of(WIRES[name]))


def _pick(options: Sequence[object], byte: int) -> int:
    return byte % len(options)


def cuts(data: bytes, seed: int) -> list[bytes]:
    """`data` in pieces, cut where `seed` says (deterministic, any sizes including 1)."""
    if not data:
        return []
    pieces, pos, step = [], 0, seed or 1
    while pos < len(data):
        size = 1 + (step * 7919 + pos) % max(1, min(len(data), 1 + seed * 3))
        pieces.append(data[pos : pos + size])
        pos += size
        step = (step * 31 + 17) % 251 or 1
    return pieces


# --- the edge's request head --------------------------------------------------------------------


def check_edge_head(raw: bytes) -> None:
    """A head the edge parses names a target getaddrinfo can take, and everything the edge
    then does with it is total; a head it cannot parse is a WireError with a status it has a
    reason phrase for (the edge answers it)."""
    try:
        head = parse_request(raw)
    except WireError as error:
        assert error.status in REASONS, error.status
    else:
        if head.is_connect or not head.origin_form:
            assert head.host and 0 < head.port < 65536, (head.host, head.port)
            is_loopback_name(head.host)
            # What asyncio's connect does first (encode the name: a NUL or an over-long label
            # raised here); AI_NUMERICHOST: no DNS query ever, a name is refused (gaierror).
            with contextlib.suppress(socket.gaierror):
                socket.getaddrinfo(head.host, head.port, flags=socket.AI_NUMERICHOST)
            head.authority.encode("latin-1")
        head.for_daemon("127.0.0.1:5")
        head.for_proxy("Basic eDp5")
        if head.host:
            head.for_origin()
        head.keep_alive()
        try:
            head.body_length()
        except WireError as error:
            assert error.status in REASONS
    try:
        response = parse_response(raw)
    except WireError as error:
        assert error.status in REASONS
    else:
        response.keep_alive()
        try:
            response.body_length("GET")
        except WireError as error:
            assert error.status in REASONS


def target_edge_head(data: bytes) -> None:
    check_edge_head(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")


# --- stream parsers -----------------------------------------------------------------------------


def _usage_ok(result: CallResult) -> None:
    assert isinstance(result, CallResult)
    for item in dataclasses.fields(Usage):
        value = getattr(result.usage, item.name)
        assert value is None or (type(value) is int and value >= 0), (item.name, value)


def stream_result(route: Route, content_type: str | None, chunks: Sequence[bytes]) -> CallResult:
    parser = providers.stream_parser(route, content_type)
    for chunk in chunks:
        parser.feed(chunk)
    parser.feed(b"")
    return parser.result()


def check_stream(route: Route, content_type: str | None, chunks: Sequence[bytes]) -> None:
    """A stream parser never raises, and gives the same result however the stream is cut."""
    whole = stream_result(route, content_type, [b"".join(chunks)])
    _usage_ok(whole)
    cut = stream_result(route, content_type, chunks)
    assert cut == whole, (route, content_type, chunks, cut, whole)


def check_tap(
    route: Route, content_type: str | None, encoding: str | None, chunks: Sequence[bytes]
) -> None:
    """Through the stream tap, with a content encoding (the copy is decoded for the parser,
    perhaps failing): every chunk is forwarded as it came, and nothing raises."""
    call = CapturedCall(route, "fuzz.test", time.time(), None, None)
    decoder = chunk_decoder(encoding)
    tap = StreamTap(call, providers.stream_parser(route, content_type), decoder)
    for chunk in chunks:
        assert tap(chunk) == chunk
    assert tap(b"") == b""


def _compressed(data: bytes, encoding: str | None) -> bytes:
    if encoding in ("gzip",):
        return gzip.compress(data, mtime=0)
    if encoding == "deflate":
        return zlib.compress(data)
    return data  # br/zstd/unknown: the decoder gets bytes it may not read, which is fine


def target_stream(data: bytes) -> None:
    if len(data) < 3:
        return
    routes = all_routes()
    route = routes[_pick(routes, data[0])]
    content_type = CONTENT_TYPES[_pick(CONTENT_TYPES, data[1])]
    body = data[3:]
    check_stream(route, content_type, cuts(body, data[2]))
    encoding = ENCODINGS[_pick(ENCODINGS, data[1] >> 2)]
    check_tap(route, content_type, encoding, cuts(_compressed(body, encoding), data[2]))


# --- SSE and JSON-array splitting -------------------------------------------------------------


def split_events(chunks: Sequence[bytes], limit: int | None) -> tuple[list[bytes], bytes, bool]:
    splitter = SseSplitter(max_event_bytes=limit)
    events = [event for chunk in chunks for event in splitter.feed(chunk)]
    return events, splitter.take(), splitter.overflowed


def check_sse(chunks: Sequence[bytes], limit: int | None = None) -> None:
    """Every cut gives the same events as one feed; without a limit the events and the held
    rest are the stream, byte for byte."""
    whole = split_events([b"".join(chunks)], limit)
    cut = split_events(chunks, limit)
    assert cut == whole, (chunks, cut, whole)
    if limit is None:
        events, rest, _ = cut
        assert b"".join(events) + rest == b"".join(chunks)


def target_sse(data: bytes) -> None:
    seed = data[0] if data else 0
    check_sse(cuts(data[1:], seed))
    check_sse(cuts(data[1:], seed), limit=1 + seed % 64)


def check_json_array(chunks: Sequence[bytes]) -> None:
    """Gemini's array stream: the same result for every cut (its parser keeps the bytes)."""
    route = Route("fuzz", "gemini", "stream_generate_content")
    check_stream(route, "application/json", chunks)


def target_json_array(data: bytes) -> None:
    seed = data[0] if data else 0
    check_json_array(cuts(data[1:], seed))


# --- the usage filter: the client's bytes --------------------------------------------------------


def filtered(chunks: Sequence[bytes]) -> bytes:
    """What the client receives through a tap with the usage filter."""
    route = Route("openai", "openai-chat", "chat")
    call = CapturedCall(route, "api.openai.com", time.time(), None, None, usage_injected=True)
    parser = providers.stream_parser(route, "text/event-stream")
    tap = StreamTap(call, parser, chunk_decoder(None), InjectedUsageFilter())
    out = []
    for chunk in [*chunks, b""]:
        forwarded = tap(chunk)
        out.extend(forwarded if isinstance(forwarded, list) else [forwarded])
    return b"".join(out)


def check_usage_filter(chunks: Sequence[bytes]) -> None:
    """A stream with no usage in it reaches the client byte for byte, however it is cut."""
    data = b"".join(chunks)
    out = filtered(chunks)
    if b"usage" not in data:
        assert out == data, (chunks, out)


def target_usage_filter(data: bytes) -> None:
    seed = data[0] if data else 0
    check_usage_filter(cuts(data[1:], seed))


# --- whole bodies, and a call becoming a row ----------------------------------------------------


@functools.cache
def _ledger() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    migrate(con)
    return con


@functools.cache
def _builder() -> RowBuilder:
    return RowBuilder()


def check_record(
    route: Route,
    request: bytes,
    response: bytes,
    status: int,
    *,
    request_encoding: str | None = None,
    response_encoding: str | None = None,
    content_type: str | None = None,
    streamed: bool = False,
) -> None:
    """A finished call always becomes a row, and SQLite takes that row: the writer counts a
    row it cannot build or store as dropped, so anything raising here is a row lost."""
    call = CapturedCall(route, "fuzz.test", time.time() - 1, None, "fuzz/1")
    call.request_body, call.request_encoding = request, request_encoding
    call.http_status, call.finished_at = status, time.time()
    if streamed:
        call.stream_parser = providers.stream_parser(route, content_type)
        call.stream_parser.feed(response)
        call.first_byte_at = call.finished_at
    else:
        call.response_body, call.response_encoding = response, response_encoding
    facts = call.facts()
    _usage_ok(facts.result)
    row = _builder().build(facts)
    con = _ledger()
    con.execute("BEGIN")
    try:
        con.execute(INSERT_SQL, row.values())
    finally:
        con.execute("ROLLBACK")


def target_body(data: bytes) -> None:
    if len(data) < 2:
        return
    routes = all_routes()
    route = routes[_pick(routes, data[0])]
    body = data[2:]
    status = (200, 400, 429, 500, 529, 0, 999)[data[1] % 7]
    encoding = ENCODINGS[_pick(ENCODINGS, data[1] >> 3)]
    check_record(route, body, body, status, request_encoding=encoding, response_encoding=encoding)
    check_record(route, body, body, status, content_type=CONTENT_TYPES[data[1] % 4], streamed=True)


# --- config.toml -------------------------------------------------------------------------------


def check_config(text: str) -> None:
    """A Config, or a ConfigError naming a key; a syntax error also names its line."""
    try:
        parse_config(text, Path("config.toml"))
    except ConfigError as error:
        assert error.key, str(error)
        if error.key == "(syntax)":
            assert error.line is not None, str(error)


def target_config(data: bytes) -> None:
    check_config(data.decode("utf-8", "replace"))


# --- the team server's ingest ------------------------------------------------------------------


def check_ingest(body: object) -> None:
    """A batch is refused by validation (422, nothing stored) or can be stored: the columns
    the server writes can be computed for every row it accepted."""
    try:
        batch = ingest.Batch.model_validate(body)
    except ValidationError:
        return
    columns = ingest.columns_for(batch.rows)
    for name, kind in ingest._COLUMNS:
        values = columns[name]
        assert len(values) == len(batch.rows)
        if kind in ("bigint[]", "integer[]"):  # what PostgreSQL would refuse mid-transaction
            bound = 2**63 if kind == "bigint[]" else 2**31
            assert all(v is None or -bound <= v < bound for v in values), (name, values)


def target_ingest(data: bytes) -> None:
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return  # the route answers 400 before validation
    check_ingest(body)


TARGETS = {
    "edge_head": target_edge_head,
    "stream": target_stream,
    "body": target_body,
    "sse": target_sse,
    "json_array": target_json_array,
    "usage_filter": target_usage_filter,
    "config": target_config,
    "ingest": target_ingest,
}
