"""The clouds' rows priced from their own published prices: Bedrock's global and regional
inference profiles, other model families on Bedrock, Claude and Gemini on Vertex, Azure's
deployed models, and what stays unpriced (never $0).

Each row is priced as the writer prices it (`price_row` with the row's provider, wire and the
model the route names), so the provider name → catalogue mapping is part of what is tested.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from halton_meter.pricing import RowFacts, price_row
from halton_meter.providers.base import Usage

from .money import Published, nano, usd

AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
USAGE = Usage(
    input_tokens=10_000,
    cache_read_tokens=40_000,
    cache_write_tokens=3_000,
    cache_write_1h_tokens=1_000,
    output_tokens=2_000,
)
PLAIN = Usage(input_tokens=10_000, output_tokens=2_000)

# Amazon Bedrock, aws.amazon.com/bedrock/pricing. Claude Sonnet 4.5: global cross-region
# inference at Anthropic's list price; geographic (us., eu., …) and in-region 10% more.
BEDROCK_SONNET_4_5_GLOBAL = Published("3", "15", cache_read="0.30", write_5m="3.75", write_1h="6")
BEDROCK_SONNET_4_5_REGIONAL = Published(
    "3.30", "16.50", cache_read="0.33", write_5m="4.125", write_1h="6.60"
)
# Claude 3 Haiku (one price everywhere), Amazon Nova Pro, Meta Llama 3.3 70B Instruct.
BEDROCK_HAIKU_3 = Published("0.25", "1.25")
BEDROCK_NOVA_PRO = Published("0.80", "3.20")
BEDROCK_LLAMA_3_3_70B = Published("0.72", "0.72")
# Google Cloud, cloud.google.com/vertex-ai/generative-ai/pricing: Claude Sonnet 4.5 (global
# endpoint, up to 200k input tokens) and Gemini 2.5 Flash (text).
VERTEX_SONNET_4_5 = Published("3", "15", cache_read="0.30", write_5m="3.75", write_1h="6")
VERTEX_GEMINI_2_5_FLASH = Published("0.30", "2.50", cache_read="0.03")
# Azure OpenAI, azure.microsoft.com/pricing/details/cognitive-services/openai-service, Global:
# GPT-4o (2024-11-20) and GPT-4.1.
AZURE_GPT_4O = Published("2.50", "10", cache_read="1.25")
AZURE_GPT_4_1 = Published("2", "8", cache_read="0.50")

PROFILE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
ARN = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/"


def cost(provider: str, wire: str, api: str, model: str, usage: Usage = USAGE) -> int | None:
    facts = RowFacts(provider, wire, api, model, usage, AT)
    return price_row(facts).cost_nanousd


def full(p: Published) -> int:
    return nano(usd(p, inp=10_000, read=40_000, w5=2_000, w1h=1_000, out=2_000))


@pytest.mark.parametrize(
    ("model", "published"),
    [
        (f"global.{PROFILE}", BEDROCK_SONNET_4_5_GLOBAL),
        (f"{ARN}global.{PROFILE}", BEDROCK_SONNET_4_5_GLOBAL),
        (f"us.{PROFILE}", BEDROCK_SONNET_4_5_REGIONAL),
        (f"eu.{PROFILE}", BEDROCK_SONNET_4_5_REGIONAL),
        (f"apac.{PROFILE}", BEDROCK_SONNET_4_5_REGIONAL),
        (PROFILE, BEDROCK_SONNET_4_5_REGIONAL),
        (f"{ARN}us.{PROFILE}", BEDROCK_SONNET_4_5_REGIONAL),
    ],
)
def test_bedrock_claude_global_and_regional(model: str, published: Published) -> None:
    assert cost("bedrock", "bedrock", "invoke_stream", model) == full(published)


@pytest.mark.parametrize(
    ("model", "published"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", BEDROCK_HAIKU_3),
        ("us.anthropic.claude-3-haiku-20240307-v1:0", BEDROCK_HAIKU_3),
        ("us.amazon.nova-pro-v1:0", BEDROCK_NOVA_PRO),
        ("meta.llama3-3-70b-instruct-v1:0", BEDROCK_LLAMA_3_3_70B),
    ],
)
def test_bedrock_other_families(model: str, published: Published) -> None:
    assert cost("bedrock", "bedrock", "converse", model, PLAIN) == nano(
        usd(published, inp=10_000, out=2_000)
    )


@pytest.mark.parametrize(
    "model",
    [
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz",
        "us.anthropic.claude-unknown-9-v1:0",
    ],
)
def test_bedrock_ids_naming_no_known_model_stay_unpriced(model: str) -> None:
    assert cost("bedrock", "bedrock", "invoke", model) is None


def test_bedrock_count_tokens_is_free() -> None:
    assert cost("bedrock", "bedrock", "count_tokens", f"us.{PROFILE}", Usage(input_tokens=9)) == 0


def test_vertex() -> None:
    assert cost("vertex", "vertex", "messages", "claude-sonnet-4-5@20250929") == full(
        VERTEX_SONNET_4_5
    )
    gemini = Usage(input_tokens=10_000, cache_read_tokens=40_000, output_tokens=2_000)
    assert cost("vertex", "vertex", "generate_content", "gemini-2.5-flash", gemini) == nano(
        usd(VERTEX_GEMINI_2_5_FLASH, inp=10_000, read=40_000, out=2_000)
    )


def test_azure_deployed_models() -> None:
    cached = Usage(input_tokens=10_000, cache_read_tokens=40_000, output_tokens=2_000)
    assert cost("azure", "azure", "chat", "gpt-4o-2024-11-20", cached) == nano(
        usd(AZURE_GPT_4O, inp=10_000, read=40_000, out=2_000)
    )
    assert cost("azure", "azure", "responses", "gpt-4.1-2025-04-14", cached) == nano(
        usd(AZURE_GPT_4_1, inp=10_000, read=40_000, out=2_000)
    )
    # A deployment name is not a model: unpriced, never $0.
    assert cost("azure", "azure", "chat", "my-gpt4o-deployment", cached) is None
