"""Property tests of every parser that reads bytes from outside (issue 18).

Bounded: each test runs a few dozen examples in seconds; the long runs are fuzz/run.py. The
checks are fuzz/targets.py's, so a failure here replays there and the other way round. Wire
formats come from the registry: one added later is tested here without a line changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fuzz import seeds
from fuzz.targets import (
    CONTENT_TYPES,
    ENCODINGS,
    TARGETS,
    all_routes,
    check_config,
    check_edge_head,
    check_ingest,
    check_json_array,
    check_record,
    check_sse,
    check_stream,
    check_tap,
    check_usage_filter,
    filtered,
    routes_of,
)
from hypothesis import example, given
from hypothesis import strategies as st

from halton_meter.config import ConfigError, parse_config
from halton_meter.providers.registry import WIRES
from tests.fuzzing import (
    bounded,
    chunked,
    json_arrays,
    json_objects,
    json_values,
    mutations,
    request_heads,
    sse_streams,
)

CORPUS = Path(seeds.__file__).parent / "corpus"


def test_every_kept_corpus_input_passes_its_target() -> None:
    """The corpus in the repo (seeds and past findings) replays clean: each finding that was
    fixed stays fixed."""
    replayed = 0
    for folder in sorted(CORPUS.iterdir()):
        for item in sorted(folder.iterdir()):
            TARGETS[folder.name](item.read_bytes())
            replayed += 1
    assert replayed >= len(TARGETS)


# --- the edge's request head --------------------------------------------------------------------


@bounded(300)
@given(st.one_of(request_heads(), mutations(seeds.EDGE_HEADS)))
@example(b"CONNECT \xff\xfe\x00:443 HTTP/1.1\r\n\r\n")
@example(b"CONNECT " + b"a" * 5000 + b":443 HTTP/1.1\r\n\r\n")
@example(b"CONNECT host:\xb2 HTTP/1.1\r\n\r\n")
def test_edge_head_parser(raw: bytes) -> None:
    check_edge_head(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")


# --- stream and body parsers, per registered wire format ----------------------------------------

WIRE_NAMES = sorted(WIRES)


def test_the_registry_drives_the_fuzzing() -> None:
    """Every registered wire format has routes the fuzzers use (fixed paths, sample paths, or
    a generic route), so a new one is fuzzed the day it is registered."""
    for name in WIRE_NAMES:
        assert routes_of(WIRES[name]), name
    assert {route.wire for route in all_routes()} == set(WIRES)


def streams_for(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        sse_streams(),
        json_arrays(),
        mutations(seeds.RESPONSES),
        st.sampled_from(seeds.RESPONSES),
        st.binary(max_size=200),
    )


@pytest.mark.parametrize("name", WIRE_NAMES)
@bounded(60)
@given(data=st.data())
def test_stream_parsers_are_total_and_cut_independent(name: str, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(routes_of(WIRES[name])), "route")
    content_type = data.draw(st.sampled_from(CONTENT_TYPES), "content type")
    stream = data.draw(streams_for(name), "stream")
    check_stream(route, content_type, data.draw(chunked(stream), "chunks"))


@pytest.mark.parametrize("name", WIRE_NAMES)
@bounded(40)
@given(data=st.data())
def test_the_tap_forwards_every_byte(name: str, data: st.DataObject) -> None:
    """Whatever the parser makes of it, and whether or not its copy can be decompressed."""
    route = data.draw(st.sampled_from(routes_of(WIRES[name])), "route")
    content_type = data.draw(st.sampled_from(CONTENT_TYPES), "content type")
    encoding = data.draw(st.sampled_from(ENCODINGS), "encoding")
    stream = data.draw(streams_for(name), "stream")
    check_tap(route, content_type, encoding, data.draw(chunked(stream), "chunks"))


@pytest.mark.parametrize("name", WIRE_NAMES)
@bounded(60)
@given(data=st.data())
def test_every_call_becomes_a_storable_row(name: str, data: st.DataObject) -> None:
    """Request and response parsers, then the row builder, then SQLite: a row every time."""
    route = data.draw(st.sampled_from(routes_of(WIRES[name])), "route")
    bodies = st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        json_objects.map(lambda v: json.dumps({"usage": v, "model": "m"}).encode()),
        mutations(seeds.RESPONSES + [r.encode() for r in seeds.REQUESTS]),
        sse_streams(),
        json_arrays(),
        st.binary(max_size=100),
    )
    request, response = data.draw(bodies, "request"), data.draw(bodies, "response")
    status = data.draw(st.sampled_from([0, 200, 400, 401, 404, 429, 500, 529, 999]), "status")
    check_record(
        route,
        request,
        response,
        status,
        request_encoding=data.draw(st.sampled_from(ENCODINGS)),
        response_encoding=data.draw(st.sampled_from(ENCODINGS)),
        content_type=data.draw(st.sampled_from(CONTENT_TYPES)),
        streamed=data.draw(st.booleans()),
    )


def test_huge_token_counts_still_make_a_storable_row() -> None:
    """A usage count past SQLite's 64-bit integers must not make the row unstorable (the
    row keeps NULL there: LedgerRow.values)."""
    route = next(r for r in all_routes() if r.wire == "openai-chat")
    body = json.dumps({"model": "gpt-4.1", "usage": {"prompt_tokens": 2**64}}).encode()
    check_record(route, b"{}", body, 200)


# --- SSE and JSON-array splitting ---------------------------------------------------------------


@bounded(200)
@given(data=st.data())
def test_sse_splitting_does_not_depend_on_the_cuts(data: st.DataObject) -> None:
    stream = data.draw(st.one_of(sse_streams(), mutations(seeds.RESPONSES), st.binary()))
    chunks = data.draw(chunked(stream))
    check_sse(chunks)
    check_sse(chunks, limit=data.draw(st.integers(1, 64)))


def test_sse_every_split_point_of_valid_streams() -> None:
    """Every single cut point of the valid sample streams gives one feed's events."""
    for stream in (seeds.ANTHROPIC_STREAM, seeds.CHAT_STREAM, seeds.GEMINI_SSE):
        crlf = stream.replace(b"\n", b"\r\n")
        for data in (stream, crlf):
            for at in range(len(data) + 1):
                check_sse([data[:at], data[at:]])


@bounded(80)
@given(data=st.data())
def test_json_array_parsing_does_not_depend_on_the_cuts(data: st.DataObject) -> None:
    stream = data.draw(st.one_of(json_arrays(), mutations([seeds.GEMINI_ARRAY])))
    check_json_array(data.draw(chunked(stream)))


def test_json_array_every_split_point_of_a_valid_stream() -> None:
    data = seeds.GEMINI_ARRAY
    for at in range(len(data) + 1):
        check_json_array([data[:at], data[at:]])


# --- the client's bytes through the usage filter --------------------------------------------------


@st.composite
def chat_streams(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(what upstream sends when the meter asked for usage, what the client must receive)."""
    end = draw(st.sampled_from(["\n\n", "\r\n\r\n"]))
    client, upstream = [], []
    for index in range(draw(st.integers(1, 5))):
        chunk: dict[str, Any] = {
            "id": "chatcmpl-1",
            "model": "gpt-4.1",
            "choices": [{"index": 0, "delta": {"content": draw(st.text(max_size=12))}}],
        }
        if index == 0 and draw(st.booleans()):
            chunk["x"] = draw(json_values)
        plain = json.dumps(chunk)
        first = draw(st.booleans())
        with_null = '{"usage": null, ' + plain[1:] if first else plain[:-1] + ', "usage": null}'
        client.append(f"data: {plain}{end}")
        upstream.append(f"data: {with_null}{end}")
    usage = {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 3}}
    upstream.append(f"data: {json.dumps(usage)}{end}")
    client.append(f"data: [DONE]{end}")
    upstream.append(f"data: [DONE]{end}")
    return "".join(upstream).encode(), "".join(client).encode()


@bounded(150)
@given(data=st.data())
def test_the_client_gets_exactly_what_it_would_have_got(data: st.DataObject) -> None:
    upstream, client = data.draw(chat_streams())
    assert filtered(data.draw(chunked(upstream))) == client


@bounded(150)
@given(data=st.data())
def test_streams_without_usage_pass_the_filter_unchanged(data: st.DataObject) -> None:
    stream = data.draw(st.one_of(sse_streams(), st.binary(max_size=300)))
    check_usage_filter(data.draw(chunked(stream)))


# --- config.toml -----------------------------------------------------------------------------

SECTION_KEYS = {
    "daemon": ["proxy_port", "internal_port", "api_port", "log_level"],
    "ca": ["dir"],
    "upstream": ["ca_bundle", "proxy", "resolve"],
    "tagging": ["default_project", "rules"],
    "display": ["currency", "usd_rate"],
    "cors": ["allow_origins"],
    "cloud": ["privacy", "hash_projects", "sync_interval_seconds", "batch_size"],
    "endpoints": ["host", "port", "wire", "provider"],
    "pricing": ["overrides"],
}
toml_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).replace("e", "e")),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=20).map(json.dumps),
    st.lists(st.text(max_size=8).map(json.dumps), max_size=3).map(lambda v: f"[{', '.join(v)}]"),
    st.sampled_from(["{}", "{ a = 1 }", "1979-05-27T07:32:00Z", "inf", "nan", "0x10", "[[]]"]),
)


@st.composite
def config_texts(draw: st.DrawFn) -> tuple[str, str | None]:
    """A TOML document with one known key holding a random value; (text, that key)."""
    section = draw(st.sampled_from(sorted(SECTION_KEYS)))
    key = draw(st.sampled_from(SECTION_KEYS[section]))
    value = draw(toml_values)
    header = f"[[{section}]]" if section == "endpoints" else f"[{section}]"
    lines = ["# config", header, f"{key} = {value}"]
    return "\n".join(lines) + "\n", f"{section}.{key}"


@bounded(200)
@given(st.one_of(config_texts(), mutations([seeds.CONFIG]).map(lambda b: (b, None))))
def test_config_gives_a_config_or_an_error_naming_key_and_line(
    case: tuple[str | bytes, str | None],
) -> None:
    text, key = case
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    check_config(text)
    if key is None:
        return
    try:
        parse_config(text, Path("config.toml"))
    except ConfigError as error:
        if error.key != "(syntax)" and error.key.startswith(key.split(".")[0]):
            assert error.line is not None, str(error)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[daemon]\nlog_level = "info', 2),  # "Unterminated string (at end of document)"
        ("[daemon]\nproxy_port = ", 2),
        ("[daemon]\n[daemon]\n", 2),
    ],
)
def test_config_syntax_errors_name_a_line(text: str, line: int) -> None:
    """Regression (issue 18, found by fuzz/): an error at the end of the document had no line."""
    with pytest.raises(ConfigError) as raised:
        parse_config(text, Path("config.toml"))
    assert raised.value.key == "(syntax)"
    assert raised.value.line == line


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ('# c\n[pricing]\noverrides = [""]\n', "pricing.overrides[0]", 3),
        ("# c\n[pricing]\noverrides = [[]]\n", "pricing.overrides[0]", 3),
        ("[tagging]\nrules = [1]\n", "tagging.rules[0]", 2),
        ('[tagging]\n\nrules = [{ project = "x" }]\n', "tagging.rules[0]", 3),
        ("[display]\nusd_rate = nan\n", "display.usd_rate", 2),  # was decimal.InvalidOperation
        ("[display]\nusd_rate = inf\n", "display.usd_rate", 2),  # was accepted
    ],
)
def test_config_errors_found_by_fuzzing_name_key_and_line(text: str, key: str, line: int) -> None:
    """Regressions (issue 18, found by the property test above): a bad entry of an inline
    array (`overrides = [...]`, not `[[pricing.overrides]]`) was reported without a line;
    `usd_rate = nan` raised decimal.InvalidOperation instead of a ConfigError, and `inf` was
    taken as a rate."""
    with pytest.raises(ConfigError) as raised:
        parse_config(text, Path("config.toml"))
    assert raised.value.key == key
    assert raised.value.line == line


# --- the team server's ingest (pydantic only, no PostgreSQL) -----------------------------------


@st.composite
def batches(draw: st.DrawFn) -> object:
    """A valid batch with one field of one row given a random value (or removed)."""
    row = dict(seeds.WIRE_ROW)
    field = draw(st.sampled_from(sorted(row)))
    if draw(st.booleans()):
        row.pop(field)
    else:
        row[field] = draw(
            st.one_of(
                json_values,
                st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", fullmatch=True),
                st.integers(-(2**64), 2**64),
            )
        )
    body = json.loads(seeds.INGEST)
    body["rows"] = [row]
    return body


@bounded(200)
@given(st.one_of(batches(), json_values, mutations([seeds.INGEST]).map(lambda b: b)))
@example(json.loads(seeds.INGEST.replace(b"2025-06-01", b"2025-02-30")))
def test_ingest_refuses_what_it_cannot_store(body: object) -> None:
    if isinstance(body, bytes):
        TARGETS["ingest"](body)
    else:
        check_ingest(body)


def test_ingest_refuses_a_day_that_does_not_exist() -> None:
    """Regression (issue 18, found by fuzz/): 2025-06-00 matched the pattern, was accepted,
    and failed at storage (a 500) instead of being refused (422)."""
    from pydantic import ValidationError

    from halton_meter.teamserver.ingest import Batch

    for day in ("2025-06-00", "2025-02-30", "2025-13-01"):
        body = json.loads(seeds.INGEST.replace(b"2025-06-01", day.encode()))
        with pytest.raises(ValidationError, match="requested_at"):
            Batch.model_validate(body)
    Batch.model_validate(json.loads(seeds.INGEST))


def test_a_nested_usage_null_is_the_clients_data() -> None:
    """Regression (issue 18, found by the property test above): the filter removed the last
    `"usage": null` of a chunk, which may be one nested in the client's own data, and left
    the chunk's own member in place."""
    client = b'data: {"id": "c", "choices": [{"delta": {}}], "x": {"usage": null}}\n\n'
    upstream = client.replace(b'{"id"', b'{"usage": null, "id"', 1)
    assert filtered([upstream]) == client
    trailing = client.replace(b"}}\n\n", b'}, "usage": null}\n\n')
    assert filtered([trailing]) == client
