"""Anthropic Messages: additive usage, running totals in streams, errors."""

# ruff: noqa: E501 -- wire samples stay one event per line, byte for byte as sent

from __future__ import annotations

from halton_meter.providers import (
    Route,
    classify_error,
    parse_request,
    parse_response,
    route_for,
)

from .helpers import (
    assert_robust,
    check_leaves,
    crlf,
    feed,
    prompt_total,
    raw,
    results_for_all_chunkings,
)

ROUTE = Route("anthropic", "anthropic-messages", "messages")
COUNT_ROUTE = Route("anthropic", "anthropic-messages", "count_tokens", zero_cost=True)

MESSAGE = (
    b'{"id":"msg_01Y7cSuXoHVw3n8f2GJ3Fm9a","type":"message","role":"assistant",'
    b'"model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Three sources '
    b'agree: the bridge opened in 1932."}],"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":412,"cache_creation_input_tokens":3072,'
    b'"cache_read_input_tokens":18240,"cache_creation":{"ephemeral_5m_input_tokens":1024,'
    b'"ephemeral_1h_input_tokens":2048},"output_tokens":933,"server_tool_use":'
    b'{"web_search_requests":2,"web_fetch_requests":0},"service_tier":"standard"}}'
)


def test_message_usage_is_additive_and_split_by_cache_lifetime() -> None:
    result = parse_response(ROUTE, MESSAGE, 200)
    usage = result.usage
    # Anthropic's input_tokens already excludes cache reads and writes: nothing is subtracted.
    assert usage.input_tokens == 412
    assert usage.cache_read_tokens == 18240
    assert usage.cache_write_tokens == 3072
    assert usage.cache_write_1h_tokens == 2048  # the 5-minute part is 3072 - 2048 = 1024
    assert usage.output_tokens == 933
    assert usage.reasoning_tokens is None  # no thinking_tokens reported
    assert usage.web_search_requests == 2
    assert prompt_total(usage) == 412 + 18240 + 3072
    assert result.service_tier == "standard"
    assert result.model == "claude-sonnet-4-5-20250929"
    assert result.response_id == "msg_01Y7cSuXoHVw3n8f2GJ3Fm9a"
    assert result.tokens_complete is True
    assert result.provider_error_code is None and result.stream_error is False
    assert raw(result) == {
        "input_tokens": 412,
        "cache_creation_input_tokens": 3072,
        "cache_read_input_tokens": 18240,
        "cache_creation": {"ephemeral_5m_input_tokens": 1024, "ephemeral_1h_input_tokens": 2048},
        "output_tokens": 933,
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
        "service_tier": "standard",
    }
    assert result.raw_usage is not None and ": " not in result.raw_usage  # compact
    check_leaves(usage)


def test_thinking_tokens_are_inside_output() -> None:
    body = (
        b'{"id":"msg_01HCDu5LRGeP2o7s4xGmQ8ER","type":"message","role":"assistant",'
        b'"model":"claude-opus-4-1-20250805","content":[{"type":"thinking","thinking":"...",'
        b'"signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},{"type":"text",'
        b'"text":"42"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":'
        b'57,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1840,'
        b'"output_tokens_details":{"thinking_tokens":1702},"service_tier":"priority"}}'
    )
    result = parse_response(ROUTE, body, 200)
    assert result.usage.output_tokens == 1840  # thinking is already part of output_tokens
    assert result.usage.reasoning_tokens == 1702
    assert result.usage.cache_write_1h_tokens is None  # no cache_creation breakdown reported
    assert result.usage.web_search_requests is None  # no server_tool_use object
    assert result.service_tier == "priority"
    check_leaves(result.usage)


def test_count_tokens_is_input_only() -> None:
    assert route_for("api.anthropic.com", 443, "/v1/messages/count_tokens") == COUNT_ROUTE
    result = parse_response(COUNT_ROUTE, b'{"input_tokens":2095}', 200)
    assert result.usage.input_tokens == 2095
    assert result.usage.output_tokens is None
    assert result.usage.cache_read_tokens is None
    assert result.tokens_complete is True
    assert raw(result) == {"input_tokens": 2095}


STREAM = """event: message_start
data: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_01QmFYtz8AnT5ws9MkmAtWyo","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"cache_creation_input_tokens":2451,"cache_read_input_tokens":16112,"cache_creation":{"ephemeral_5m_input_tokens":403,"ephemeral_1h_input_tokens":2048},"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"The message_delta event"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" carries \\"usage\\": {\\"output_tokens\\": 5} and \\"type\\":\\"error\\" too."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":3,"cache_creation_input_tokens":2451,"cache_read_input_tokens":16112,"output_tokens":289}}

event: message_stop
data: {"type":"message_stop"}

"""


def test_stream_input_side_from_start_output_from_delta() -> None:
    for data in (STREAM.encode(), crlf(STREAM)):
        result = results_for_all_chunkings(ROUTE, data)[0]
        usage = result.usage
        assert usage.input_tokens == 3
        assert usage.cache_read_tokens == 16112
        assert usage.cache_write_tokens == 2451
        assert usage.cache_write_1h_tokens == 2048  # only message_start has the split
        assert usage.output_tokens == 289  # the delta's total replaces the placeholder 1
        assert result.service_tier == "standard"
        assert result.model == "claude-sonnet-4-5-20250929"
        assert result.response_id == "msg_01QmFYtz8AnT5ws9MkmAtWyo"
        assert result.tokens_complete is True
        assert result.stream_error is False  # text quoting "type":"error" is not an error
        merged = raw(result)
        assert isinstance(merged, dict)
        assert merged["output_tokens"] == 289
        assert merged["cache_creation"] == {
            "ephemeral_5m_input_tokens": 403,
            "ephemeral_1h_input_tokens": 2048,
        }
        check_leaves(usage)


WEB_SEARCH_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_01G9L3vfVfvHrcBqKwXuzY8Q","type":"message","role":"assistant","model":"claude-opus-4-1-20250805","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":2679,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":3,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"srvtoolu_014hJH82Qum7Td6UV8gDXThB","name":"web_search","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"query\\": \\"weather NYC today\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":null,"stop_sequence":null},"usage":{"output_tokens":92,"server_tool_use":{"web_search_requests":1}}}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"It is 18 degrees and sunny."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10682,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":510,"server_tool_use":{"web_search_requests":1}}}

event: message_stop
data: {"type":"message_stop"}

"""


def test_several_message_deltas_overwrite_and_never_add() -> None:
    result = results_for_all_chunkings(ROUTE, WEB_SEARCH_STREAM.encode())[0]
    usage = result.usage
    # Running totals: the last delta's values win, field by field.
    assert usage.input_tokens == 10682  # not 2679, not 2679 + 10682
    assert usage.output_tokens == 510  # not 3 + 92 + 510
    assert usage.web_search_requests == 1  # not 1 + 1
    assert usage.cache_read_tokens == 0 and usage.cache_write_tokens == 0
    assert result.model == "claude-opus-4-1-20250805"
    assert result.tokens_complete is True
    check_leaves(usage)


def test_cut_before_message_delta_keeps_input_side_and_is_incomplete() -> None:
    cut = STREAM.encode().split(b"event: message_delta")[0]
    for chunks in ([cut], [cut[i : i + 9] for i in range(0, len(cut), 9)]):
        result = feed(ROUTE, chunks)
        assert result.tokens_complete is False
        assert result.usage.input_tokens == 3
        assert result.usage.cache_read_tokens == 16112
        assert result.usage.cache_write_tokens == 2451
        assert result.model == "claude-sonnet-4-5-20250929"
        assert result.response_id == "msg_01QmFYtz8AnT5ws9MkmAtWyo"


def test_cut_inside_the_message_delta_is_incomplete() -> None:
    data = STREAM.encode()
    cut = data[: data.index(b'"output_tokens":289') + 10]
    result = feed(ROUTE, [cut])
    assert result.tokens_complete is False
    # message_start's output_tokens (1) is a placeholder: the billed output is unknown.
    assert result.usage.output_tokens is None


def test_error_event_after_200() -> None:
    stream = """event: message_start
data: {"type":"message_start","message":{"id":"msg_01Lr7wsqpKXoJ2cRnH4TDkzu","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1204,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}

"""
    result = results_for_all_chunkings(ROUTE, crlf(stream))[0]
    assert result.stream_error is True
    assert result.provider_error_code == "overloaded_error"
    assert result.tokens_complete is False
    assert result.usage.input_tokens == 1204
    assert classify_error(200, result.provider_error_code) == "overloaded"


def test_error_bodies() -> None:
    overloaded = (
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},'
        b'"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}'
    )
    result = parse_response(ROUTE, overloaded, 529)
    assert result.provider_error_code == "overloaded_error"
    assert result.stream_error is False  # a 529, not an error inside a 200
    assert result.tokens_complete is False
    assert classify_error(529, result.provider_error_code) == "overloaded"

    rate = (
        b'{"type":"error","error":{"type":"rate_limit_error","message":"This request would '
        b"exceed the rate limit for your organization (8a7a2c1e) of 30,000 input tokens per "
        b'minute."},"request_id":"req_011CSHpQd1b3GxE2bBbvVH9t"}'
    )
    result = parse_response(ROUTE, rate, 429)
    assert result.provider_error_code == "rate_limit_error"
    assert classify_error(429, result.provider_error_code) == "rate_limit"

    spend_cap = (
        b'{"type":"error","error":{"type":"rate_limit_error","message":"You have reached your '
        b'specified workspace API usage limits.","details":{"error_code":'
        b'"enforced_spend_limit_reached"}},"request_id":"req_011CSHqW5pQ2v8yJcN1dKz3m"}'
    )
    result = parse_response(ROUTE, spend_cap, 429)
    assert result.provider_error_code == "enforced_spend_limit_reached"
    assert classify_error(429, result.provider_error_code) == "auth"

    billing = (
        b'{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too '
        b'low to access the Anthropic API."},"request_id":"req_011CSHr2Ah3nG7x9ZJ4pT6bw"}'
    )
    result = parse_response(ROUTE, billing, 402)
    assert result.provider_error_code == "billing_error"
    assert classify_error(402, result.provider_error_code) == "auth"


def test_request_model_and_stream_flag() -> None:
    body = (
        b'{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,'
        b'"messages":[{"role":"user","content":"Hello"}]}'
    )
    info = parse_request(ROUTE, body)
    assert info.model == "claude-sonnet-4-5" and info.stream is True
    info = parse_request(ROUTE, b'{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}')
    assert info.model == "claude-haiku-4-5" and info.stream is False
    assert parse_request(ROUTE, b"{not json").model is None


def test_anthropic_shape_on_deepseek_and_xai() -> None:
    deepseek = route_for("api.deepseek.com", 443, "/anthropic/v1/messages")
    assert deepseek == Route("deepseek", "anthropic-messages", "messages")
    body = (
        b'{"id":"3a0c5f52-0f6b-4b8e-9c1e-2f1d4c9a7b31","type":"message","role":"assistant",'
        b'"model":"deepseek-chat","content":[{"type":"text","text":"Hi!"}],"stop_reason":'
        b'"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"cache_read_input_tokens":'
        b'64,"output_tokens":12}}'
    )
    result = parse_response(deepseek, body, 200)
    assert result.usage.input_tokens == 9 and result.usage.cache_read_tokens == 64
    assert result.usage.cache_write_tokens is None  # not reported
    assert result.usage.output_tokens == 12
    xai = route_for("api.x.ai", 443, "/v1/messages?beta=true")
    assert xai == Route("xai", "anthropic-messages", "messages")


def test_malformed_and_cut_bodies_never_raise() -> None:
    assert parse_response(ROUTE, MESSAGE[:-40], 200).tokens_complete is False
    assert parse_response(ROUTE, b"", 200).tokens_complete is False
    assert_robust(ROUTE, MESSAGE)
    assert_robust(ROUTE, STREAM.encode())
    assert_robust(COUNT_ROUTE, b'{"input_tokens":2095}')
