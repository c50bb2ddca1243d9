"""OpenAI-compatible providers: each one's deviation from OpenAI's conventions."""

# ruff: noqa: E501 -- wire samples stay one event per line, byte for byte as sent

from __future__ import annotations

from decimal import Decimal

from halton_meter.providers import Route, classify_error, parse_response, route_for

from .helpers import assert_robust, check_leaves, prompt_total, raw, results_for_all_chunkings


def route(host: str, path: str) -> Route:
    found = route_for(host, 443, path)
    assert found is not None, (host, path)
    return found


XAI_CHAT = b"""{
  "id": "0d7e5b3c-8c1f-4a7e-9b1e-6f2a3d4c5b6a",
  "object": "chat.completion",
  "created": 1752480021,
  "model": "grok-4-0709",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Paris.",
        "refusal": null
      },
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 198,
    "completion_tokens": 9,
    "total_tokens": 342,
    "prompt_tokens_details": {
      "text_tokens": 198,
      "audio_tokens": 0,
      "image_tokens": 0,
      "cached_tokens": 192
    },
    "completion_tokens_details": {
      "reasoning_tokens": 135,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    },
    "num_sources_used": 0,
    "cost_in_usd_ticks": 2709000
  },
  "system_fingerprint": "fp_3a7881249c"
}
"""


def test_xai_reasoning_is_outside_completion_and_cost_in_ticks() -> None:
    xai = route("api.x.ai", "/v1/chat/completions")
    assert (xai.provider, xai.wire) == ("xai", "openai-chat")
    result = parse_response(xai, XAI_CHAT, 200)
    prompt, cached, completion, reasoning, total = 198, 192, 9, 135, 342
    assert total == prompt + completion + reasoning  # xAI's own arithmetic
    assert result.usage.input_tokens == prompt - cached
    assert result.usage.cache_read_tokens == cached
    assert result.usage.cache_write_tokens == 0
    assert result.usage.output_tokens == completion + reasoning
    assert result.usage.reasoning_tokens == reasoning
    assert result.provider_cost_usd == str(Decimal(2709000) / Decimal(10**10))  # 0.0002709
    assert result.provider_cost_usd == "0.0002709"
    assert result.model == "grok-4-0709"
    check_leaves(result.usage)


XAI_STREAM = """data: {"id":"7c5c3a5e-2f0b-4b44-9a39-3c8c2d1a0e9f","object":"chat.completion.chunk","created":1752480100,"model":"grok-3-mini","choices":[{"index":0,"delta":{"content":"Hi","role":"assistant"}}],"system_fingerprint":"fp_d8c7e1b2a3"}

data: {"id":"7c5c3a5e-2f0b-4b44-9a39-3c8c2d1a0e9f","object":"chat.completion.chunk","created":1752480100,"model":"grok-3-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"system_fingerprint":"fp_d8c7e1b2a3"}

data: {"id":"7c5c3a5e-2f0b-4b44-9a39-3c8c2d1a0e9f","object":"chat.completion.chunk","created":1752480100,"model":"grok-3-mini","choices":[],"usage":{"prompt_tokens":14,"completion_tokens":2,"total_tokens":334,"prompt_tokens_details":{"text_tokens":14,"audio_tokens":0,"image_tokens":0,"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":318,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0},"num_sources_used":0,"cost_in_usd_ticks":1640000},"system_fingerprint":"fp_d8c7e1b2a3"}

data: [DONE]

"""


def test_xai_stream() -> None:
    result = results_for_all_chunkings(
        route("api.x.ai", "/v1/chat/completions"), XAI_STREAM.encode()
    )[0]
    assert result.usage.output_tokens == 2 + 318
    assert result.usage.input_tokens == 14 - 0
    assert result.provider_cost_usd == "0.000164"  # 1,640,000 ticks / 10^10
    assert result.tokens_complete is True


GROQ_STREAM = """data: {"id":"chatcmpl-5e1d1c64-7f0b-4b9e-8a62-0f6a0c3e9b21","object":"chat.completion.chunk","created":1729609013,"model":"llama-3.3-70b-versatile","system_fingerprint":"fp_c5f20b5bb1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"x_groq":{"id":"req_01jasv9w0mf3ebhmk8ym7kd5dz"}}

data: {"id":"chatcmpl-5e1d1c64-7f0b-4b9e-8a62-0f6a0c3e9b21","object":"chat.completion.chunk","created":1729609013,"model":"llama-3.3-70b-versatile","system_fingerprint":"fp_c5f20b5bb1","choices":[{"index":0,"delta":{"content":"Fast inference matters."},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-5e1d1c64-7f0b-4b9e-8a62-0f6a0c3e9b21","object":"chat.completion.chunk","created":1729609013,"model":"llama-3.3-70b-versatile","system_fingerprint":"fp_c5f20b5bb1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"x_groq":{"id":"req_01jasv9w0mf3ebhmk8ym7kd5dz","usage":{"queue_time":0.017165467,"prompt_tokens":18,"prompt_time":0.000945,"completion_tokens":427,"completion_time":0.355833333,"total_tokens":445,"total_time":0.356778333}}}

data: [DONE]

"""


def test_groq_stream_usage_under_x_groq() -> None:
    groq = route("api.groq.com", "/openai/v1/chat/completions")
    assert groq.provider == "groq"
    result = results_for_all_chunkings(groq, GROQ_STREAM.encode())[0]
    assert result.usage.input_tokens == 18
    assert result.usage.cache_read_tokens is None  # Groq reported no cached_tokens
    assert result.usage.cache_write_tokens == 0
    assert result.usage.output_tokens == 427
    assert result.tokens_complete is True
    usage = raw(result)
    assert isinstance(usage, dict) and usage["queue_time"] == 0.017165467  # timing kept


def test_groq_body_with_cache() -> None:
    body = (
        b'{"id":"chatcmpl-f51b2cd2-bef7-417e-964e-a08f0b513c22","object":"chat.completion",'
        b'"created":1730241104,"model":"openai/gpt-oss-120b","choices":[{"index":0,"message":'
        b'{"role":"assistant","content":"Done."},"logprobs":null,"finish_reason":"stop"}],'
        b'"usage":{"queue_time":0.037493756,"prompt_tokens":2006,"prompt_time":0.011,'
        b'"completion_tokens":300,"completion_time":0.2,"total_tokens":2306,"total_time":0.21,'
        b'"prompt_tokens_details":{"cached_tokens":1792},"completion_tokens_details":'
        b'{"reasoning_tokens":112}},"system_fingerprint":"fp_ed9190d8b7","x_groq":{"id":'
        b'"req_01jbd6g2qdfw2adyrt2az8hz4w"},"service_tier":"on_demand"}'
    )
    result = parse_response(route("api.groq.com", "/openai/v1/chat/completions"), body, 200)
    assert result.usage.input_tokens == 2006 - 1792
    assert result.usage.cache_read_tokens == 1792
    assert result.usage.output_tokens == 300 and result.usage.reasoning_tokens == 112
    assert result.service_tier == "on_demand"


MISTRAL_STREAM = """data: {"id":"6f5c0b9a1e1c4d7f9a3b2c1d0e9f8a7b","object":"chat.completion.chunk","created":1731501230,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

data: {"id":"6f5c0b9a1e1c4d7f9a3b2c1d0e9f8a7b","object":"chat.completion.chunk","created":1731501230,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"Bonjour !"},"finish_reason":null}]}

data: {"id":"6f5c0b9a1e1c4d7f9a3b2c1d0e9f8a7b","object":"chat.completion.chunk","created":1731501230,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":1034,"total_tokens":1051,"completion_tokens":17,"prompt_tokens_details":{"cached_tokens":1024}}}

data: [DONE]

"""


def test_mistral_stream_usage_on_last_chunk() -> None:
    mistral = route("api.mistral.ai", "/v1/chat/completions")
    result = results_for_all_chunkings(mistral, MISTRAL_STREAM.encode())[0]
    assert result.usage.input_tokens == 1034 - 1024
    assert result.usage.cache_read_tokens == 1024
    assert result.usage.cache_write_tokens == 0
    assert result.usage.output_tokens == 17
    assert prompt_total(result.usage) == 1034
    assert result.tokens_complete is True


def test_deepseek_cache_hit_and_miss() -> None:
    body = b"""{
  "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
  "object": "chat.completion",
  "created": 1737375283,
  "model": "deepseek-reasoner",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "9.11 is smaller.",
        "reasoning_content": "Compare the decimals..."
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1354,
    "completion_tokens": 511,
    "total_tokens": 1865,
    "prompt_tokens_details": {
      "cached_tokens": 1280
    },
    "completion_tokens_details": {
      "reasoning_tokens": 380
    },
    "prompt_cache_hit_tokens": 1280,
    "prompt_cache_miss_tokens": 74
  },
  "system_fingerprint": "fp_7e73fd9a08_prod0225"
}
"""
    for path in ("/chat/completions", "/v1/chat/completions"):
        deepseek = route("api.deepseek.com", path)
        result = parse_response(deepseek, body, 200)
        hit, miss = 1280, 74
        assert result.usage.input_tokens == miss
        assert result.usage.cache_read_tokens == hit
        assert result.usage.cache_write_tokens == 0
        assert prompt_total(result.usage) == 1354  # hit + miss = prompt
        assert result.usage.output_tokens == 511  # reasoning is inside
        assert result.usage.reasoning_tokens == 380


OPENROUTER_STREAM = """: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

data: {"id":"gen-1756743299-7ytIBcjALWQQShwMQfw9","provider":"Anthropic","model":"anthropic/claude-sonnet-4","object":"chat.completion.chunk","created":1756743299,"choices":[{"index":0,"delta":{"role":"assistant","content":"Sure"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1756743299-7ytIBcjALWQQShwMQfw9","provider":"Anthropic","model":"anthropic/claude-sonnet-4","object":"chat.completion.chunk","created":1756743299,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop","native_finish_reason":"end_turn","logprobs":null}]}

data: {"id":"gen-1756743299-7ytIBcjALWQQShwMQfw9","provider":"Anthropic","model":"anthropic/claude-sonnet-4","object":"chat.completion.chunk","created":1756743299,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"usage":{"prompt_tokens":5321,"completion_tokens":220,"total_tokens":5541,"cost":0.0218133,"is_byok":false,"prompt_tokens_details":{"cached_tokens":4096,"cache_write_tokens":1024,"audio_tokens":0},"cost_details":{"upstream_inference_cost":null,"upstream_inference_prompt_cost":0.0185133,"upstream_inference_completions_cost":0.0033},"completion_tokens_details":{"reasoning_tokens":0,"image_tokens":0}}}

data: [DONE]

"""


def test_openrouter_stream_with_comments_and_exact_cost() -> None:
    openrouter = route("openrouter.ai", "/api/v1/chat/completions")
    result = results_for_all_chunkings(openrouter, OPENROUTER_STREAM.encode())[0]
    prompt, cached, written = 5321, 4096, 1024
    assert result.usage.input_tokens == prompt - cached - written
    assert result.usage.cache_read_tokens == cached
    assert result.usage.cache_write_tokens == written
    assert result.usage.cache_write_1h_tokens is None  # OpenRouter gives no TTL
    assert result.usage.output_tokens == 220
    assert result.provider_cost_usd == "0.0218133"  # the decimal as sent, no float drift
    assert result.model == "anthropic/claude-sonnet-4"
    assert result.response_id == "gen-1756743299-7ytIBcjALWQQShwMQfw9"
    assert result.tokens_complete is True


def test_openrouter_cost_keeps_every_digit() -> None:
    body = (
        b'{"id":"gen-1756800000-AbCdEfGhIjKlMnOpQrSt","provider":"Google","model":'
        b'"google/gemini-2.5-flash","object":"chat.completion","created":1756800000,'
        b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6,'
        b'"cost":1.00000000000000001e-05,"is_byok":false}}'
    )
    result = parse_response(route("openrouter.ai", "/api/v1/chat/completions"), body, 200)
    # A float would have become 1e-05; the exact decimal keeps the 17th significant digit.
    assert result.provider_cost_usd == "0.0000100000000000000001"


def test_openrouter_error_after_200() -> None:
    stream = """data: {"id":"gen-1756743300-Qx8ZkLmN0pRsTuVwXyZa","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1756743300,"choices":[{"index":0,"delta":{"role":"assistant","content":"Partial"},"finish_reason":null}]}

data: {"id":"gen-1756743300-Qx8ZkLmN0pRsTuVwXyZa","object":"chat.completion.chunk","created":1756743300,"model":"openai/gpt-4o","provider":"OpenAI","error":{"code":502,"message":"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}

"""
    openrouter = route("openrouter.ai", "/api/v1/chat/completions")
    result = results_for_all_chunkings(openrouter, stream.encode())[0]
    assert result.stream_error is True
    assert result.provider_error_code == "502"
    assert classify_error(200, result.provider_error_code) == "server_error"
    assert result.tokens_complete is False


TOGETHER_STREAM = """data: {"id":"8f0a1b2c3d4e5f60-SJC","object":"chat.completion.chunk","created":1731234567,"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","choices":[{"index":0,"text":"Hello","logprobs":null,"finish_reason":null,"seed":null,"delta":{"token_id":9906,"role":"assistant","content":"Hello","tool_calls":null}}],"usage":null}

data: {"id":"8f0a1b2c3d4e5f60-SJC","object":"chat.completion.chunk","created":1731234567,"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","choices":[{"index":0,"text":"!","logprobs":null,"finish_reason":"eos","seed":5937315446394327000,"delta":{"token_id":128009,"role":"assistant","content":"!","tool_calls":null}}],"usage":{"prompt_tokens":2078,"completion_tokens":2,"total_tokens":2080,"cached_tokens":2048}}

data: [DONE]

"""


def test_together_cached_tokens_at_top_level() -> None:
    together = route("api.together.xyz", "/v1/chat/completions")
    result = results_for_all_chunkings(together, TOGETHER_STREAM.encode())[0]
    assert result.usage.input_tokens == 2078 - 2048
    assert result.usage.cache_read_tokens == 2048
    assert result.usage.output_tokens == 2
    assert result.tokens_complete is True


def test_fireworks_cached_inside_prompt() -> None:
    body = (
        b'{"id":"9c1f6a57-1e93-4f0b-bf0c-7b4a7c2f9d11","object":"chat.completion","created":'
        b'1739912345,"model":"accounts/fireworks/models/deepseek-v3","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"Yes."},"finish_reason":"stop"}],"usage":'
        b'{"prompt_tokens":812,"total_tokens":830,"completion_tokens":18,"prompt_tokens_details":'
        b'{"cached_tokens":768}}}'
    )
    fireworks = route("api.fireworks.ai", "/inference/v1/chat/completions")
    result = parse_response(fireworks, body, 200)
    assert result.usage.input_tokens == 812 - 768
    assert result.usage.cache_read_tokens == 768
    assert result.usage.output_tokens == 18
    assert result.model == "accounts/fireworks/models/deepseek-v3"


CEREBRAS_STREAM = """data: {"id":"chatcmpl-3f2a1b0c-9d8e-4f7a-b6c5-d4e3f2a1b0c9","choices":[{"delta":{"role":"assistant"},"index":0}],"created":1733000000,"model":"llama-3.3-70b","system_fingerprint":"fp_70185065a4","object":"chat.completion.chunk"}

data: {"id":"chatcmpl-3f2a1b0c-9d8e-4f7a-b6c5-d4e3f2a1b0c9","choices":[{"delta":{"content":"Wafer"},"index":0}],"created":1733000000,"model":"llama-3.3-70b","system_fingerprint":"fp_70185065a4","object":"chat.completion.chunk","usage":{"prompt_tokens":40,"completion_tokens":1,"total_tokens":41,"prompt_tokens_details":{"cached_tokens":0}}}

data: {"id":"chatcmpl-3f2a1b0c-9d8e-4f7a-b6c5-d4e3f2a1b0c9","choices":[{"delta":{"content":"-scale."},"index":0}],"created":1733000000,"model":"llama-3.3-70b","system_fingerprint":"fp_70185065a4","object":"chat.completion.chunk","usage":null}

data: {"id":"chatcmpl-3f2a1b0c-9d8e-4f7a-b6c5-d4e3f2a1b0c9","choices":[{"delta":{},"finish_reason":"stop","index":0}],"created":1733000000,"model":"llama-3.3-70b","system_fingerprint":"fp_70185065a4","object":"chat.completion.chunk","usage":{"prompt_tokens":40,"completion_tokens":6,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0}},"time_info":{"queue_time":0.000112,"prompt_time":0.00201,"completion_time":0.0031,"total_time":0.0062,"created":1733000000}}

"""


def test_cerebras_keeps_last_non_null_usage() -> None:
    cerebras = route("api.cerebras.ai", "/v1/chat/completions")
    result = results_for_all_chunkings(cerebras, CEREBRAS_STREAM.encode())[0]
    assert result.usage.input_tokens == 40
    assert result.usage.output_tokens == 6  # the last usage, not 1 + 6
    assert result.tokens_complete is True


PERPLEXITY_BODY = b"""{
  "id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
  "model": "sonar-pro",
  "created": 1741000000,
  "usage": {
    "prompt_tokens": 9,
    "completion_tokens": 220,
    "total_tokens": 229,
    "search_context_size": "low",
    "citation_tokens": 1380,
    "num_search_queries": 2,
    "reasoning_tokens": 0,
    "cost": {
      "input_tokens_cost": 0.000027,
      "output_tokens_cost": 0.0033,
      "request_cost": 0.006,
      "total_cost": 0.009327
    }
  },
  "citations": ["https://en.wikipedia.org/wiki/Perplexity"],
  "object": "chat.completion",
  "choices": [
    {
      "index": 0,
      "finish_reason": "stop",
      "message": {"role": "assistant", "content": "Perplexity is a measure of..."}
    }
  ]
}
"""


def test_perplexity_cost_and_searches() -> None:
    for path in ("/chat/completions", "/v1/chat/completions"):
        perplexity = route("api.perplexity.ai", path)
        result = parse_response(perplexity, PERPLEXITY_BODY, 200)
        assert result.usage.input_tokens == 9
        assert result.usage.cache_read_tokens == 0 and result.usage.cache_write_tokens == 0
        assert result.usage.output_tokens == 220
        assert result.usage.reasoning_tokens == 0
        assert result.usage.web_search_requests == 2
        assert result.provider_cost_usd == "0.009327"


def test_gemini_openai_compat_thinking_outside_completion() -> None:
    google = route("generativelanguage.googleapis.com", "/v1beta/openai/chat/completions")
    assert (google.provider, google.wire) == ("google", "openai-chat")
    stream = """data: {"choices":[{"delta":{"content":"1","role":"assistant"},"index":0}],"created":1772149571,"id":"Q9ugadePBtbAqtsPx5e1iAE","model":"gemini-3-flash-preview","object":"chat.completion.chunk","usage":{"completion_tokens":1,"prompt_tokens":9,"total_tokens":103}}

data: {"choices":[{"delta":{"content":", 2","role":"assistant"},"finish_reason":"stop","index":0}],"created":1772149571,"id":"Q9ugadePBtbAqtsPx5e1iAE","model":"gemini-3-flash-preview","object":"chat.completion.chunk","usage":{"completion_tokens":3,"prompt_tokens":9,"total_tokens":105}}

data: [DONE]

"""
    result = results_for_all_chunkings(google, stream.encode())[0]
    prompt, completion, total = 9, 3, 105
    thinking = total - prompt - completion
    assert result.usage.input_tokens == prompt
    assert result.usage.output_tokens == completion + thinking
    assert result.usage.reasoning_tokens == thinking
    check_leaves(result.usage)


def test_every_sample_is_robust() -> None:
    for host, path, body in (
        ("api.x.ai", "/v1/chat/completions", XAI_CHAT),
        ("api.x.ai", "/v1/chat/completions", XAI_STREAM.encode()),
        ("api.groq.com", "/openai/v1/chat/completions", GROQ_STREAM.encode()),
        ("openrouter.ai", "/api/v1/chat/completions", OPENROUTER_STREAM.encode()),
        ("api.together.xyz", "/v1/chat/completions", TOGETHER_STREAM.encode()),
        ("api.perplexity.ai", "/chat/completions", PERPLEXITY_BODY),
    ):
        assert_robust(route(host, path), body)


DEEPSEEK_STREAM = """data: {"id":"c1f5a0b2-6d3e-4f1a-9b8c-7e6d5c4b3a21","object":"chat.completion.chunk","created":1737375400,"model":"deepseek-chat","system_fingerprint":"fp_3a5770e1b4_prod0225","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"c1f5a0b2-6d3e-4f1a-9b8c-7e6d5c4b3a21","object":"chat.completion.chunk","created":1737375400,"model":"deepseek-chat","system_fingerprint":"fp_3a5770e1b4_prod0225","choices":[{"index":0,"delta":{"content":"Hello!"},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"c1f5a0b2-6d3e-4f1a-9b8c-7e6d5c4b3a21","object":"chat.completion.chunk","created":1737375400,"model":"deepseek-chat","system_fingerprint":"fp_3a5770e1b4_prod0225","choices":[],"usage":{"prompt_tokens":1290,"completion_tokens":30,"total_tokens":1320,"prompt_tokens_details":{"cached_tokens":1216},"prompt_cache_hit_tokens":1216,"prompt_cache_miss_tokens":74}}

data: [DONE]

"""

FIREWORKS_STREAM = """data: {"id":"5d2e7c1a-0b3f-4e8d-a9c6-1f2e3d4c5b6a","object":"chat.completion.chunk","created":1739912400,"model":"accounts/fireworks/models/llama-v3p1-8b-instruct","choices":[{"index":0,"delta":{"role":"assistant","content":"Sure."},"finish_reason":null}],"usage":null}

data: {"id":"5d2e7c1a-0b3f-4e8d-a9c6-1f2e3d4c5b6a","object":"chat.completion.chunk","created":1739912400,"model":"accounts/fireworks/models/llama-v3p1-8b-instruct","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}

data: {"id":"5d2e7c1a-0b3f-4e8d-a9c6-1f2e3d4c5b6a","object":"chat.completion.chunk","created":1739912400,"model":"accounts/fireworks/models/llama-v3p1-8b-instruct","choices":[],"usage":{"prompt_tokens":640,"total_tokens":643,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":512}}}

data: [DONE]

"""

PERPLEXITY_STREAM = """data: {"id":"9f1c2b3a-4d5e-6f70-8192-a3b4c5d6e7f8","model":"sonar","created":1741000100,"usage":{"prompt_tokens":6,"completion_tokens":1,"total_tokens":7,"search_context_size":"low"},"citations":["https://www.example.org/tides"],"object":"chat.completion.chunk","choices":[{"index":0,"finish_reason":null,"message":{"role":"assistant","content":"High"},"delta":{"role":"assistant","content":"High"}}]}

data: {"id":"9f1c2b3a-4d5e-6f70-8192-a3b4c5d6e7f8","model":"sonar","created":1741000100,"usage":{"prompt_tokens":6,"completion_tokens":12,"total_tokens":18,"search_context_size":"low","num_search_queries":1,"cost":{"input_tokens_cost":6e-06,"output_tokens_cost":1.2e-05,"request_cost":0.005,"total_cost":0.005018}},"citations":["https://www.example.org/tides"],"object":"chat.completion.chunk","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"High tide is at 14:02."},"delta":{"role":"assistant","content":""}}]}

"""

MISTRAL_BODY = b'{"id":"cf79f7daaee244b1a0ae5c7b1444424a","object":"chat.completion","model":"mistral-medium-latest","usage":{"prompt_tokens":24,"completion_tokens":27,"total_tokens":51,"prompt_tokens_details":{"cached_tokens":0}},"created":1759500534,"choices":[{"index":0,"message":{"role":"assistant","tool_calls":null,"content":"Bonjour."},"finish_reason":"stop"}]}'

TOGETHER_BODY = b"""{
  "id": "8f0a1b2c3d4e5f61-SJC",
  "object": "chat.completion",
  "created": 1731234600,
  "model": "Qwen/Qwen3-235B-A22B-Instruct-2507-tput",
  "prompt": [],
  "choices": [
    {
      "finish_reason": "stop",
      "seed": 1122334455667788000,
      "index": 0,
      "logprobs": null,
      "message": {"role": "assistant", "content": "Done.", "tool_calls": []}
    }
  ],
  "usage": {
    "prompt_tokens": 3120,
    "completion_tokens": 4,
    "total_tokens": 3124,
    "cached_tokens": 3072
  }
}
"""

CEREBRAS_BODY = b'{"id":"chatcmpl-8d7c6b5a-4f3e-2d1c-0b9a-8f7e6d5c4b3a","choices":[{"finish_reason":"stop","index":0,"message":{"content":"Yes.","role":"assistant"}}],"created":1733000500,"model":"qwen-3-32b","system_fingerprint":"fp_d7c70b5e3a","object":"chat.completion","usage":{"prompt_tokens":1570,"completion_tokens":210,"total_tokens":1780,"prompt_tokens_details":{"cached_tokens":1536},"completion_tokens_details":{"reasoning_tokens":180}},"time_info":{"queue_time":0.000301,"prompt_time":0.0112,"completion_time":0.0854,"total_time":0.0981,"created":1733000500}}'


def test_remaining_stream_and_body_variants() -> None:
    cases = [
        # (host, path, data, streamed, input, cache_read, output, reasoning, searches, cost)
        (
            "api.deepseek.com",
            "/chat/completions",
            DEEPSEEK_STREAM,
            True,
            74,
            1216,
            30,
            None,
            None,
            None,
        ),
        (
            "api.fireworks.ai",
            "/inference/v1/chat/completions",
            FIREWORKS_STREAM,
            True,
            640 - 512,
            512,
            3,
            None,
            None,
            None,
        ),
        (
            "api.perplexity.ai",
            "/chat/completions",
            PERPLEXITY_STREAM,
            True,
            6,
            0,
            12,
            None,
            1,
            "0.005018",
        ),
        (
            "api.mistral.ai",
            "/v1/chat/completions",
            MISTRAL_BODY,
            False,
            24 - 0,
            0,
            27,
            None,
            None,
            None,
        ),
        (
            "api.together.xyz",
            "/v1/chat/completions",
            TOGETHER_BODY,
            False,
            3120 - 3072,
            3072,
            4,
            None,
            None,
            None,
        ),
        (
            "api.cerebras.ai",
            "/v1/chat/completions",
            CEREBRAS_BODY,
            False,
            1570 - 1536,
            1536,
            210,
            180,
            None,
            None,
        ),
    ]
    for host, path, data, streamed, input_, cache_read, output, reasoning, searches, cost in cases:
        body = data.encode() if isinstance(data, str) else data
        assert isinstance(body, bytes)
        result = (
            results_for_all_chunkings(route(host, path), body)[0]
            if streamed
            else parse_response(route(host, path), body, 200)
        )
        usage = result.usage
        assert (usage.input_tokens, usage.cache_read_tokens) == (input_, cache_read), host
        assert usage.cache_write_tokens == 0, host  # none of these bills cache writes
        assert (usage.output_tokens, usage.reasoning_tokens) == (output, reasoning), host
        assert usage.web_search_requests == searches, host
        assert result.provider_cost_usd == cost, host
        assert result.tokens_complete is True, host
        check_leaves(usage)
