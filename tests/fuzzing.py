"""Hypothesis strategies shared by the property tests (tests/test_fuzz_*.py).

The inputs look like what reaches the meter on a bad day: well-formed streams cut anywhere,
JSON with the providers' keys holding the wrong types, huge or negative numbers, names with
NUL bytes and thousands of characters. The checks themselves live in fuzz/targets.py, which
the long runs (fuzz/run.py) share.
"""

from __future__ import annotations

import itertools
import json
import string
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

T = TypeVar("T")

# Bounded for CI on a loaded machine: a few seconds per test, no per-example deadline.
settings.register_profile(
    "fuzz",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
FUZZ = settings.get_profile("fuzz")


def bounded(examples: int) -> Callable[[T], T]:
    """The suite's settings with this many examples."""
    return settings(FUZZ, max_examples=examples)  # type: ignore[return-value]


# Keys the providers' parsers look for, so random JSON reaches their branches.
KEYS = [
    "usage",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "ephemeral_1h_input_tokens",
    "ephemeral_5m_input_tokens",
    "server_tool_use",
    "web_search_requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "completion_tokens_details",
    "reasoning_tokens",
    "input_tokens_details",
    "output_tokens_details",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "totalTokenCount",
    "toolUsePromptTokenCount",
    "modelVersion",
    "responseId",
    "response",
    "candidates",
    "model",
    "id",
    "type",
    "message",
    "delta",
    "error",
    "code",
    "status",
    "service_tier",
    "cost",
    "cost_in_usd_ticks",
    "total_cost",
    "choices",
    "data",
    "object",
    "amazon-bedrock-invocationMetrics",
    "inputTokenCount",
    "outputTokenCount",
]
EVENT_NAMES = [
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_delta",
    "error",
    "ping",
    "response.created",
    "response.completed",
    "response.failed",
    "response.incomplete",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["message_start", "message_delta", "response.completed", "[DONE]"]),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=6),
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)

line_ends = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    """An event stream: JSON data events, names, comments, ids, [DONE], mixed line ends."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        end = draw(line_ends)
        kind = draw(st.sampled_from(["data", "data", "named", "comment", "done", "junk"]))
        if kind == "comment":
            parts.append(f": keep-alive{end}{end}")
        elif kind == "done":
            parts.append(f"data: [DONE]{end}{end}")
        elif kind == "junk":
            parts.append(draw(st.text(max_size=30)) + end + end)
        else:
            name = draw(st.sampled_from(EVENT_NAMES)) if kind == "named" else None
            head = f"event: {name}{end}" if name else ""
            parts.append(f"{head}data: {json.dumps(draw(json_objects))}{end}{end}")
    return "".join(parts).encode("utf-8", "surrogatepass")


@st.composite
def json_arrays(draw: st.DrawFn) -> bytes:
    """Gemini's array stream: `[{…},\\r\\n{…}]`, perhaps cut short."""
    objects = draw(st.lists(json_objects, max_size=4))
    text = "[" + ",\r\n".join(json.dumps(o, indent=2) for o in objects) + "]"
    data = text.encode("utf-8", "surrogatepass")
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


def mutations(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed with a slice replaced by random bytes, or cut short."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        seed = draw(st.sampled_from(seeds))
        at = draw(st.integers(0, len(seed)))
        width = draw(st.integers(0, 16))
        return seed[:at] + draw(st.binary(max_size=16)) + seed[at + width :]

    return mutate()


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at random points (the cuts may fall anywhere, one byte apart)."""
    points = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=12)))
    bounds = [0, *[p for p in points if p < len(data)], len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# --- request heads for the edge ---

hosts = st.one_of(
    st.sampled_from(["api.openai.com", "localhost", "127.1", "[::1]", "[fe80::1%eth0]", "0"]),
    st.text(alphabet=string.ascii_lowercase + string.digits + ".-_", max_size=300),
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.integers(0, 6000).map(lambda n: "a" * n),
)
ports = st.one_of(
    st.integers(0, 70000).map(str),
    st.sampled_from(["", "https", "\xb2", "٣", "9" * 5000, "-1", "443 "]),
)


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["CONNECT", "GET", "POST", "OPTIONS", "G\x00T"]))
    host, port = draw(hosts), draw(ports)
    authority = f"{host}:{port}" if draw(st.booleans()) else host
    target = draw(
        st.sampled_from(
            [authority, f"http://{authority}/p?q=1", f"https://{authority}/", "/status", "*"]
        )
    )
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1"]))
    header_lines = draw(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        "Host: x",
                        "Content-Length: 5",
                        "Content-Length: \xb2",
                        "Content-Length: " + "9" * 5000,
                        "Transfer-Encoding: chunked",
                        "Transfer-Encoding: gzip",
                        "Connection: close",
                        "X-Halton-Client: 1.2.3.4:5",
                        " folded",
                    ]
                ),
                st.text(max_size=30).filter(lambda t: "\r\n" not in t),
            ),
            max_size=5,
        )
    )
    head = "\r\n".join([f"{method} {target} {version}", *header_lines]) + "\r\n\r\n"
    return head.encode("utf-8", "surrogatepass")
