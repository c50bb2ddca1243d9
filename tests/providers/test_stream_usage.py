"""Asking for stream usage and hiding it again: the client must see its own bytes."""

# ruff: noqa: E501 -- wire samples stay one event per line, byte for byte as sent

from __future__ import annotations

import json

import pytest

from halton_meter.providers import (
    InjectedUsageFilter,
    Route,
    inject_stream_usage,
    route_for,
    stream_parser,
)

from .helpers import SSE, chunkings

CHAT = Route("openai", "openai-chat", "chat")

REQUEST = (
    b'{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"Say hi"}],'
    b'"temperature":0.7,"stream":true}'
)


def test_inject_inserts_the_member_and_keeps_every_other_byte() -> None:
    injected = inject_stream_usage(CHAT, REQUEST)
    assert injected is not None
    member = b'"stream_options":{"include_usage":true},'
    assert injected.replace(member, b"", 1) == REQUEST
    request = json.loads(injected)
    assert request["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in request.items() if k != "stream_options"} == json.loads(REQUEST)


def test_inject_merges_into_existing_stream_options() -> None:
    body = (
        b'{"model": "gpt-4o", "stream": true, "stream_options": {"include_obfuscation": false,'
        b' "include_usage": false}, "messages": [{"role": "user", "content": "caf\xc3\xa9"}]}'
    )
    injected = inject_stream_usage(CHAT, body)
    assert injected is not None
    request = json.loads(injected)
    assert request["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert request["messages"] == [{"role": "user", "content": "café"}]
    assert request["model"] == "gpt-4o" and request["stream"] is True


@pytest.mark.parametrize(
    ("route", "body"),
    [
        (CHAT, b'{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}'),
        (CHAT, b'{"model":"gpt-4o","stream":false}'),
        (CHAT, b'{"model":"gpt-4o"}'),
        (CHAT, b'{"model":"gpt-4o","stream":"true"}'),
        (CHAT, b"{broken"),
        (CHAT, b"[]"),
        (Route("openai", "openai-responses", "responses"), REQUEST),
        (Route("anthropic", "anthropic-messages", "messages"), REQUEST),
        (Route("groq", "openai-chat", "chat"), REQUEST),
        (Route("mistral", "openai-chat", "chat"), REQUEST),
        (Route("openrouter", "openai-chat", "chat"), REQUEST),
        (Route("together", "openai-chat", "chat"), REQUEST),
        (Route("perplexity", "openai-chat", "chat"), REQUEST),
        (Route("cerebras", "openai-chat", "chat"), REQUEST),
    ],
)
def test_no_injection_needed(route: Route, body: bytes) -> None:
    assert inject_stream_usage(route, body) is None


def test_injection_for_providers_that_need_it() -> None:
    for host, path in (
        ("api.openai.com", "/v1/completions"),
        ("api.deepseek.com", "/chat/completions"),
        ("api.x.ai", "/v1/chat/completions"),
        ("api.fireworks.ai", "/inference/v1/chat/completions"),
    ):
        route = route_for(host, 443, path)
        assert route is not None and inject_stream_usage(route, REQUEST) is not None


# What the client receives when it did not ask for usage (OpenAI's compact chunks) ...
CLIENT_CHUNKS = [
    '{"id":"chatcmpl-BKr9fT2bLw0x7n8Hq3cVd6sJzPyUe","object":"chat.completion.chunk","created":1744381234,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_38647f5e19","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}',
    '{"id":"chatcmpl-BKr9fT2bLw0x7n8Hq3cVd6sJzPyUe","object":"chat.completion.chunk","created":1744381234,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_38647f5e19","choices":[{"index":0,"delta":{"content":"Hi! Set \\"usage\\":null, or \\"choices\\":[] — both are text here."},"logprobs":null,"finish_reason":null}]}',
    '{"id":"chatcmpl-BKr9fT2bLw0x7n8Hq3cVd6sJzPyUe","object":"chat.completion.chunk","created":1744381234,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_38647f5e19","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}',
]
# ... and the extra chunk upstream sends once usage is asked for.
USAGE_CHUNK = '{"id":"chatcmpl-BKr9fT2bLw0x7n8Hq3cVd6sJzPyUe","object":"chat.completion.chunk","created":1744381234,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_38647f5e19","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":17,"total_tokens":36,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}'


def streams(newline: str = "\n", usage_member: str = ',"usage":null') -> tuple[bytes, bytes]:
    """(what the client expects, what upstream sends with include_usage)."""

    def sse(payloads: list[str]) -> bytes:
        events = [f"data: {p}{newline}{newline}" for p in [*payloads, "[DONE]"]]
        return "".join(events).encode()

    with_usage = [chunk[:-1] + usage_member + "}" for chunk in CLIENT_CHUNKS]
    return sse(CLIENT_CHUNKS), sse([*with_usage, USAGE_CHUNK])


def run_filter(chunks: list[bytes]) -> bytes:
    usage_filter = InjectedUsageFilter()
    out = [usage_filter.feed(chunk) for chunk in chunks]
    return b"".join(out) + usage_filter.flush()


@pytest.mark.parametrize(
    ("newline", "usage_member"),
    [
        ("\n", ',"usage":null'),
        ("\r\n", ',"usage":null'),
        ("\n", ', "usage": null'),
        ("\r\n", ',"usage":null,"obfuscation":"Qk3x"'),
    ],
)
def test_filter_gives_the_client_its_own_bytes(newline: str, usage_member: str) -> None:
    expected, upstream = streams(newline, usage_member)
    if "obfuscation" in usage_member:  # the client would still have seen this member
        expected = expected.replace(
            b'"finish_reason":null}]}', b'"finish_reason":null}],"obfuscation":"Qk3x"}'
        )
        expected = expected.replace(
            b'"finish_reason":"stop"}]}', b'"finish_reason":"stop"}],"obfuscation":"Qk3x"}'
        )
    assert upstream != expected
    for chunks in chunkings(upstream):
        assert run_filter(chunks) == expected


def test_filter_holds_back_only_the_incomplete_event() -> None:
    expected, upstream = streams()
    first_event_end = upstream.index(b"\n\n") + 2
    usage_filter = InjectedUsageFilter()
    out = usage_filter.feed(upstream[: first_event_end + 10])
    assert out == expected[: expected.index(b"\n\n") + 2]
    assert usage_filter.flush() == upstream[first_event_end : first_event_end + 10]


def test_parser_sees_the_original_bytes_while_the_client_gets_the_filtered_ones() -> None:
    expected, upstream = streams("\r\n")
    usage_filter = InjectedUsageFilter()
    parser = stream_parser(CHAT, SSE)
    forwarded = []
    for chunks in [upstream[i : i + 50] for i in range(0, len(upstream), 50)]:
        parser.feed(chunks)  # the capture layer feeds the original chunk ...
        forwarded.append(usage_filter.feed(chunks))  # ... and forwards the filtered one
    forwarded.append(usage_filter.flush())
    assert b"".join(forwarded) == expected
    result = parser.result()
    assert result.tokens_complete is True
    assert result.usage.input_tokens == 19 - 0 and result.usage.output_tokens == 17


def test_filter_leaves_other_streams_alone() -> None:
    expected, _ = streams()
    assert run_filter([expected]) == expected  # provider ignored include_usage
    error = b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
    assert run_filter([error]) == error
    cut = b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":1'
    assert run_filter([cut[:20], cut[20:]]) == cut  # held, then flushed unchanged
    odd = b'data: {"choices":[],"usage":{"prompt_tokens":1}, "note": [unparseable\n\n'
    assert run_filter([odd]) == odd  # not valid JSON: never dropped on a guess
