"""The clouds' SDKs through `halton-meter run`: Amazon Bedrock (boto3, AnthropicBedrock),
Google Vertex AI (AnthropicVertex, google-genai) and Azure OpenAI (AzureOpenAI). Each call
yields exactly one row, checked field by field against usage and cost worked out here from the
fake's raw numbers and the clouds' published per-token prices (never from the catalogue).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.conftest import Meter
from tests.fakeupstream import catalog
from tests.test_clients import metered, nano, usage_of

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
