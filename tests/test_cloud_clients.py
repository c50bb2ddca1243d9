"""The clouds' SDKs through `halton-meter run`: Amazon Bedrock (boto3, AnthropicBedrock),
Google Vertex AI (AnthropicVertex, google-genai) and Azure OpenAI (AzureOpenAI). Each call
yields exactly one row, checked field by field against usage and cost worked out here from the
fake's raw numbers and the clouds' published per-token prices (never from the catalogue).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import METER, FakeUpstream, Meter
from tests.fakeupstream import catalog
from tests.test_clients import curl_json, metered, nano, usage_of

# Amazon Bedrock, aws.amazon.com/bedrock/pricing (Anthropic, on-demand), Claude Sonnet 4.5,
# USD per million tokens. Global cross-region inference is priced at Anthropic's list price;
# regional and geographic (us., eu., …) profiles cost 10% more.
BEDROCK_SONNET_4_5_GLOBAL = {
    "input": "3",
    "output": "15",
    "cache_read": "0.30",
    "write_5m": "3.75",
    "write_1h": "6",
}
BEDROCK_SONNET_4_5_REGIONAL = {
    "input": "3.30",
    "output": "16.50",
    "cache_read": "0.33",
    "write_5m": "4.125",
    "write_1h": "6.60",
}


def cloud(meter: Meter, project: str, kind: str) -> dict[str, Any]:
    done = metered(meter, project, sys.executable, "-m", "tests.clients.cloud_client", kind)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def claude_on_bedrock_cost(prices: dict[str, str]) -> int:
    raw = catalog.BEDROCK_ANTHROPIC_USAGE
    one_hour = raw["cache_creation"]["ephemeral_1h_input_tokens"]
    return int(
        nano(prices["input"], raw["input_tokens"])
        + nano(prices["cache_read"], raw["cache_read_input_tokens"])
        + nano(prices["write_5m"], raw["cache_creation_input_tokens"] - one_hour)
        + nano(prices["write_1h"], one_hour)
        + nano(prices["output"], raw["output_tokens"])
    )


CLAUDE_ON_BEDROCK = {
    "input_tokens": catalog.BEDROCK_ANTHROPIC_USAGE["input_tokens"],
    "cache_read_tokens": catalog.BEDROCK_ANTHROPIC_USAGE["cache_read_input_tokens"],
    "cache_write_tokens": catalog.BEDROCK_ANTHROPIC_USAGE["cache_creation_input_tokens"],
    "cache_write_1h_tokens": catalog.BEDROCK_ANTHROPIC_USAGE["cache_creation"][
        "ephemeral_1h_input_tokens"
    ],
    "output_tokens": catalog.BEDROCK_ANTHROPIC_USAGE["output_tokens"],
    "reasoning_tokens": None,
    "web_search_requests": None,
}


def bedrock_row(
    row: dict[str, Any], api: str, model: str, *, stream: bool, region: str = "us-east-1"
) -> None:
    assert (row["provider"], row["wire"], row["api"]) == ("bedrock", "bedrock", api)
    assert row["host"] == f"bedrock-runtime.{region}.amazonaws.com"
    assert (row["model"], row["model_requested"]) == (model, model)
    assert (row["model_family"], row["cloud_region"], row["cloud_project"]) == (
        "anthropic",
        region,
        None,
    )
    assert row["stream"] == int(stream) and row["tokens_complete"] == 1
    assert (row["status"], row["http_status"], row["error_class"]) == ("ok", 200, None)
    assert row["price_source"].startswith("genai-prices ")


GLOBAL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
REGIONAL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def test_boto3_invoke_model(meter: Meter, project: str) -> None:
    seen = cloud(meter, project, "boto3_invoke")
    assert seen["usage"] == catalog.BEDROCK_ANTHROPIC_USAGE
    (row,) = meter.wait_rows(project, 1)
    bedrock_row(row, "invoke", GLOBAL, stream=False)
    assert usage_of(row) == CLAUDE_ON_BEDROCK
    assert row["response_id"] == catalog.BEDROCK_MESSAGE_ID
    assert row["user_agent"].startswith("Boto3/")
    assert row["cost_nanousd"] == claude_on_bedrock_cost(BEDROCK_SONNET_4_5_GLOBAL)
    # SigV4 credentials are forwarded, never stored: not in the ledger, its WAL or the logs.
    for path in meter.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"AKIDEXAMPLEFAKE00001" not in data, path
            assert b"AWS4-HMAC-SHA256" not in data, path


def test_boto3_invoke_model_with_response_stream(meter: Meter, project: str) -> None:
    seen = cloud(meter, project, "boto3_invoke_stream")
    assert seen["text"] == catalog.full_text(catalog.DEFAULT_EVENTS)
    assert seen["types"][0] == "message_start" and seen["types"][-1] == "message_stop"
    (row,) = meter.wait_rows(project, 1)
    bedrock_row(row, "invoke_stream", REGIONAL, stream=True)
    assert usage_of(row) == CLAUDE_ON_BEDROCK
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]
    # A us. profile is regional: 10% above the global price.
    assert row["cost_nanousd"] == claude_on_bedrock_cost(BEDROCK_SONNET_4_5_REGIONAL)


CONVERSE = catalog.BEDROCK_CONVERSE_USAGE
CONVERSE_ROW = {
    "input_tokens": CONVERSE["inputTokens"],  # excludes the cache counts, as Anthropic's
    "cache_read_tokens": CONVERSE["cacheReadInputTokens"],
    "cache_write_tokens": CONVERSE["cacheWriteInputTokens"],
    "cache_write_1h_tokens": 128,  # cacheDetails' 1h entry
    "output_tokens": CONVERSE["outputTokens"],
    "reasoning_tokens": None,
    "web_search_requests": None,
}
CONVERSE_COST = int(
    nano(BEDROCK_SONNET_4_5_GLOBAL["input"], CONVERSE["inputTokens"])
    + nano(BEDROCK_SONNET_4_5_GLOBAL["cache_read"], CONVERSE["cacheReadInputTokens"])
    + nano(BEDROCK_SONNET_4_5_GLOBAL["write_5m"], CONVERSE["cacheWriteInputTokens"] - 128)
    + nano(BEDROCK_SONNET_4_5_GLOBAL["write_1h"], 128)
    + nano(BEDROCK_SONNET_4_5_GLOBAL["output"], CONVERSE["outputTokens"])
)


@pytest.mark.parametrize(
    ("kind", "api"), [("boto3_converse", "converse"), ("boto3_converse_stream", "converse_stream")]
)
def test_boto3_converse(meter: Meter, project: str, kind: str, api: str) -> None:
    seen = cloud(meter, project, kind)
    assert seen["text"] == catalog.full_text(catalog.DEFAULT_EVENTS)
    assert seen["usage"]["outputTokens"] == CONVERSE["outputTokens"]
    (row,) = meter.wait_rows(project, 1)
    bedrock_row(row, api, GLOBAL, stream=api == "converse_stream")
    assert usage_of(row) == CONVERSE_ROW
    assert row["cost_nanousd"] == CONVERSE_COST


@pytest.mark.parametrize("kind", ["anthropic_bedrock", "anthropic_bedrock_stream"])
def test_anthropic_bedrock(meter: Meter, project: str, kind: str) -> None:
    seen = cloud(meter, project, kind)
    assert seen["usage"]["output_tokens"] == catalog.BEDROCK_ANTHROPIC_USAGE["output_tokens"]
    (row,) = meter.wait_rows(project, 1)
    streamed = kind.endswith("stream")
    bedrock_row(row, "invoke_stream" if streamed else "invoke", GLOBAL, stream=streamed)
    assert usage_of(row) == CLAUDE_ON_BEDROCK
    assert row["user_agent"].startswith("AnthropicBedrock/Python")
    assert row["cost_nanousd"] == claude_on_bedrock_cost(BEDROCK_SONNET_4_5_GLOBAL)


# Google Cloud, cloud.google.com/vertex-ai/generative-ai/pricing (Anthropic's Claude, global
# endpoint), Claude Sonnet 4.5 up to 200k input tokens, USD per million tokens.
VERTEX_SONNET_4_5_GLOBAL = {
    "input": "3",
    "output": "15",
    "cache_read": "0.30",
    "write_5m": "3.75",
    "write_1h": "6",
}
# Same page, Gemini 2.5 Flash, text: input, cached input, output (thinking included).
VERTEX_GEMINI_2_5_FLASH = {"input": "0.30", "cached": "0.03", "output": "2.50"}
VERTEX_CLAUDE = "claude-sonnet-4-5@20250929"


@pytest.mark.parametrize("kind", ["anthropic_vertex", "anthropic_vertex_stream"])
def test_anthropic_vertex(meter: Meter, project: str, kind: str) -> None:
    seen = cloud(meter, project, kind)
    raw = catalog.VERTEX_MESSAGES_USAGE
    assert seen["usage"]["output_tokens"] == raw["output_tokens"]
    (row,) = meter.wait_rows(project, 1)
    assert (row["provider"], row["wire"], row["api"]) == ("vertex", "vertex", "messages")
    assert row["host"] == "aiplatform.googleapis.com"
    assert (row["model"], row["model_requested"]) == (VERTEX_CLAUDE, VERTEX_CLAUDE)
    assert (row["model_family"], row["cloud_region"], row["cloud_project"]) == (
        "anthropic",
        "global",
        "proj-halton-test",
    )
    assert row["project"] == project  # the cloud's project is a fact, not the attribution
    assert row["stream"] == int(kind.endswith("stream")) and row["tokens_complete"] == 1
    assert (row["status"], row["http_status"]) == ("ok", 200)
    assert row["user_agent"].startswith("AnthropicVertex/Python")
    written_1h = raw["cache_creation"]["ephemeral_1h_input_tokens"]
    assert usage_of(row) == {
        "input_tokens": raw["input_tokens"],
        "cache_read_tokens": raw["cache_read_input_tokens"],
        "cache_write_tokens": raw["cache_creation_input_tokens"],
        "cache_write_1h_tokens": written_1h,
        "output_tokens": raw["output_tokens"],
        "reasoning_tokens": None,
        "web_search_requests": None,
    }
    prices = VERTEX_SONNET_4_5_GLOBAL
    assert row["cost_nanousd"] == int(
        nano(prices["input"], raw["input_tokens"])
        + nano(prices["cache_read"], raw["cache_read_input_tokens"])
        + nano(prices["write_5m"], raw["cache_creation_input_tokens"] - written_1h)
        + nano(prices["write_1h"], written_1h)
        + nano(prices["output"], raw["output_tokens"])
    )


@pytest.mark.parametrize("kind", ["genai_vertex_stream", "genai_vertex_generate"])
def test_google_genai_on_vertex(meter: Meter, project: str, kind: str) -> None:
    seen = cloud(meter, project, kind)
    raw = catalog.GEMINI_USAGE
    assert seen["prompt_token_count"] == raw["promptTokenCount"]
    (row,) = meter.wait_rows(project, 1)
    streamed = kind.endswith("stream")
    api = "stream_generate_content" if streamed else "generate_content"
    assert (row["provider"], row["wire"], row["api"]) == ("vertex", "vertex", api)
    assert row["host"] == "us-central1-aiplatform.googleapis.com"
    assert (row["model_family"], row["cloud_region"], row["cloud_project"]) == (
        "google",
        "us-central1",
        "proj-halton-test",
    )
    assert row["model"] == catalog.GEMINI_MODEL and row["tokens_complete"] == 1
    uncached = (
        raw["promptTokenCount"] + raw["toolUsePromptTokenCount"] - raw["cachedContentTokenCount"]
    )
    output = raw["candidatesTokenCount"] + raw["thoughtsTokenCount"]
    assert usage_of(row) == {
        "input_tokens": uncached,
        "cache_read_tokens": raw["cachedContentTokenCount"],
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": None,
        "output_tokens": output,
        "reasoning_tokens": raw["thoughtsTokenCount"],
        "web_search_requests": None,
    }
    prices = VERTEX_GEMINI_2_5_FLASH
    assert row["cost_nanousd"] == int(
        nano(prices["input"], uncached)
        + nano(prices["cached"], raw["cachedContentTokenCount"])
        + nano(prices["output"], output)
    )


# Azure OpenAI, azure.microsoft.com/pricing/details/cognitive-services/openai-service (Global
# deployments), USD per million tokens. GPT-4.1 (2025-04-14): input, cached input, output.
AZURE_GPT_4_1 = {"input": "2", "cached": "0.50", "output": "8"}
# text-embedding-3-small:
AZURE_EMBEDDING_3_SMALL = "0.02"


def azure_row(row: dict[str, Any], api: str, wire: str = "azure") -> None:
    assert (row["provider"], row["wire"], row["api"]) == ("azure", wire, api)
    assert row["host"] == "halton-test.openai.azure.com"
    assert row["model_family"] == "openai"
    assert (row["cloud_region"], row["cloud_project"]) == (None, None)
    assert row["status"] == "ok" and row["http_status"] == 200


@pytest.mark.parametrize("kind", ["azure_chat_stream", "azure_chat_stream_include_usage"])
def test_azure_openai_chat_stream(meter: Meter, project: str, kind: str) -> None:
    seen = cloud(meter, project, kind)
    raw = catalog.AZURE_CHAT_USAGE
    assert seen["text"] == catalog.full_text(catalog.DEFAULT_EVENTS)
    # The client sees a usage chunk only when it asked for one itself.
    totals = [usage["total_tokens"] for usage in seen["usage"]]
    assert totals == ([raw["total_tokens"]] if kind.endswith("include_usage") else [])
    (row,) = meter.wait_rows(project, 1)
    azure_row(row, "chat")
    # The deployment is not a model: the response names the model that is billed.
    assert row["model"] == catalog.AZURE_MODEL
    assert row["model_requested"] == "my-gpt41-deployment"
    assert row["stream"] == 1 and row["tokens_complete"] == 1
    cached = raw["prompt_tokens_details"]["cached_tokens"]
    assert usage_of(row) == {
        "input_tokens": raw["prompt_tokens"] - cached,  # OpenAI's prompt includes the cache
        "cache_read_tokens": cached,
        "cache_write_tokens": None,
        "cache_write_1h_tokens": None,
        "output_tokens": raw["completion_tokens"],
        "reasoning_tokens": 0,
        "web_search_requests": None,
    }
    assert row["cost_nanousd"] == int(
        nano(AZURE_GPT_4_1["input"], raw["prompt_tokens"] - cached)
        + nano(AZURE_GPT_4_1["cached"], cached)
        + nano(AZURE_GPT_4_1["output"], raw["completion_tokens"])
    )


def test_azure_openai_old_api_version_is_never_asked_for_usage(meter: Meter, project: str) -> None:
    """Before 2024-09-01-preview Azure answers `stream_options` with a 400: the request goes
    as the client sent it, and the row says its tokens are unknown (never $0)."""
    seen = cloud(meter, project, "azure_chat_stream_old_version")
    assert seen["text"] == catalog.full_text(catalog.DEFAULT_EVENTS) and seen["usage"] == []
    (row,) = meter.wait_rows(project, 1)
    azure_row(row, "chat")
    assert row["tokens_complete"] == 0
    assert row["output_tokens"] is None and row["cost_nanousd"] is None


def test_azure_openai_responses(meter: Meter, project: str) -> None:
    seen = cloud(meter, project, "azure_responses")
    raw = catalog.OPENAI_RESPONSES_USAGE
    assert seen["usage"]["output_tokens"] == raw["output_tokens"]
    (row,) = meter.wait_rows(project, 1)
    azure_row(row, "responses")
    assert row["model"] == catalog.AZURE_MODEL and row["tokens_complete"] == 1
    cached = raw["input_tokens_details"]["cached_tokens"]
    written = raw["input_tokens_details"]["cache_write_tokens"]
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        raw["input_tokens"] - cached - written,
        cached,
        written,
    )
    # Azure bills cache writes as ordinary input.
    assert row["cost_nanousd"] == int(
        nano(AZURE_GPT_4_1["input"], raw["input_tokens"] - cached)
        + nano(AZURE_GPT_4_1["cached"], cached)
        + nano(AZURE_GPT_4_1["output"], raw["output_tokens"])
    )


def test_azure_openai_embeddings(meter: Meter, project: str) -> None:
    seen = cloud(meter, project, "azure_embeddings")
    tokens = catalog.OPENAI_EMBEDDINGS_USAGE["prompt_tokens"]
    assert seen == {"dimensions": len(catalog.EMBEDDING_VECTOR), "tokens": tokens}
    (row,) = meter.wait_rows(project, 1)
    azure_row(row, "embeddings")
    assert row["model"] == catalog.OPENAI_EMBEDDING_MODEL
    assert (row["input_tokens"], row["output_tokens"]) == (tokens, 0)
    assert row["cost_nanousd"] == int(nano(AZURE_EMBEDDING_3_SMALL, tokens))


# Moonshot AI, platform.moonshot.ai/docs/pricing, kimi-k2-0905-preview, USD per million tokens:
# input (cache miss), input (cache hit), output.
KIMI_K2_0905 = {"input": "0.60", "cached": "0.15", "output": "2.50"}


def test_a_catalogue_provider_is_metered_without_configuration(meter: Meter, project: str) -> None:
    """api.moonshot.ai is in no table of ours: genai-prices lists it, so it is routed."""
    body = {"model": "kimi-k2-0905-preview", "messages": [{"role": "user", "content": "hi"}]}
    done = curl_json(meter, project, "https://api.moonshot.ai/v1/chat/completions", body)
    assert done.returncode == 0, done.stderr
    (row,) = meter.wait_rows(project, 1)
    assert (row["provider"], row["wire"], row["api"]) == ("moonshotai", "openai-chat", "chat")
    raw = catalog.OPENAI_CHAT_USAGE  # the fake's OpenAI-shaped usage for any other host
    cached = raw["prompt_tokens_details"]["cached_tokens"]
    written = raw["prompt_tokens_details"]["cache_write_tokens"]
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        raw["prompt_tokens"] - cached - written,
        cached,
        written,
    )
    assert row["tokens_complete"] == 1
    # Moonshot has no cache-write price: written tokens are billed as input.
    assert row["cost_nanousd"] == int(
        nano(KIMI_K2_0905["input"], raw["prompt_tokens"] - cached)
        + nano(KIMI_K2_0905["cached"], cached)
        + nano(KIMI_K2_0905["output"], raw["completion_tokens"])
    )


STREAM_URL = (
    "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
    "global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
)


@pytest.mark.parametrize("scenario", ["malformed", "cut-frame", "ok"])
def test_broken_event_streams_pass_through_untouched(
    meter: Meter, fake_upstream: FakeUpstream, project: str, tmp_path: Path, scenario: str
) -> None:
    """A frame with a bad CRC (`malformed`) or a last frame cut in half reaches the client
    byte for byte as the server sent it; the row says its tokens are incomplete."""
    args = ["-sS", "--fail-with-body", STREAM_URL, "--data", '{"max_tokens":9,"messages":[]}']
    args += ["-H", "content-type: application/json", "-H", f"x-fake-scenario: {scenario}"]
    proxied = metered(meter, project, "curl", *args, "-o", str(tmp_path / "proxied"))
    assert proxied.returncode == 0, proxied.stderr
    direct = subprocess.run(
        ["curl", *fake_upstream.direct_curl_args(), *args, "-o", str(tmp_path / "direct")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert direct.returncode == 0, direct.stderr
    assert (tmp_path / "proxied").read_bytes() == (tmp_path / "direct").read_bytes()
    (row,) = meter.wait_rows(project, 1)
    assert (row["provider"], row["api"], row["status"]) == ("bedrock", "invoke_stream", "ok")
    assert row["tokens_complete"] == (scenario == "ok")


def test_report_by_provider_shows_each_cloud_apart(meter: Meter, project: str) -> None:
    # Four independent clients, at the same time: each is mostly an SDK import.
    commands = [
        ("tests.clients.cloud_client", "boto3_invoke"),
        ("tests.clients.cloud_client", "anthropic_vertex"),
        ("tests.clients.cloud_client", "azure_embeddings"),
        ("tests.clients.sdk_client", "anthropic_message"),
    ]
    with ThreadPoolExecutor(len(commands)) as pool:
        runs = pool.map(lambda c: metered(meter, project, sys.executable, "-m", *c), commands)
        for done in runs:
            assert done.returncode == 0, done.stderr
    meter.wait_rows(project, 4)
    out = subprocess.run(
        [METER, "report", "--by", "provider", "--by", "family", "--project", project, "--json"],
        env=meter.run_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    groups = {
        (g["key"]["provider"], g["key"]["family"]): g["requests"]
        for g in json.loads(out.stdout)["groups"]
    }
    assert groups == {
        ("bedrock", "anthropic"): 1,
        ("vertex", "anthropic"): 1,
        ("azure", "openai"): 1,
        ("anthropic", "anthropic"): 1,  # a first-party row's family is its provider
    }
