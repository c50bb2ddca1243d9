"""The fake upstream's fixed data: usage numbers, ids, models and text, defined once.

Every usage dict here is the provider's raw wire shape (key order included), so the server
serialises it verbatim and tests compute the expected normalised values from the same numbers.
All numbers differ per field so a field mix-up in the meter shows up as a wrong total.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

# --- fixed identity: deterministic bytes, so direct vs proxied responses hash the same -------

CREATED = 1767225600  # 2026-01-01T00:00:00Z, every `created`/`created_at`
HTTP_DATE = "Thu, 01 Jan 2026 00:00:00 GMT"

ANTHROPIC_MESSAGE_ID = "msg_01FakeUpstreamMessage0001"
ANTHROPIC_REQUEST_ID = "req_011CFakeUpstreamRequest01"
ANTHROPIC_ORG_ID = "00000000-0000-4000-8000-00000000fa4e"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
ANTHROPIC_SIGNATURE = "EqQBCkYIBxgCKkBfakeSignature0000000000000000"

OPENAI_CHAT_ID = "chatcmpl-FakeUpstream0000000000001"
OPENAI_COMPLETION_ID = "cmpl-FakeUpstream0000000000001"
OPENAI_RESPONSE_ID = "resp_0fakeupstream000000000000000000000001"
OPENAI_RESPONSE_MESSAGE_ID = "msg_0fakeupstream000000000000000000000001"
OPENAI_RESPONSE_REASONING_ID = "rs_0fakeupstream000000000000000000000001"
OPENAI_RESPONSE_SEARCH_ID = "ws_0fakeupstream000000000000000000000001"
OPENAI_REQUEST_ID = "req_fakeupstream0000000000000001"
OPENAI_MODEL = "gpt-4.1-2025-04-14"
OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"
OPENAI_COMPLETIONS_MODEL = "gpt-3.5-turbo-instruct"
OPENAI_FINGERPRINT = "fp_fake000001"

GEMINI_MODEL = "gemini-2.5-flash"
GEMINI_RESPONSE_ID = "fakeUpstreamResponse0001"
CODE_ASSIST_MODEL = "gemini-2.5-pro"
CODE_ASSIST_TRACE_ID = "0123456789abcdef"

# --- text --------------------------------------------------------------------------------------

TEXT_PIECES = ["Hello", " from", " the", " fake", " upstream", ",", " one", " piece", " at", " a"]
THINKING_TEXT_PIECES = ["Let me", " think", " about", " this."]
EMBEDDING_VECTOR = [0.015625, -0.25, 0.5, 0.75, -0.0625, 0.125, 1.0, -1.0]
GEMINI_WEB_SEARCH_QUERIES = ["fake upstream query one", "fake upstream query two"]

DEFAULT_EVENTS = 5


def text_pieces(n: int) -> list[str]:
    """The `n` content deltas of a reply; cycles so any `x-fake-events` count works."""
    return [TEXT_PIECES[i % len(TEXT_PIECES)] for i in range(max(n, 1))]


def full_text(n: int) -> str:
    """What a client accumulates from `text_pieces(n)`."""
    return "".join(text_pieces(n))


# --- Anthropic Messages ------------------------------------------------------------------------

ANTHROPIC_USAGE: JSON = {
    "input_tokens": 1234,
    "cache_creation_input_tokens": 2345,
    "cache_read_input_tokens": 3456,
    "cache_creation": {"ephemeral_5m_input_tokens": 1801, "ephemeral_1h_input_tokens": 544},
    "output_tokens": 567,
    "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 1},
    "service_tier": "standard",
}
# `message_start` carries this placeholder output count; `message_delta` the real running total.
ANTHROPIC_START_OUTPUT_TOKENS = 1
# Added as `usage.output_tokens_details` when the request enables extended thinking.
ANTHROPIC_THINKING_TOKENS = 321
ANTHROPIC_COUNT_TOKENS: JSON = {"input_tokens": 2222}

# Same shape served by compatible hosts at their Messages path.
XAI_MESSAGES_USAGE: JSON = {
    "input_tokens": 1357,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 2468,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 246,
    "service_tier": "standard",
}
# Claude on Vertex AI (rawPredict/streamRawPredict): Anthropic's shape, no server tools.
VERTEX_MESSAGES_USAGE: JSON = {
    "input_tokens": 1642,
    "cache_creation_input_tokens": 736,
    "cache_read_input_tokens": 2915,
    "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 136},
    "output_tokens": 389,
}
DEEPSEEK_MESSAGES_USAGE: JSON = {
    "input_tokens": 1471,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 2582,
    "output_tokens": 369,
}

# --- OpenAI ------------------------------------------------------------------------------------

OPENAI_CHAT_USAGE: JSON = {
    "prompt_tokens": 4321,
    "completion_tokens": 876,
    "total_tokens": 5197,
    "prompt_tokens_details": {"cached_tokens": 1280, "cache_write_tokens": 640, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 345,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 7,
    },
}
OPENAI_COMPLETIONS_USAGE: JSON = {
    "prompt_tokens": 612,
    "completion_tokens": 88,
    "total_tokens": 700,
}
OPENAI_RESPONSES_USAGE: JSON = {
    "input_tokens": 5432,
    "input_tokens_details": {"cached_tokens": 2304, "cache_write_tokens": 768},
    "output_tokens": 987,
    "output_tokens_details": {"reasoning_tokens": 456},
    "total_tokens": 6419,
}
OPENAI_EMBEDDINGS_USAGE: JSON = {"prompt_tokens": 73, "total_tokens": 73}

# --- Gemini ------------------------------------------------------------------------------------

GEMINI_USAGE: JSON = {
    "promptTokenCount": 6543,
    "candidatesTokenCount": 432,
    "totalTokenCount": 8150,  # prompt + toolUsePrompt + candidates + thoughts
    "cachedContentTokenCount": 2560,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 6543}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 2560}],
    "toolUsePromptTokenCount": 77,
    "thoughtsTokenCount": 1098,
}
GEMINI_COUNT_TOKENS: JSON = {
    "totalTokens": 2718,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2718}],
}
CODE_ASSIST_USAGE: JSON = {
    "promptTokenCount": 7654,
    "candidatesTokenCount": 345,
    "totalTokenCount": 8930,
    "cachedContentTokenCount": 3072,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7654}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 3072}],
    "toolUsePromptTokenCount": 55,
    "thoughtsTokenCount": 876,
}
CODE_ASSIST_COUNT_TOKENS: JSON = {"totalTokens": 3141}

# --- OpenAI-compatible providers (providers.md section 6) --------------------------------------

# xAI: reasoning is OUTSIDE completion_tokens, so total = prompt + completion + reasoning.
XAI_CHAT_USAGE: JSON = {
    "prompt_tokens": 3210,
    "completion_tokens": 210,
    "total_tokens": 3963,
    "prompt_tokens_details": {
        "text_tokens": 3210,
        "audio_tokens": 0,
        "image_tokens": 0,
        "cached_tokens": 1600,
    },
    "completion_tokens_details": {
        "reasoning_tokens": 543,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
    "num_sources_used": 0,
    "cost_in_usd_ticks": 123456789,  # 10^10 ticks per USD
}
GROQ_CHAT_USAGE: JSON = {
    "queue_time": 0.0312,
    "prompt_tokens": 1357,
    "prompt_time": 0.0123,
    "completion_tokens": 246,
    "completion_time": 0.4567,
    "total_tokens": 1603,
    "total_time": 0.469,
    "prompt_tokens_details": {"cached_tokens": 512},
}
MISTRAL_CHAT_USAGE: JSON = {
    "prompt_tokens": 2468,
    "total_tokens": 2603,
    "completion_tokens": 135,
    "prompt_tokens_details": {"cached_tokens": 1024},
}
DEEPSEEK_CHAT_USAGE: JSON = {
    "prompt_tokens": 3690,
    "completion_tokens": 258,
    "total_tokens": 3948,
    "prompt_tokens_details": {"cached_tokens": 2816},
    "completion_tokens_details": {"reasoning_tokens": 147},
    "prompt_cache_hit_tokens": 2816,
    "prompt_cache_miss_tokens": 874,
}
OPENROUTER_CHAT_USAGE: JSON = {
    "prompt_tokens": 1470,
    "completion_tokens": 369,
    "total_tokens": 1839,
    "cost": 0.00421,
    "is_byok": False,
    "prompt_tokens_details": {"cached_tokens": 384, "cache_write_tokens": 256, "audio_tokens": 0},
    "cost_details": {
        "upstream_inference_cost": None,
        "upstream_inference_prompt_cost": 0.00294,
        "upstream_inference_completions_cost": 0.00127,
    },
    "completion_tokens_details": {"reasoning_tokens": 123, "image_tokens": 0},
}
TOGETHER_CHAT_USAGE: JSON = {
    "prompt_tokens": 1590,
    "completion_tokens": 147,
    "total_tokens": 1737,
    "cached_tokens": 640,
}
FIREWORKS_CHAT_USAGE: JSON = {
    "prompt_tokens": 1680,
    "total_tokens": 1839,
    "completion_tokens": 159,
    "prompt_tokens_details": {"cached_tokens": 768},
}
CEREBRAS_CHAT_USAGE: JSON = {
    "prompt_tokens": 1770,
    "completion_tokens": 168,
    "total_tokens": 1938,
    "prompt_tokens_details": {"cached_tokens": 896},
}
CEREBRAS_TIME_INFO: JSON = {
    "queue_time": 0.000123,
    "prompt_time": 0.00456,
    "completion_time": 0.0789,
    "total_time": 0.0912,
    "created": CREATED,
}
PERPLEXITY_CHAT_USAGE: JSON = {
    "prompt_tokens": 1860,
    "completion_tokens": 177,
    "total_tokens": 2037,
    "citation_tokens": 2109,
    "num_search_queries": 3,
    "reasoning_tokens": 99,
    "search_context_size": "low",
    "cost": {
        "input_tokens_cost": 0.0019,
        "output_tokens_cost": 0.0018,
        "request_cost": 0.005,
        "total_cost": 0.0087,
    },
}

# --- Azure OpenAI ------------------------------------------------------------------------------

AZURE_MODEL = "gpt-4.1-2025-04-14"  # what Azure's responses name, whatever the deployment
AZURE_CHAT_USAGE: JSON = {
    "completion_tokens": 318,
    "completion_tokens_details": {
        "accepted_prediction_tokens": 0,
        "audio_tokens": 0,
        "reasoning_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
    "prompt_tokens": 2741,
    "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 1152},
    "total_tokens": 3059,
}

# --- provider table ----------------------------------------------------------------------------

# Host -> provider key. Unknown hosts (127.0.0.1, localhost) act as the first-party API that
# owns the path (Anthropic for /v1/messages, OpenAI for /v1/chat/completions, ...).
PROVIDER_HOSTS: dict[str, str] = {
    "api.anthropic.com": "anthropic",
    "api.openai.com": "openai",
    "generativelanguage.googleapis.com": "gemini",
    "cloudcode-pa.googleapis.com": "code-assist",
    "api.x.ai": "xai",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together",
    "api.fireworks.ai": "fireworks",
    "api.cerebras.ai": "cerebras",
    "api.perplexity.ai": "perplexity",
    "chatgpt.com": "openai",
}

# Chat Completions usage by provider ("openai" also serves unknown hosts).
CHAT_USAGE: dict[str, JSON] = {
    "openai": OPENAI_CHAT_USAGE,
    "xai": XAI_CHAT_USAGE,
    "groq": GROQ_CHAT_USAGE,
    "mistral": MISTRAL_CHAT_USAGE,
    "deepseek": DEEPSEEK_CHAT_USAGE,
    "openrouter": OPENROUTER_CHAT_USAGE,
    "together": TOGETHER_CHAT_USAGE,
    "fireworks": FIREWORKS_CHAT_USAGE,
    "cerebras": CEREBRAS_CHAT_USAGE,
    "perplexity": PERPLEXITY_CHAT_USAGE,
    "azure": AZURE_CHAT_USAGE,
}

# Messages usage by provider; any other host serving /v1/messages uses ANTHROPIC_USAGE.
MESSAGES_USAGE: dict[str, JSON] = {
    "anthropic": ANTHROPIC_USAGE,
    "xai": XAI_MESSAGES_USAGE,
    "deepseek": DEEPSEEK_MESSAGES_USAGE,
    "vertex": VERTEX_MESSAGES_USAGE,
}

# Providers whose stream carries usage on the last chunk even without include_usage.
USAGE_WITHOUT_INCLUDE_USAGE = frozenset({"groq", "mistral", "openrouter", "together", "perplexity"})


def chat_usage(provider: str) -> JSON:
    """Chat Completions usage served for `provider` (OpenAI's for unknown providers)."""
    return CHAT_USAGE.get(provider, OPENAI_CHAT_USAGE)


def messages_usage(provider: str) -> JSON:
    """Anthropic-shaped usage served for `provider` at its Messages path."""
    return MESSAGES_USAGE.get(provider, ANTHROPIC_USAGE)


# --- rate-limit and quota headers --------------------------------------------------------------

# A Claude subscription's (OAuth) unified windows, as real 200 responses carry them
# (subscriptions.md §3.3), plus members no parser knows yet, which the meter must keep whole.
UNIFIED_5H_UTILIZATION = "0.31"
UNIFIED_7D_UTILIZATION = "0.12"
UNIFIED_UNKNOWN_MEMBERS = (
    ("anthropic-ratelimit-unified-7d_cinder-utilization", "0.05"),
    ("anthropic-ratelimit-unified-cinder-cove", "glimmer"),
)


def unified_resets(now: float | None = None) -> tuple[int, int]:
    """(5-hour reset, 7-day reset): a whole hour 4 h ahead and a whole day 3 days ahead, so a
    test's calls fall inside both windows."""
    moment = int(now if now is not None else time.time())
    return moment - moment % 3600 + 4 * 3600, moment - moment % 86400 + 3 * 86400


def anthropic_unified_headers(five_hour: str = UNIFIED_5H_UTILIZATION) -> list[tuple[str, str]]:
    reset_5h, reset_7d = unified_resets()
    return [
        ("anthropic-ratelimit-unified-status", "allowed"),
        ("anthropic-ratelimit-unified-reset", str(reset_5h)),
        ("anthropic-ratelimit-unified-representative-claim", "five_hour"),
        ("anthropic-ratelimit-unified-fallback-percentage", "0.5"),
        ("anthropic-ratelimit-unified-5h-status", "allowed"),
        ("anthropic-ratelimit-unified-5h-utilization", five_hour),
        ("anthropic-ratelimit-unified-5h-reset", str(reset_5h)),
        ("anthropic-ratelimit-unified-7d-status", "allowed"),
        ("anthropic-ratelimit-unified-7d-utilization", UNIFIED_7D_UTILIZATION),
        ("anthropic-ratelimit-unified-7d-reset", str(reset_7d)),
        ("anthropic-ratelimit-unified-overage-status", "rejected"),
        ("anthropic-ratelimit-unified-overage-disabled-reason", "org_level_disabled"),
        *UNIFIED_UNKNOWN_MEMBERS,
    ]


# An API key's standard limits (docs.claude.com/en/api/rate-limits): resets in RFC 3339.
ANTHROPIC_API_LIMITS = {"requests": (1000, 999), "input-tokens": (80000, 79000)}


def anthropic_api_limit_headers() -> list[tuple[str, str]]:
    reset = datetime.fromtimestamp(int(time.time()) + 60, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = []
    for kind, (limit, remaining) in ANTHROPIC_API_LIMITS.items():
        result += [
            (f"anthropic-ratelimit-{kind}-limit", str(limit)),
            (f"anthropic-ratelimit-{kind}-remaining", str(remaining)),
            (f"anthropic-ratelimit-{kind}-reset", reset),
        ]
    return result


# Code Assist's control plane as a Google login's Gemini CLI sees it at start-up
# (subscriptions.md §4): a free-tier user already onboarded, with a companion project, and
# `retrieveUserQuota`'s buckets (Code Assist sends no quota headers).
CODE_ASSIST_PROJECT = "fake-companion-project-42"
CODE_ASSIST_CONTROL: dict[str, Any] = {
    "loadCodeAssist": {
        "currentTier": {
            "id": "free-tier",
            "name": "Gemini Code Assist for individuals",
            "hasOnboardedPreviously": True,
        },
        "allowedTiers": [{"id": "free-tier", "isDefault": True}],
        "cloudaicompanionProject": CODE_ASSIST_PROJECT,
    },
    "retrieveUserQuota": {
        "buckets": [
            {
                "modelId": "gemini-2.5-pro",
                "tokenType": "REQUESTS",
                "remainingFraction": 0.83,
                "remainingAmount": "830",
                "resetTime": "2026-12-31T07:00:00Z",
            }
        ]
    },
}

# What a login's profile endpoints answer (Claude Code's /api/oauth/profile, Google's userinfo):
# the meter must never keep it.
ACCOUNT_EMAIL = "dev.person@example.test"
PROFILE_PATHS = ("/api/oauth/profile", "/oauth2/v2/userinfo", "/api/oauth/claude_cli/roles")


# --- Amazon Bedrock ----------------------------------------------------------------------------

BEDROCK_REQUEST_ID = "6f5c1b7e-0000-4000-8000-00000000bed0"
BEDROCK_MESSAGE_ID = "msg_bdrk_01FakeUpstreamBedrock0001"
# Claude on Bedrock: Anthropic's own usage object inside InvokeModel bodies and stream chunks.
BEDROCK_ANTHROPIC_USAGE: JSON = {
    "input_tokens": 1510,
    "cache_creation_input_tokens": 620,
    "cache_read_input_tokens": 2730,
    "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 120},
    "output_tokens": 433,
}
# Converse's TokenUsage: inputTokens excludes the cache counts; 1h writes in cacheDetails.
BEDROCK_CONVERSE_USAGE: JSON = {
    "inputTokens": 1820,
    "outputTokens": 291,
    "totalTokens": 3647,
    "cacheReadInputTokens": 1024,
    "cacheWriteInputTokens": 512,
    "cacheDetails": [{"ttl": "1h", "inputTokens": 128}, {"ttl": "5m", "inputTokens": 384}],
}
BEDROCK_COUNT_TOKENS: JSON = {"inputTokens": 1618}
# Meta Llama's own InvokeModel body counts.
BEDROCK_LLAMA_USAGE: JSON = {"prompt_token_count": 311, "generation_token_count": 97}
