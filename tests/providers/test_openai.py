"""OpenAI itself: Chat, legacy Completions, Responses, Embeddings."""

# ruff: noqa: E501 -- wire samples stay one event per line, byte for byte as sent

from __future__ import annotations

from halton_meter.providers import (
    Route,
    classify_error,
    is_streaming_response,
    parse_request,
    parse_response,
    route_for,
)

from .helpers import (
    assert_robust,
    check_leaves,
    feed,
    prompt_total,
    raw,
    results_for_all_chunkings,
)

CHAT = Route("openai", "openai-chat", "chat")
COMPLETIONS = Route("openai", "openai-completions", "completions")
RESPONSES = Route("openai", "openai-responses", "responses")
EMBEDDINGS = Route("openai", "openai-embeddings", "embeddings")

CHAT_BODY = b"""{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "The image shows a wooden boardwalk extending through a lush green marshland.",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1117,
    "completion_tokens": 46,
    "total_tokens": 1163,
    "prompt_tokens_details": {
      "cached_tokens": 1024,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}
"""


def test_chat_prompt_includes_cached() -> None:
    result = parse_response(CHAT, CHAT_BODY, 200)
    usage = result.usage
    prompt, completion, cached = 1117, 46, 1024
    assert usage.input_tokens == prompt - cached
    assert usage.cache_read_tokens == cached
    assert usage.cache_write_tokens is None  # OpenAI did not report cache writes here
    assert usage.output_tokens == completion
    assert usage.reasoning_tokens == 0
    assert prompt_total(usage) == prompt
    assert result.model == "gpt-4o-2024-08-06"
    assert result.response_id == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    assert result.service_tier == "default"
    assert result.tokens_complete is True
    assert raw(result) == {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    check_leaves(usage)


def test_chat_reasoning_inside_completion_and_cache_writes() -> None:
    body = b"""{
  "id": "chatcmpl-CGx2Q0jbWbY0mLrBqoU7gk0sTnNpe",
  "object": "chat.completion",
  "created": 1757943210,
  "model": "gpt-5-2025-08-07",
  "choices": [
    {
      "index": 0,
      "message": {"role": "assistant", "content": "Yes.", "refusal": null, "annotations": []},
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 5210,
    "completion_tokens": 1850,
    "total_tokens": 7060,
    "prompt_tokens_details": {
      "cached_tokens": 3072,
      "cache_write_tokens": 1536,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 1408,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "flex",
  "system_fingerprint": null
}
"""
    result = parse_response(CHAT, body, 200)
    prompt, cached, written, completion, reasoning = 5210, 3072, 1536, 1850, 1408
    assert result.usage.input_tokens == prompt - cached - written
    assert result.usage.cache_read_tokens == cached
    assert result.usage.cache_write_tokens == written
    assert result.usage.output_tokens == completion  # reasoning already inside
    assert result.usage.reasoning_tokens == reasoning
    assert prompt_total(result.usage) == prompt
    assert result.service_tier == "flex"
    check_leaves(result.usage)


def test_legacy_completions() -> None:
    body = b"""{
  "id": "cmpl-B9MP7Lw3nZ5gXq2lbT8mKc1Hh4e0V",
  "object": "text_completion",
  "created": 1741570791,
  "model": "gpt-3.5-turbo-instruct",
  "choices": [
    {
      "text": "\\n\\nThis is indeed a test",
      "index": 0,
      "logprobs": null,
      "finish_reason": "length"
    }
  ],
  "usage": {
    "prompt_tokens": 5,
    "completion_tokens": 7,
    "total_tokens": 12
  }
}
"""
    assert route_for("api.openai.com", 443, "/v1/completions") == COMPLETIONS
    result = parse_response(COMPLETIONS, body, 200)
    assert result.usage.input_tokens == 5  # no cached_tokens reported: nothing subtracted
    assert result.usage.cache_read_tokens is None
    assert result.usage.output_tokens == 7
    assert result.usage.reasoning_tokens is None
    assert result.tokens_complete is True
    check_leaves(result.usage)


CHAT_STREAM = """data: {"id":"chatcmpl-BKp1Zq9UuH4d0F2WnN3kXyQ6gTtRr","object":"chat.completion.chunk","created":1744380321,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BKp1Zq9UuH4d0F2WnN3kXyQ6gTtRr","object":"chat.completion.chunk","created":1744380321,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"content":"Write \\"usage\\": {\\"prompt_tokens\\": 1} in JSON"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BKp1Zq9UuH4d0F2WnN3kXyQ6gTtRr","object":"chat.completion.chunk","created":1744380321,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-BKp1Zq9UuH4d0F2WnN3kXyQ6gTtRr","object":"chat.completion.chunk","created":1744380321,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_6f2eabb9a5","choices":[],"usage":{"prompt_tokens":2388,"completion_tokens":12,"total_tokens":2400,"prompt_tokens_details":{"cached_tokens":2304,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"""


def test_chat_stream_usage_chunk() -> None:
    result = results_for_all_chunkings(CHAT, CHAT_STREAM.encode())[0]
    prompt, cached, completion = 2388, 2304, 12
    assert result.usage.input_tokens == prompt - cached
    assert result.usage.cache_read_tokens == cached
    assert result.usage.output_tokens == completion
    assert result.model == "gpt-4.1-mini-2025-04-14"
    assert result.response_id == "chatcmpl-BKp1Zq9UuH4d0F2WnN3kXyQ6gTtRr"
    assert result.service_tier == "default"
    assert result.tokens_complete is True
    assert result.stream_error is False


def test_chat_stream_cut_before_usage_is_incomplete() -> None:
    cut = CHAT_STREAM.encode().split(b'"choices":[],')[0]
    result = feed(CHAT, [cut])
    assert result.tokens_complete is False
    assert result.usage.input_tokens is None and result.usage.output_tokens is None
    assert result.model == "gpt-4.1-mini-2025-04-14"
    assert result.response_id == "chatcmpl-BKp1Zq9UuH4d0F2WnN3kXyQ6gTtRr"


def test_chat_stream_without_include_usage_has_no_tokens() -> None:
    stream = CHAT_STREAM.replace(',"usage":null', "").split(
        'data: {"id":"chatcmpl-BKp1Zq9UuH4d0F2WnN3kXyQ6gTtRr","object":"chat.completion.chunk","created":1744380321,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_6f2eabb9a5","choices":[],'
    )[0]
    result = feed(CHAT, [(stream + "data: [DONE]\n\n").encode()])
    assert result.tokens_complete is False
    assert result.usage.output_tokens is None  # never invented as 0


def test_chat_stream_error_chunk() -> None:
    stream = """data: {"id":"chatcmpl-BKq7mJ3sQx2Ck0aYpV9LwE5nUoIzT","object":"chat.completion.chunk","created":1744380790,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_ee1d74bde0","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}

"""
    result = results_for_all_chunkings(CHAT, stream.encode())[0]
    assert result.stream_error is True
    assert result.provider_error_code == "server_error"  # code is null, so the type
    assert result.tokens_complete is False
    assert classify_error(200, result.provider_error_code) == "server_error"


def test_openai_error_bodies() -> None:
    rate = b"""{
    "error": {
        "message": "Rate limit reached for gpt-4o in organization org-8XGnrZ2tSm5yT on tokens per min (TPM): Limit 30000, Used 29873, Requested 1502.",
        "type": "tokens",
        "param": null,
        "code": "rate_limit_exceeded"
    }
}
"""
    result = parse_response(CHAT, rate, 429)
    assert result.provider_error_code == "rate_limit_exceeded"
    assert result.stream_error is False
    assert classify_error(429, result.provider_error_code) == "rate_limit"

    quota = b"""{
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": null,
        "code": "insufficient_quota"
    }
}
"""
    result = parse_response(CHAT, quota, 429)
    assert result.provider_error_code == "insufficient_quota"
    assert classify_error(429, result.provider_error_code) == "auth"

    bad_key = b"""{
    "error": {
        "message": "Incorrect API key provided: sk-proj-****************************************ab12.",
        "type": "invalid_request_error",
        "param": null,
        "code": "invalid_api_key"
    }
}
"""
    result = parse_response(CHAT, bad_key, 401)
    assert result.provider_error_code == "invalid_api_key"
    assert classify_error(401, result.provider_error_code) == "auth"


RESPONSE_BODY = b"""{
  "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
  "object": "response",
  "created_at": 1741476542,
  "status": "completed",
  "error": null,
  "incomplete_details": null,
  "instructions": null,
  "max_output_tokens": null,
  "model": "gpt-5-mini-2025-08-07",
  "output": [
    {
      "id": "rs_67ccd2bf8d808190b4f1d9e1c1b7a1f2",
      "type": "reasoning",
      "summary": []
    },
    {
      "type": "web_search_call",
      "id": "ws_67ccd2c0a4808190a1c5b2b3e4f5a6b7",
      "status": "completed",
      "action": {"type": "search", "query": "positive news today"}
    },
    {
      "type": "web_search_call",
      "id": "ws_67ccd2c1b9a08190b2d6c3c4f5a6b7c8",
      "status": "completed",
      "action": {"type": "search", "query": "good news this week"}
    },
    {
      "type": "message",
      "id": "msg_67ccd2c3e2b88190a7f2b1c0d9e8f7a6",
      "status": "completed",
      "role": "assistant",
      "content": [
        {
          "type": "output_text",
          "text": "A sea turtle rescue released 40 turtles.",
          "annotations": []
        }
      ]
    }
  ],
  "parallel_tool_calls": true,
  "reasoning": {"effort": "medium", "summary": null},
  "service_tier": "default",
  "store": true,
  "temperature": 1.0,
  "tools": [{"type": "web_search"}],
  "top_p": 1.0,
  "truncation": "disabled",
  "usage": {
    "input_tokens": 9630,
    "input_tokens_details": {
      "cached_tokens": 4864
    },
    "output_tokens": 1022,
    "output_tokens_details": {
      "reasoning_tokens": 768
    },
    "total_tokens": 10652
  },
  "user": null,
  "metadata": {}
}
"""


def test_responses_body() -> None:
    assert route_for("api.openai.com", 443, "/v1/responses") == RESPONSES
    result = parse_response(RESPONSES, RESPONSE_BODY, 200)
    prompt, cached, output, reasoning = 9630, 4864, 1022, 768
    assert result.usage.input_tokens == prompt - cached
    assert result.usage.cache_read_tokens == cached
    assert result.usage.output_tokens == output
    assert result.usage.reasoning_tokens == reasoning
    assert result.usage.web_search_requests == 2  # two web_search_call output items
    assert result.model == "gpt-5-mini-2025-08-07"
    assert result.response_id == "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
    assert result.service_tier == "default"
    assert result.tokens_complete is True
    check_leaves(result.usage)


RESPONSES_STREAM = """event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_68b9a4c2e0f88193a6c1d7b2e4f5a6b7","object":"response","created_at":1756996802,"status":"in_progress","error":null,"model":"gpt-4.1-2025-04-14","output":[],"service_tier":"auto","tools":[{"type":"web_search"}],"usage":null}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_68b9a4c2e0f88193a6c1d7b2e4f5a6b7","object":"response","created_at":1756996802,"status":"in_progress","error":null,"model":"gpt-4.1-2025-04-14","output":[],"service_tier":"auto","usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"ws_68b9a4c3a1b48193b5d2e8c3f4a5b6c7","type":"web_search_call","status":"in_progress"}}

event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":5,"output_index":0,"item":{"id":"ws_68b9a4c3a1b48193b5d2e8c3f4a5b6c7","type":"web_search_call","status":"completed","action":{"type":"search","query":"tides Brest today"}}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":8,"item_id":"msg_68b9a4c5d2e08193c7f3a9d4e5b6c7d8","output_index":1,"content_index":0,"delta":"High tide (response.completed soon) is at 14:02.","logprobs":[]}

event: response.completed
data: {"type":"response.completed","sequence_number":12,"response":{"id":"resp_68b9a4c2e0f88193a6c1d7b2e4f5a6b7","object":"response","created_at":1756996802,"status":"completed","error":null,"model":"gpt-4.1-2025-04-14","output":[{"id":"ws_68b9a4c3a1b48193b5d2e8c3f4a5b6c7","type":"web_search_call","status":"completed","action":{"type":"search","query":"tides Brest today"}},{"id":"msg_68b9a4c5d2e08193c7f3a9d4e5b6c7d8","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"High tide (response.completed soon) is at 14:02.","annotations":[]}]}],"service_tier":"default","usage":{"input_tokens":8452,"input_tokens_details":{"cached_tokens":0},"output_tokens":61,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":8513}}}

"""


def test_responses_stream_terminal_event() -> None:
    result = results_for_all_chunkings(RESPONSES, RESPONSES_STREAM.encode())[0]
    assert result.usage.input_tokens == 8452 - 0
    assert result.usage.output_tokens == 61
    assert result.usage.web_search_requests == 1
    assert result.service_tier == "default"  # the tier used, from the terminal event
    assert result.model == "gpt-4.1-2025-04-14"
    assert result.response_id == "resp_68b9a4c2e0f88193a6c1d7b2e4f5a6b7"
    assert result.tokens_complete is True


def test_responses_stream_cut_keeps_id_and_finished_searches() -> None:
    cut = RESPONSES_STREAM.encode().split(b"event: response.completed")[0]
    result = feed(RESPONSES, [cut])
    assert result.tokens_complete is False
    assert result.usage.input_tokens is None
    assert result.usage.web_search_requests == 1  # the search that did finish
    assert result.response_id == "resp_68b9a4c2e0f88193a6c1d7b2e4f5a6b7"


def test_responses_incomplete_and_failed() -> None:
    incomplete = """event: response.incomplete
data: {"type":"response.incomplete","sequence_number":40,"response":{"id":"resp_68b9b1f0a2c48190a3b4c5d6e7f8a9b0","object":"response","status":"incomplete","error":null,"incomplete_details":{"reason":"max_output_tokens"},"model":"o4-mini-2025-04-16","output":[],"service_tier":"default","usage":{"input_tokens":301,"input_tokens_details":{"cached_tokens":0},"output_tokens":256,"output_tokens_details":{"reasoning_tokens":256},"total_tokens":557}}}

"""
    result = feed(RESPONSES, [incomplete.encode()])
    assert result.tokens_complete is True  # the final usage arrived, even if cut short
    assert result.usage.output_tokens == 256 and result.usage.reasoning_tokens == 256
    assert result.usage.web_search_requests == 0

    failed = """event: response.failed
data: {"type":"response.failed","sequence_number":7,"response":{"id":"resp_68b9b2a7c3d08190b4c5d6e7f8a9b0c1","object":"response","status":"failed","error":{"code":"server_error","message":"The model failed to generate a response."},"model":"gpt-4.1-2025-04-14","output":[],"usage":null}}

"""
    result = feed(RESPONSES, [failed.encode()])
    assert result.stream_error is True
    assert result.provider_error_code == "server_error"
    assert result.tokens_complete is False

    error_event = """event: error
data: {"type":"error","sequence_number":3,"code":"rate_limit_exceeded","message":"Rate limit reached for gpt-4.1","param":null}

"""
    result = feed(RESPONSES, [error_event.encode()])
    assert result.stream_error is True
    assert result.provider_error_code == "rate_limit_exceeded"
    assert classify_error(200, result.provider_error_code) == "rate_limit"


def test_embeddings_are_input_only() -> None:
    body = b"""{
  "object": "list",
  "data": [
    {
      "object": "embedding",
      "index": 0,
      "embedding": [
        -0.006929283495992422,
        -0.005336422007530928,
        0.00047350498
      ]
    }
  ],
  "model": "text-embedding-3-small",
  "usage": {
    "prompt_tokens": 8,
    "total_tokens": 8
  }
}
"""
    assert route_for("api.openai.com", 443, "/v1/embeddings") == EMBEDDINGS
    result = parse_response(EMBEDDINGS, body, 200)
    assert result.usage.input_tokens == 8
    assert result.usage.output_tokens == 0
    assert result.usage.cache_read_tokens is None
    assert result.model == "text-embedding-3-small"
    assert result.tokens_complete is True


def test_request_model_and_stream_flag() -> None:
    body = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
    )
    assert parse_request(CHAT, body).model == "gpt-4o-mini"
    assert parse_request(CHAT, body).stream is True
    assert parse_request(RESPONSES, b'{"model":"gpt-5","input":"hi"}').stream is False
    assert parse_request(CHAT, b'{"stream": "yes"}').stream is False


def test_malformed_and_cut_bodies_never_raise() -> None:
    assert parse_response(CHAT, CHAT_BODY[:200], 200).tokens_complete is False
    for route, body in (
        (CHAT, CHAT_BODY),
        (CHAT, CHAT_STREAM.encode()),
        (RESPONSES, RESPONSE_BODY),
        (RESPONSES, RESPONSES_STREAM.encode()),
    ):
        assert_robust(route, body)


def test_legacy_completions_stream() -> None:
    stream = """data: {"id":"cmpl-B9MQ1yJ2vR8kTnX4pL6aZ0cW3eFhG","object":"text_completion","created":1741570850,"choices":[{"text":"\\n\\n","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct","usage":null}

data: {"id":"cmpl-B9MQ1yJ2vR8kTnX4pL6aZ0cW3eFhG","object":"text_completion","created":1741570850,"choices":[{"text":"This is a test.","index":0,"logprobs":null,"finish_reason":"stop"}],"model":"gpt-3.5-turbo-instruct","usage":null}

data: {"id":"cmpl-B9MQ1yJ2vR8kTnX4pL6aZ0cW3eFhG","object":"text_completion","created":1741570850,"model":"gpt-3.5-turbo-instruct","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":8,"total_tokens":13}}

data: [DONE]

"""
    result = results_for_all_chunkings(COMPLETIONS, stream.encode())[0]
    assert result.usage.input_tokens == 5 and result.usage.output_tokens == 8
    assert result.model == "gpt-3.5-turbo-instruct"
    assert result.tokens_complete is True


def test_inconsistent_counts_never_give_a_negative_leaf() -> None:
    # A cache count larger than the prompt would make prompt - cached negative: floor at 0.
    body = b'{"id":"chatcmpl-x","model":"gpt-4o","usage":{"prompt_tokens":10,"completion_tokens":-3,"prompt_tokens_details":{"cached_tokens":20}}}'
    result = parse_response(CHAT, body, 200)
    assert result.usage.input_tokens == 0
    assert result.usage.output_tokens is None  # a negative count is not a count
    check_leaves(result.usage)


def test_non_stream_content_type_is_read_whole() -> None:
    assert is_streaming_response(CHAT, "text/event-stream") is True
    assert is_streaming_response(CHAT, "application/json") is False
    chunks = [CHAT_BODY[i : i + 10] for i in range(0, len(CHAT_BODY), 10)]
    assert feed(CHAT, chunks, "application/json") == parse_response(CHAT, CHAT_BODY, 200)
    # A buffered event stream handed to parse_response is recognised as one.
    assert parse_response(CHAT, CHAT_STREAM.encode(), 200) == feed(CHAT, [CHAT_STREAM.encode()])
