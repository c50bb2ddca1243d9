"""The OpenTelemetry GenAI semantic conventions as the meter uses them: one place for the
names, so `/metrics` and the OTLP export say the same thing.

Followed: the GenAI conventions in open-telemetry/semantic-conventions-genai (status
Development, no tagged release yet; its pages link the core registry at v1.44.0), read in
December 2026: `gen_ai.client.token.usage` (histogram, `{token}`, `gen_ai.token.type`
`input`/`output`), `gen_ai.client.operation.duration` (histogram, `s`, `error.type` on
failures), the usage counters `gen_ai.client.inference.usage.*` (input, output, and the
cache_read / cache_write / reasoning subsets, with `gen_ai.token.modality`), and the
attributes `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.response.model`, `server.address`. Cost follows the open proposal
(semantic-conventions-genai pull request 443): `gen_ai.usage.cost.currency` (ISO 4217) and
`gen_ai.usage.cost.source` (`local` | `provider`), the amount being the counter's value.
The meter's own attributes are under `halton.`: project, client, billing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

SEMCONV = "semantic-conventions-genai (Development, December 2026; core registry v1.44.0)"

TOKEN_USAGE = "gen_ai.client.token.usage"
OPERATION_DURATION = "gen_ai.client.operation.duration"
COST = "gen_ai.client.usage.cost"  # the proposal's metric; the name is ours until it lands
USAGE_COUNTERS = {
    "input": "gen_ai.client.inference.usage.input_tokens",
    "output": "gen_ai.client.inference.usage.output_tokens",
    "cache_read": "gen_ai.client.inference.usage.cache_read.input_tokens",
    "cache_creation": "gen_ai.client.inference.usage.cache_write.input_tokens",
    "reasoning": "gen_ai.client.inference.usage.reasoning.output_tokens",
}
# The advised bucket boundaries (the conventions' ExplicitBucketBoundaries).
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip

# The meter's provider names → the conventions' well-known `gen_ai.provider.name` values
# (a provider with none keeps its own name, as the conventions allow).
PROVIDER_NAMES = {
    "anthropic": "anthropic",
    "openai": "openai",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "google": "gcp.gen_ai",
    "vertex": "gcp.vertex_ai",
    "xai": "x_ai",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "perplexity": "perplexity",
    "cohere": "cohere",
}
# The meter's api names → `gen_ai.operation.name`.
OPERATION_NAMES = {
    "messages": "chat",
    "chat": "chat",
    "responses": "chat",
    "converse": "chat",
    "converse_stream": "chat",
    "invoke": "chat",
    "invoke_stream": "chat",
    "generate_content": "generate_content",
    "stream_generate_content": "generate_content",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "embed_content": "embeddings",
}


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def operation_name(api: str) -> str:
    return OPERATION_NAMES.get(api, api)


class TokenCounts(Protocol):
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def cache_read_tokens(self) -> int | None: ...
    @property
    def cache_write_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...


def _n(value: int | None) -> int:
    return value or 0


# `gen_ai.token.type` → the row's count. `input` is every prompt token, cached or not (the
# conventions count cached tokens as input); `output` is the output as recorded. The meter also
# reports the subsets under their own type values (custom values, as the conventions allow).
TOKEN_TYPES: dict[str, Callable[[TokenCounts], int]] = {
    "input": lambda r: _n(r.input_tokens) + _n(r.cache_read_tokens) + _n(r.cache_write_tokens),
    "output": lambda r: _n(r.output_tokens),
    "cache_read": lambda r: _n(r.cache_read_tokens),
    "cache_creation": lambda r: _n(r.cache_write_tokens),
    "reasoning": lambda r: _n(r.reasoning_tokens),
}


def cost_source(price_source: str | None) -> str:
    """`provider` when the response carried its own price, else `local` (our catalogue)."""
    return "provider" if price_source and price_source.startswith("provider") else "local"


def capped(values: list[str], limit: int) -> dict[str, str]:
    """Each value → itself for the first `limit` (in the order given), `other` for the rest."""
    return {value: value if index < limit else "other" for index, value in enumerate(values)}
