"""Gemini Developer API and Code Assist: thoughts outside candidates, cumulative stream usage,
the JSON-array stream, embeddings and token counting."""

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
    chunkings,
    crlf,
    feed,
    raw,
    results_for_all_chunkings,
)

GENERATE = Route("google", "gemini", "generate_content", model_from_path="gemini-2.5-pro")
STREAM = Route("google", "gemini", "stream_generate_content", model_from_path="gemini-2.5-flash")
CODE_ASSIST_STREAM = Route("google", "gemini-code-assist", "stream_generate_content")

GROUNDED_BODY = b"""{
  "candidates": [
    {
      "content": {
        "parts": [
          {
            "text": "Spain won Euro 2024, beating England 2-1 in the final."
          }
        ],
        "role": "model"
      },
      "finishReason": "STOP",
      "index": 0,
      "groundingMetadata": {
        "webSearchQueries": [
          "UEFA Euro 2024 winner",
          "Euro 2024 final score"
        ],
        "searchEntryPoint": {
          "renderedContent": "<style>.container {}</style>"
        },
        "groundingChunks": [
          {
            "web": {
              "uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQ",
              "title": "uefa.com"
            }
          }
        ]
      }
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 2310,
    "candidatesTokenCount": 412,
    "totalTokenCount": 3973,
    "cachedContentTokenCount": 2048,
    "promptTokensDetails": [
      {
        "modality": "TEXT",
        "tokenCount": 2310
      }
    ],
    "cacheTokensDetails": [
      {
        "modality": "TEXT",
        "tokenCount": 2048
      }
    ],
    "toolUsePromptTokenCount": 120,
    "thoughtsTokenCount": 1131
  },
  "modelVersion": "gemini-2.5-pro",
  "responseId": "mJ2oaKDdDNWnkdUPxNS-mQk"
}
"""


def test_generate_content_input_output_and_grounding() -> None:
    route = route_for(
        "generativelanguage.googleapis.com", 443, "/v1beta/models/gemini-2.5-pro:generateContent"
    )
    assert route == GENERATE
    result = parse_response(GENERATE, GROUNDED_BODY, 200)
    prompt, tool_prompt, cached, candidates, thoughts = 2310, 120, 2048, 412, 1131
    assert prompt + tool_prompt + candidates + thoughts == 3973  # Gemini's totalTokenCount
    assert result.usage.input_tokens == prompt + tool_prompt - cached
    assert result.usage.cache_read_tokens == cached
    assert result.usage.cache_write_tokens == 0
    assert result.usage.output_tokens == candidates + thoughts
    assert result.usage.reasoning_tokens == thoughts
    assert result.usage.web_search_requests == 2
    assert result.model == "gemini-2.5-pro"
    assert result.response_id == "mJ2oaKDdDNWnkdUPxNS-mQk"
    assert result.tokens_complete is True
    usage = raw(result)
    assert isinstance(usage, dict) and usage["thoughtsTokenCount"] == 1131
    check_leaves(result.usage)


def test_omitted_counts_are_zero_and_no_grounding_is_none() -> None:
    body = (
        b'{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},'
        b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 4,'
        b'"candidatesTokenCount": 1,"totalTokenCount": 5,"promptTokensDetails": [{"modality": '
        b'"TEXT","tokenCount": 4}]},"modelVersion": "gemini-2.0-flash",'
        b'"responseId": "7UWoaJ6xKf2-kdUPn9Xy4Qs"}'
    )
    result = parse_response(GENERATE, body, 200)
    assert result.usage.input_tokens == 4
    assert result.usage.cache_read_tokens == 0  # Gemini omits zero counts
    assert result.usage.output_tokens == 1
    assert result.usage.reasoning_tokens is None  # no thoughts reported
    assert result.usage.web_search_requests is None  # no grounding at all


SSE_STREAM = """data: {"candidates": [{"content": {"parts": [{"text": "Photosynthesis"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 3240,"totalTokenCount": 3862,"cachedContentTokenCount": 3072,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 3240}],"thoughtsTokenCount": 622},"modelVersion": "gemini-2.5-flash","responseId": "Yc2oaLGKNvOvkdUP4qGRyA0"}

data: {"candidates": [{"content": {"parts": [{"text": " turns light into sugar"}],"role": "model"},"index": 0}],"modelVersion": "gemini-2.5-flash","responseId": "Yc2oaLGKNvOvkdUP4qGRyA0"}

data: {"candidates": [{"content": {"parts": [{"text": " and oxygen."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 3240,"candidatesTokenCount": 41,"totalTokenCount": 3903,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 3240}],"thoughtsTokenCount": 622},"modelVersion": "gemini-2.5-flash","responseId": "Yc2oaLGKNvOvkdUP4qGRyA0"}

"""


def test_sse_stream_cumulative_usage_last_value_per_field() -> None:
    assert (
        route_for(
            "generativelanguage.googleapis.com",
            443,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        )
        == STREAM
    )
    for data in (crlf(SSE_STREAM), SSE_STREAM.encode()):
        result = results_for_all_chunkings(STREAM, data)[0]
        prompt, cached, candidates, thoughts = 3240, 3072, 41, 622
        # cachedContentTokenCount came only in the first chunk: an omission is not a reset.
        assert result.usage.input_tokens == prompt - cached
        assert result.usage.cache_read_tokens == cached
        assert result.usage.output_tokens == candidates + thoughts  # not summed over chunks
        assert result.usage.reasoning_tokens == thoughts
        assert result.model == "gemini-2.5-flash"
        assert result.response_id == "Yc2oaLGKNvOvkdUP4qGRyA0"
        assert result.tokens_complete is True
        check_leaves(result.usage)


def test_sse_stream_cut_before_finish_is_incomplete() -> None:
    cut = SSE_STREAM.split('data: {"candidates": [{"content": {"parts": [{"text": " and oxygen."')[
        0
    ]
    result = feed(STREAM, [crlf(cut)])
    assert result.tokens_complete is False
    assert result.usage.input_tokens == 3240 - 3072  # what arrived is kept
    assert result.usage.output_tokens == 0 + 622


ARRAY_STREAM = (
    b'[{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {\n'
    b'            "text": "Once upon a time, "\n          }\n        ],\n        "role": "model"\n'
    b'      },\n      "index": 0\n    }\n  ],\n  "usageMetadata": {\n    "promptTokenCount": 11,\n'
    b'    "totalTokenCount": 11,\n    "promptTokensDetails": [\n      {\n        "modality": '
    b'"TEXT",\n        "tokenCount": 11\n      }\n    ]\n  },\n  "modelVersion": '
    b'"gemini-2.5-flash",\n  "responseId": "k9OoaPCdJ4WgkdUPhbWJqA4"\n}\r\n,\r\n{\n'
    b'  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {\n'
    b'            "text": "a robot learned to {paint}, \\"quietly\\"."\n          }\n'
    b'        ],\n        "role": "model"\n      },\n      "finishReason": "STOP",\n'
    b'      "index": 0\n    }\n  ],\n  "usageMetadata": {\n    "promptTokenCount": 11,\n'
    b'    "candidatesTokenCount": 14,\n    "totalTokenCount": 413,\n'
    b'    "promptTokensDetails": [\n      {\n        "modality": "TEXT",\n'
    b'        "tokenCount": 11\n      }\n    ],\n    "thoughtsTokenCount": 388\n  },\n'
    b'  "modelVersion": "gemini-2.5-flash",\n  "responseId": "k9OoaPCdJ4WgkdUPhbWJqA4"\n}\r\n]'
)


def test_json_array_stream_decoded_object_by_object() -> None:
    assert is_streaming_response(STREAM, "application/json; charset=UTF-8") is True
    assert is_streaming_response(GENERATE, "application/json; charset=UTF-8") is False
    results = results_for_all_chunkings(STREAM, ARRAY_STREAM, "application/json; charset=UTF-8")
    result = results[0]
    prompt, candidates, thoughts = 11, 14, 388
    assert result.usage.input_tokens == prompt
    assert result.usage.output_tokens == candidates + thoughts
    assert result.usage.reasoning_tokens == thoughts
    assert result.model == "gemini-2.5-flash"
    assert result.response_id == "k9OoaPCdJ4WgkdUPhbWJqA4"
    assert result.tokens_complete is True
    # A buffered copy of the same array gives the same answer through parse_response.
    assert parse_response(STREAM, ARRAY_STREAM, 200) == result


def test_cut_json_array_keeps_complete_objects() -> None:
    cut = ARRAY_STREAM[: ARRAY_STREAM.index(b'"finishReason"')]
    result = feed(STREAM, [cut], "application/json")
    assert result.tokens_complete is False
    assert result.usage.input_tokens == 11
    assert result.usage.output_tokens == 0  # the first object had no output count yet
    assert result.response_id == "k9OoaPCdJ4WgkdUPhbWJqA4"


def test_long_json_array_stream_stays_correct_when_trimmed() -> None:
    # Enough pretty-printed objects to pass the parser's trimming threshold several times.
    piece = (
        b'{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {\n'
        b'            "text": "' + b"x" * 60_000 + b'"\n          }\n        ],\n'
        b'        "role": "model"\n      },\n      "index": 0\n    }\n  ],\n'
        b'  "usageMetadata": {\n    "promptTokenCount": 7,\n    "cachedContentTokenCount": 3,\n'
        b'    "totalTokenCount": 7\n  },\n  "modelVersion": "gemini-2.5-pro",\n'
        b'  "responseId": "T0ongStreAmiNgIdAbCdEfGh"\n}'
    )
    final = ARRAY_STREAM[ARRAY_STREAM.index(b"\r\n,\r\n{") + 5 :]
    body = b"[" + b"\r\n,\r\n".join([piece] * 300) + b"\r\n,\r\n" + final
    chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    result = feed(STREAM, chunks, "application/json")
    assert result.tokens_complete is True
    assert result.usage.output_tokens == 14 + 388
    # Last value per field: the final object omits the cache count, so the earlier 3 stands.
    assert result.usage.cache_read_tokens == 3
    assert result.usage.input_tokens == 11 - 3


CODE_ASSIST_SSE = """data: {"response": {"candidates": [{"content": {"role": "model","parts": [{"text": "I'll read the file first."}]}}],"usageMetadata": {"promptTokenCount": 18236,"totalTokenCount": 18236,"trafficType": "ON_DEMAND"},"modelVersion": "gemini-2.5-pro","createTime": "2025-08-22T09:14:03.512345Z","responseId": "2y6oaJKpH9KGjMcP0aWb2AQ"},"traceId": "6c1b0a2d8f3e4b7a"}

data: {"response": {"candidates": [{"content": {"role": "model","parts": [{"functionCall": {"name": "read_file","args": {"absolute_path": "/home/dev/app/main.py"}}}]},"finishReason": "STOP"}],"usageMetadata": {"promptTokenCount": 18236,"candidatesTokenCount": 31,"totalTokenCount": 18521,"cachedContentTokenCount": 16300,"trafficType": "ON_DEMAND","thoughtsTokenCount": 254},"modelVersion": "gemini-2.5-pro","createTime": "2025-08-22T09:14:03.512345Z","responseId": "2y6oaJKpH9KGjMcP0aWb2AQ"},"traceId": "6c1b0a2d8f3e4b7a"}

"""


def test_code_assist_stream_unwraps_response() -> None:
    route = route_for(
        "cloudcode-pa.googleapis.com", 443, "/v1internal:streamGenerateContent?alt=sse"
    )
    assert route == CODE_ASSIST_STREAM
    result = results_for_all_chunkings(route, crlf(CODE_ASSIST_SSE))[0]
    prompt, cached, candidates, thoughts = 18236, 16300, 31, 254
    assert result.usage.input_tokens == prompt - cached
    assert result.usage.cache_read_tokens == cached
    assert result.usage.output_tokens == candidates + thoughts
    assert result.model == "gemini-2.5-pro"
    assert result.response_id == "2y6oaJKpH9KGjMcP0aWb2AQ"
    assert result.tokens_complete is True


def test_code_assist_request_and_count_tokens() -> None:
    generate = route_for("cloudcode-pa.googleapis.com", 443, "/v1internal:generateContent")
    assert generate == Route("google", "gemini-code-assist", "generate_content")
    body = (
        b'{"model":"gemini-2.5-flash","project":"gen-lang-client-0481516234","user_prompt_id":'
        b'"a1b2c3d4e5f6","request":{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}}'
    )
    info = parse_request(generate, body)
    assert info.model == "gemini-2.5-flash" and info.stream is False
    count = route_for("cloudcode-pa.googleapis.com", 443, "/v1internal:countTokens")
    assert count is not None and count.zero_cost and count.api == "count_tokens"
    count_body = b'{"request":{"model":"models/gemini-2.5-pro","contents":[]}}'
    assert parse_request(count, count_body).model == "gemini-2.5-pro"
    result = parse_response(count, b'{"totalTokens": 4521}', 200)
    assert result.usage.input_tokens == 4521 and result.usage.output_tokens is None
    assert route_for("cloudcode-pa.googleapis.com", 443, "/v1internal:loadCodeAssist") is None


def test_code_assist_whole_body_falls_back_to_trace_id() -> None:
    body = (
        b'{"response": {"candidates": [{"content": {"role": "model","parts": [{"text": "ok"}]},'
        b'"finishReason": "STOP"}],"usageMetadata": {"promptTokenCount": 120,'
        b'"candidatesTokenCount": 2,"totalTokenCount": 122},"modelVersion": "gemini-2.5-flash"},'
        b'"traceId": "9a8b7c6d5e4f3a2b"}'
    )
    route = Route("google", "gemini-code-assist", "generate_content")
    result = parse_response(route, body, 200)
    assert result.usage.input_tokens == 120 and result.usage.output_tokens == 2
    assert result.response_id == "9a8b7c6d5e4f3a2b"
    assert result.tokens_complete is True


def test_embeddings_have_unknown_tokens_never_zero() -> None:
    embed = route_for(
        "generativelanguage.googleapis.com", 443, "/v1beta/models/gemini-embedding-001:embedContent"
    )
    assert embed == Route("google", "gemini", "embed_content", "gemini-embedding-001")
    result = parse_response(
        embed,
        b'{\n  "embedding": {\n    "values": [\n      -0.0221,\n      0.0119\n    ]\n  }\n}\n',
        200,
    )
    assert result.usage.input_tokens is None and result.usage.output_tokens is None
    assert result.tokens_complete is False
    batch = route_for(
        "generativelanguage.googleapis.com",
        443,
        "/v1beta/models/text-embedding-004:batchEmbedContents",
    )
    assert batch is not None and batch.api == "batch_embed_contents"
    body = (
        b'{"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}],'
        b'"usageMetadata": {"promptTokenCount": 16, "totalTokenCount": 16}}'
    )
    result = parse_response(batch, body, 200)
    assert result.usage.input_tokens == 16 and result.usage.output_tokens == 0


def test_count_tokens_is_zero_cost() -> None:
    count = route_for(
        "generativelanguage.googleapis.com", 443, "/v1/models/gemini-2.5-pro:countTokens"
    )
    assert count == Route("google", "gemini", "count_tokens", "gemini-2.5-pro", zero_cost=True)
    body = b'{\n  "totalTokens": 31,\n  "promptTokensDetails": [\n    {\n      "modality": "TEXT",\n      "tokenCount": 31\n    }\n  ]\n}\n'
    result = parse_response(count, body, 200)
    assert result.usage.input_tokens == 31
    assert result.usage.output_tokens is None and result.usage.cache_read_tokens is None
    assert result.tokens_complete is True


def test_request_model_comes_from_path() -> None:
    info = parse_request(STREAM, b'{"contents": [{"parts": [{"text": "hi"}]}]}')
    assert info.model == "gemini-2.5-flash" and info.stream is True


def test_errors() -> None:
    body = b"""{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
          {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
          }
        ]
      }
    ]
  }
}
"""
    result = parse_response(GENERATE, body, 429)
    assert result.provider_error_code == "RESOURCE_EXHAUSTED"
    assert result.stream_error is False
    assert classify_error(429, result.provider_error_code) == "rate_limit"
    array = b"[" + body.strip() + b"\r\n]"
    result = feed(STREAM, [array], "application/json")
    assert result.provider_error_code == "RESOURCE_EXHAUSTED"
    deadline = (
        b'{"error": {"code": 504, "message": "Deadline expired", "status": "DEADLINE_EXCEEDED"}}'
    )
    result = parse_response(GENERATE, deadline, 504)
    assert classify_error(504, result.provider_error_code) == "timeout"


def test_error_in_sse_stream_after_200() -> None:
    stream = SSE_STREAM.split("\n\n")[0] + (
        '\n\ndata: {"error": {"code": 503, "message": "The model is overloaded. Please try again '
        'later.", "status": "UNAVAILABLE"}}\n\n'
    )
    result = feed(STREAM, [stream.encode()])
    assert result.stream_error is True
    assert result.provider_error_code == "UNAVAILABLE"
    assert result.tokens_complete is False
    assert classify_error(200, result.provider_error_code) == "server_error"


def test_every_sample_is_robust() -> None:
    assert_robust(GENERATE, GROUNDED_BODY)
    assert_robust(STREAM, crlf(SSE_STREAM))
    assert_robust(STREAM, ARRAY_STREAM, "application/json")
    assert_robust(CODE_ASSIST_STREAM, CODE_ASSIST_SSE.encode())
    for chunks in chunkings(ARRAY_STREAM[:-30]):  # cut arrays in any chunking
        assert feed(STREAM, chunks, "application/json").tokens_complete is False
