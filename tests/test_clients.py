"""The official SDKs and curl, run through `halton-meter run`, each yield exactly one row with
the exact normalised usage.

Expected values are worked out here from the raw numbers the fake provider sends (the catalog),
following each provider's documented convention, never from the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import METER, ROOT, Meter
from tests.fakeupstream import catalog


def metered(meter: Meter, project: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [METER, "run", "--project", project, "--", *argv],
        env=meter.run_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def sdk(meter: Meter, project: str, kind: str) -> dict[str, Any]:
    done = metered(meter, project, sys.executable, "-m", "tests.clients.sdk_client", kind)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# Published prices, USD per million tokens (per thousand for searches).
# Anthropic, claude.com/pricing, Claude Sonnet 4.5 (prompts up to 200k tokens):
SONNET_4_5 = {
    "input": 3,
    "output": 15,
    "cache_read": "0.30",
    "write_5m": "3.75",
    "write_1h": 6,
    "web_search_k": 10,
}
# OpenAI, openai.com/api/pricing, GPT-4.1 (cache writes are billed as ordinary input):
GPT_4_1 = {"input": 2, "cached": "0.50", "output": 8}


def nano(per_million: Any, tokens: int) -> Decimal:
    """Nano-USD for `tokens` at a per-million price: exact decimal arithmetic."""
    return Decimal(str(per_million)) * tokens * 1000


def usage_of(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "web_search_requests",
    )
    return {key: row[key] for key in keys}


def test_anthropic_sdk_stream(meter: Meter, project: str) -> None:
    seen = sdk(meter, project, "anthropic_stream")
    raw = catalog.ANTHROPIC_USAGE
    assert seen["text"] == catalog.full_text(catalog.DEFAULT_EVENTS)
    (row,) = meter.wait_rows(project, 1)
    assert usage_of(row) == {
        # Anthropic's usage is additive: input excludes cache reads and writes already.
        "input_tokens": raw["input_tokens"],
        "cache_read_tokens": raw["cache_read_input_tokens"],
        "cache_write_tokens": raw["cache_creation_input_tokens"],
        "cache_write_1h_tokens": raw["cache_creation"]["ephemeral_1h_input_tokens"],
        "output_tokens": raw["output_tokens"],  # the final running total, not start + delta
        "reasoning_tokens": None,
        "web_search_requests": raw["server_tool_use"]["web_search_requests"],
    }
    assert (row["provider"], row["api"], row["host"]) == (
        "anthropic",
        "messages",
        "api.anthropic.com",
    )
    assert row["stream"] == 1 and row["tokens_complete"] == 1
    assert row["status"] == "ok" and row["http_status"] == 200
    assert row["model_requested"] == "claude-sonnet-4-5"
    assert row["response_id"] == catalog.ANTHROPIC_MESSAGE_ID
    assert row["service_tier"] == "standard"
    assert row["user_agent"].startswith("Anthropic/Python")
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]
    assert row["project"] == project
    # The cost, worked out by hand from Anthropic's published prices.
    written_1h = raw["cache_creation"]["ephemeral_1h_input_tokens"]
    expected = (
        nano(SONNET_4_5["input"], raw["input_tokens"])
        + nano(SONNET_4_5["write_5m"], raw["cache_creation_input_tokens"] - written_1h)
        + nano(SONNET_4_5["write_1h"], written_1h)
        + nano(SONNET_4_5["cache_read"], raw["cache_read_input_tokens"])
        + nano(SONNET_4_5["output"], raw["output_tokens"])
        + Decimal(SONNET_4_5["web_search_k"])
        * raw["server_tool_use"]["web_search_requests"]
        * 10**6
    )
    assert row["cost_nanousd"] == int(expected)
    assert row["price_source"].startswith("genai-prices ")


def test_anthropic_sdk_thinking_message(meter: Meter, project: str) -> None:
    seen = sdk(meter, project, "anthropic_message")
    (row,) = meter.wait_rows(project, 1)
    assert row["stream"] == 0 and row["tokens_complete"] == 1
    assert row["output_tokens"] == seen["usage"]["output_tokens"]
    assert row["reasoning_tokens"] == catalog.ANTHROPIC_THINKING_TOKENS
    assert row["input_tokens"] == catalog.ANTHROPIC_USAGE["input_tokens"]


def test_anthropic_count_tokens_is_a_zero_cost_row(meter: Meter, project: str) -> None:
    seen = sdk(meter, project, "anthropic_count_tokens")
    assert seen["input_tokens"] == catalog.ANTHROPIC_COUNT_TOKENS["input_tokens"]
    (row,) = meter.wait_rows(project, 1)
    assert row["api"] == "count_tokens"
    assert row["cost_nanousd"] == 0


def test_openai_sdk_stream_gets_usage_the_client_never_asked_for(
    meter: Meter, project: str
) -> None:
    seen = sdk(meter, project, "openai_chat_stream")
    # The client did not ask for include_usage: it must see no usage chunk and no usage field.
    assert not any(seen["usage_seen"])
    assert seen["text"] == catalog.full_text(catalog.DEFAULT_EVENTS)
    raw = catalog.OPENAI_CHAT_USAGE
    cached = raw["prompt_tokens_details"]["cached_tokens"]
    written = raw["prompt_tokens_details"]["cache_write_tokens"]
    (row,) = meter.wait_rows(project, 1)
    assert usage_of(row) == {
        # OpenAI's prompt_tokens includes cached and cache-write tokens: take them out.
        "input_tokens": raw["prompt_tokens"] - cached - written,
        "cache_read_tokens": cached,
        "cache_write_tokens": written,
        "cache_write_1h_tokens": None,
        "output_tokens": raw["completion_tokens"],  # reasoning is inside completion_tokens
        "reasoning_tokens": raw["completion_tokens_details"]["reasoning_tokens"],
        "web_search_requests": None,
    }
    assert row["tokens_complete"] == 1 and row["model_requested"] == "gpt-4.1"
    expected = (
        nano(GPT_4_1["input"], raw["prompt_tokens"] - cached)  # uncached input and cache writes
        + nano(GPT_4_1["cached"], cached)
        + nano(GPT_4_1["output"], raw["completion_tokens"])
    )
    assert row["cost_nanousd"] == int(expected)


def test_openai_sdk_responses_stream(meter: Meter, project: str) -> None:
    seen = sdk(meter, project, "openai_responses_stream")
    assert seen["types"][-1] == "response.completed"
    raw = catalog.OPENAI_RESPONSES_USAGE
    cached = raw["input_tokens_details"]["cached_tokens"]
    written = raw["input_tokens_details"]["cache_write_tokens"]
    (row,) = meter.wait_rows(project, 1)
    assert (row["api"], row["tokens_complete"]) == ("responses", 1)
    assert row["input_tokens"] == raw["input_tokens"] - cached - written
    assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (cached, written)
    assert row["output_tokens"] == raw["output_tokens"]
    assert row["reasoning_tokens"] == raw["output_tokens_details"]["reasoning_tokens"]
    assert row["web_search_requests"] == 1  # one web_search_call output item


def test_openai_sdk_embeddings(meter: Meter, project: str) -> None:
    seen = sdk(meter, project, "openai_embeddings")
    assert seen["dimensions"] == len(catalog.EMBEDDING_VECTOR)
    (row,) = meter.wait_rows(project, 1)
    assert row["api"] == "embeddings"
    assert row["input_tokens"] == catalog.OPENAI_EMBEDDINGS_USAGE["prompt_tokens"]
    assert row["output_tokens"] == 0


@pytest.mark.parametrize("kind", ["gemini_stream", "gemini_generate"])
def test_google_genai_sdk(meter: Meter, project: str, kind: str) -> None:
    seen = sdk(meter, project, kind)
    raw = catalog.GEMINI_USAGE
    assert seen["prompt_token_count"] == raw["promptTokenCount"]
    (row,) = meter.wait_rows(project, 1)
    assert usage_of(row) == {
        # promptTokenCount includes cached tokens; tool-use prompt tokens are billed as input.
        "input_tokens": raw["promptTokenCount"]
        + raw["toolUsePromptTokenCount"]
        - raw["cachedContentTokenCount"],
        "cache_read_tokens": raw["cachedContentTokenCount"],
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": None,
        # Thoughts are outside candidates but billed as output.
        "output_tokens": raw["candidatesTokenCount"] + raw["thoughtsTokenCount"],
        "reasoning_tokens": raw["thoughtsTokenCount"],
        "web_search_requests": None,
    }
    assert row["provider"] == "google"
    assert row["model"] == catalog.GEMINI_MODEL
    assert row["stream"] == (kind == "gemini_stream")


def curl_json(
    meter: Meter, project: str, url: str, body: dict[str, Any], *headers: str
) -> subprocess.CompletedProcess[str]:
    args = [
        "curl",
        "-sS",
        "--fail-with-body",
        url,
        "-H",
        "content-type: application/json",
        "-H",
        "authorization: Bearer sk-test-secret-0004",
        "--data",
        json.dumps(body),
    ]
    for header in headers:
        args += ["-H", header]
    return metered(meter, project, *args)


def chat_body(model: str, stream: bool = True) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


def _plain(raw: dict[str, Any], cached: int) -> dict[str, int | None]:
    """Most OpenAI-compatible providers: cached inside prompt, reasoning inside completion.
    (Unreported cache fields are 0: the prompt total is all uncached then.)"""
    return {
        "input_tokens": raw["prompt_tokens"] - cached,
        "cache_read_tokens": cached,
        "output_tokens": raw["completion_tokens"],
        "reasoning_tokens": raw.get("completion_tokens_details", {}).get("reasoning_tokens"),
    }


COMPATIBLE = [
    (
        "xai",
        "https://api.x.ai/v1/chat/completions",
        catalog.XAI_CHAT_USAGE,
        # xAI reports reasoning outside completion_tokens: it is billed output all the same.
        lambda u: {
            "input_tokens": u["prompt_tokens"] - u["prompt_tokens_details"]["cached_tokens"],
            "cache_read_tokens": u["prompt_tokens_details"]["cached_tokens"],
            "output_tokens": u["completion_tokens"]
            + u["completion_tokens_details"]["reasoning_tokens"],
            "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"],
        },
    ),
    (
        "groq",
        "https://api.groq.com/openai/v1/chat/completions",
        catalog.GROQ_CHAT_USAGE,
        lambda u: _plain(u, u["prompt_tokens_details"]["cached_tokens"]),
    ),
    (
        "mistral",
        "https://api.mistral.ai/v1/chat/completions",
        catalog.MISTRAL_CHAT_USAGE,
        lambda u: _plain(u, u["prompt_tokens_details"]["cached_tokens"]),
    ),
    (
        "deepseek",
        "https://api.deepseek.com/chat/completions",
        catalog.DEEPSEEK_CHAT_USAGE,
        lambda u: {
            "input_tokens": u["prompt_cache_miss_tokens"],
            "cache_read_tokens": u["prompt_cache_hit_tokens"],
            "output_tokens": u["completion_tokens"],
            "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"],
        },
    ),
    (
        "openrouter",
        "https://openrouter.ai/api/v1/chat/completions",
        catalog.OPENROUTER_CHAT_USAGE,
        lambda u: {
            "input_tokens": u["prompt_tokens"]
            - u["prompt_tokens_details"]["cached_tokens"]
            - u["prompt_tokens_details"]["cache_write_tokens"],
            "cache_read_tokens": u["prompt_tokens_details"]["cached_tokens"],
            "cache_write_tokens": u["prompt_tokens_details"]["cache_write_tokens"],
            "output_tokens": u["completion_tokens"],
            "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"],
        },
    ),
    (
        "together",
        "https://api.together.xyz/v1/chat/completions",
        catalog.TOGETHER_CHAT_USAGE,
        lambda u: _plain(u, u["cached_tokens"]),
    ),
    (
        "fireworks",
        "https://api.fireworks.ai/inference/v1/chat/completions",
        catalog.FIREWORKS_CHAT_USAGE,
        lambda u: _plain(u, u["prompt_tokens_details"]["cached_tokens"]),
    ),
    (
        "cerebras",
        "https://api.cerebras.ai/v1/chat/completions",
        catalog.CEREBRAS_CHAT_USAGE,
        lambda u: _plain(u, u["prompt_tokens_details"]["cached_tokens"]),
    ),
    (
        "perplexity",
        "https://api.perplexity.ai/chat/completions",
        catalog.PERPLEXITY_CHAT_USAGE,
        lambda u: {
            "input_tokens": u["prompt_tokens"],
            "cache_read_tokens": 0,
            "output_tokens": u["completion_tokens"],
            "reasoning_tokens": u["reasoning_tokens"],
        },
    ),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(
    ("provider", "url", "raw", "expect"), COMPATIBLE, ids=[c[0] for c in COMPATIBLE]
)
def test_openai_compatible_providers_with_curl(
    meter: Meter,
    project: str,
    provider: str,
    url: str,
    raw: dict[str, Any],
    expect: Any,
    stream: bool,
) -> None:
    done = curl_json(meter, project, url, chat_body("some-model", stream))
    assert done.returncode == 0, done.stderr
    (row,) = meter.wait_rows(project, 1)
    assert row["provider"] == provider
    expected = {"cache_write_tokens": 0, "reasoning_tokens": None, **expect(raw)}
    assert {key: row[key] for key in expected} == expected
    assert row["tokens_complete"] == 1
    if provider == "openrouter":
        assert row["provider_cost_usd"] == str(raw["cost"])
    if provider == "perplexity":
        assert row["web_search_requests"] == raw["num_search_queries"]
        assert row["provider_cost_usd"] == str(raw["cost"]["total_cost"])


GEMINI = "https://generativelanguage.googleapis.com"


@pytest.mark.parametrize(
    ("path", "stream"),
    [
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", True),  # JSON-array stream
        ("/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse", True),
        ("/v1alpha/models/gemini-2.5-flash:generateContent", False),
    ],
)
def test_gemini_wire_with_curl(meter: Meter, project: str, path: str, stream: bool) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    done = curl_json(meter, project, GEMINI + path, body, "x-goog-api-key: AIza-secret")
    assert done.returncode == 0, done.stderr
    raw = catalog.GEMINI_USAGE
    (row,) = meter.wait_rows(project, 1)
    assert row["input_tokens"] == (
        raw["promptTokenCount"] + raw["toolUsePromptTokenCount"] - raw["cachedContentTokenCount"]
    )
    assert row["output_tokens"] == raw["candidatesTokenCount"] + raw["thoughtsTokenCount"]
    assert row["stream"] == stream and row["tokens_complete"] == 1
    assert row["model_requested"] == "gemini-2.5-flash"


def test_gemini_code_assist_with_curl(meter: Meter, project: str) -> None:
    body = {
        "model": "gemini-2.5-pro",
        "project": "p-123",
        "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    }
    url = "https://cloudcode-pa.googleapis.com/v1internal:streamGenerateContent?alt=sse"
    done = curl_json(meter, project, url, body)
    assert done.returncode == 0, done.stderr
    raw = catalog.CODE_ASSIST_USAGE
    (row,) = meter.wait_rows(project, 1)
    assert (row["host"], row["provider"]) == ("cloudcode-pa.googleapis.com", "google")
    assert row["cache_read_tokens"] == raw["cachedContentTokenCount"]
    assert row["output_tokens"] == raw["candidatesTokenCount"] + raw["thoughtsTokenCount"]
    assert row["model"] == "gemini-2.5-pro"


def test_gemini_count_tokens_and_embeddings(meter: Meter, project: str) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    count = curl_json(meter, project, GEMINI + "/v1beta/models/gemini-2.5-flash:countTokens", body)
    embed = curl_json(
        meter,
        project,
        GEMINI + "/v1beta/models/text-embedding-004:embedContent",
        {"content": {"parts": [{"text": "hi"}]}},
    )
    assert count.returncode == 0 and embed.returncode == 0
    rows = {row["api"]: row for row in meter.wait_rows(project, 2)}
    assert rows["count_tokens"]["cost_nanousd"] == 0
    # The Developer API returns no token counts for embeddings: unknown, never zero.
    assert rows["embed_content"]["input_tokens"] is None


def test_legacy_completions_with_curl(meter: Meter, project: str) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "stream": True}
    done = curl_json(meter, project, "https://api.openai.com/v1/completions", body)
    assert done.returncode == 0, done.stderr
    assert '"usage"' not in done.stdout  # the client did not ask for usage: none reaches it
    raw = catalog.OPENAI_COMPLETIONS_USAGE
    (row,) = meter.wait_rows(project, 1)
    assert (row["input_tokens"], row["output_tokens"]) == (
        raw["prompt_tokens"],
        raw["completion_tokens"],
    )
