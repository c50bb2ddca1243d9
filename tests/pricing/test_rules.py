"""Engine rules that hold whatever the prices: precedence, unpriced rows, rounding, time, safety.

Prices used for expectations are published ones (sources named next to each constant).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from halton_meter.pricing import PriceQuote, catalogue_version, price_call
from halton_meter.providers.base import Usage

from .money import Published, nano, usd

CAT = catalogue_version()
AT = datetime(2025, 11, 15, 12, 0, tzinfo=UTC)
AFTER_TIER_ROWS = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)

# https://docs.claude.com/en/docs/about-claude/pricing
SONNET_4_5 = Published("3", "15", cache_read="0.30", write_5m="3.75", write_1h="6")
# https://platform.openai.com/docs/pricing (Flex)
GPT_5_FLEX = Published("0.625", "5", cache_read="0.0625")
# https://api-docs.deepseek.com/quick_start/pricing (until 2025-09-05; off-peak 16:30-00:30 UTC)
DEEPSEEK_CHAT = Published("0.27", "1.10", cache_read="0.07")
DEEPSEEK_CHAT_OFF_PEAK = Published("0.135", "0.55", cache_read="0.035")
# https://docs.perplexity.ai/getting-started/pricing (Sonar Deep Research: input $2, output $8,
# reasoning $3 per million tokens; citation tokens $2; searches $5 per 1000)
DEEP_RESEARCH = Published("2", "8")
DEEP_RESEARCH_REASONING = "3"

PLAIN = Usage(input_tokens=1000, cache_read_tokens=0, cache_write_tokens=0, output_tokens=500)


def quote(**kwargs: object) -> PriceQuote:
    args: dict[str, object] = {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "usage": PLAIN,
        "requested_at": AT,
    }
    args.update(kwargs)
    return price_call(**args)  # type: ignore[arg-type]


def test_zero_cost_call_is_free_with_provenance() -> None:
    assert quote(zero_cost=True) == PriceQuote(0, "free:count_tokens", None)


def test_zero_cost_even_for_an_unknown_model() -> None:
    assert quote(model="claude-unknown", zero_cost=True).cost_nanousd == 0


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("0.0105", 10_500_000),
        ("0", 0),
        (" 0.000123 ", 123_000),
        ("0.0000000005", 0),  # half a nano-dollar: half to even rounds down to 0
        ("0.0000000015", 2),  # ... and 1.5 up to 2
        ("1E-3", 1_000_000),
    ],
)
def test_provider_reported_cost_wins(reported: str, expected: int) -> None:
    assert quote(provider_cost_usd=reported) == PriceQuote(expected, "provider-reported", None)


@pytest.mark.parametrize("reported", ["", "abc", "NaN", "-0.01", "Infinity", "1,5"])
def test_unusable_reported_cost_falls_back_to_the_catalogue(reported: str) -> None:
    expected = nano(usd(SONNET_4_5, inp=1000, out=500))
    assert quote(provider_cost_usd=reported) == PriceQuote(expected, CAT, "claude-sonnet-4-5")


@pytest.mark.parametrize("model", [None, "", "claude-unknown-7", "gpt-99"])
def test_unknown_model_is_unpriced_never_zero(model: str | None) -> None:
    assert quote(model=model) == PriceQuote(None, None, None)


def test_known_model_without_usage_is_unpriced() -> None:
    assert quote(usage=Usage()) == PriceQuote(None, None, "claude-sonnet-4-5")


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=-1, output_tokens=5),
        Usage(input_tokens=10, cache_write_tokens=5, cache_write_1h_tokens=6, output_tokens=5),
        Usage(input_tokens=True, output_tokens=5),
        Usage(input_tokens="10", output_tokens=5),  # type: ignore[arg-type]
        Usage(input_tokens=1.5, output_tokens=5),  # type: ignore[arg-type]
    ],
    ids=["negative", "1h-writes-exceed-writes", "bool", "string", "float"],
)
def test_contradictory_usage_is_unpriced(usage: Usage) -> None:
    assert quote(usage=usage) == PriceQuote(None, None, "claude-sonnet-4-5")


def test_1h_writes_without_a_total_count_as_the_total() -> None:
    usage = Usage(input_tokens=10, cache_write_1h_tokens=2000, output_tokens=5)
    expected = nano(usd(SONNET_4_5, inp=10, w1h=2000, out=5))
    assert quote(usage=usage).cost_nanousd == expected


def test_reasoning_larger_than_output_is_not_billed_twice() -> None:
    usage = Usage(input_tokens=1000, output_tokens=500, reasoning_tokens=900)
    assert quote(usage=usage).cost_nanousd == nano(usd(SONNET_4_5, inp=1000, out=500))


def test_reasoning_priced_apart_when_the_model_prices_it_apart() -> None:
    usage = Usage(input_tokens=1000, output_tokens=5000, reasoning_tokens=4000)
    expected = nano(
        usd(DEEP_RESEARCH, inp=1000, out=1000)
        + Decimal(4000) * Decimal(DEEP_RESEARCH_REASONING) / 1_000_000
    )
    got = quote(provider="perplexity", model="sonar-deep-research", usage=usage)
    assert got == PriceQuote(expected, CAT, "sonar-deep-research")


def test_one_rounding_per_row() -> None:
    """gpt-5 flex: 1 input token = 625 nano, 1 cached token = 62.5 nano. Rounded once the row
    costs 687.5 -> 688 (half to even); rounding each part would give 687."""
    usage = Usage(input_tokens=1, cache_read_tokens=1, output_tokens=0)
    got = quote(
        provider="openai",
        model="gpt-5",
        usage=usage,
        requested_at=AFTER_TIER_ROWS,
        service_tier="flex",
    )
    assert got.cost_nanousd == nano(usd(GPT_5_FLEX, inp=1, read=1)) == 688


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [(1, 62), (3, 188)],  # 62.5 -> 62, 187.5 -> 188: half to even
)
def test_half_nano_rounds_to_even(tokens: int, expected: int) -> None:
    usage = Usage(cache_read_tokens=tokens)
    got = quote(
        provider="openai",
        model="gpt-5",
        usage=usage,
        requested_at=AFTER_TIER_ROWS,
        service_tier="flex",
    )
    assert got.cost_nanousd == expected


@pytest.mark.parametrize(
    ("at", "published"),
    [
        (datetime(2025, 3, 3, 16, 29, 59, tzinfo=UTC), DEEPSEEK_CHAT),
        (datetime(2025, 3, 3, 16, 30, tzinfo=UTC), DEEPSEEK_CHAT_OFF_PEAK),
        (datetime(2025, 3, 4, 0, 29, tzinfo=UTC), DEEPSEEK_CHAT_OFF_PEAK),
        (datetime(2025, 3, 4, 0, 30, tzinfo=UTC), DEEPSEEK_CHAT),
        # naive datetimes are UTC
        (datetime(2025, 3, 3, 18, 0), DEEPSEEK_CHAT_OFF_PEAK),
        # 02:00 in UTC+8 is 18:00 UTC the day before: off-peak
        (datetime(2025, 3, 4, 2, 0, tzinfo=timezone(timedelta(hours=8))), DEEPSEEK_CHAT_OFF_PEAK),
    ],
    ids=["peak-end", "off-peak-start", "off-peak-end", "peak-start", "naive-utc", "utc+8"],
)
def test_price_in_effect_at_requested_at(at: datetime, published: Published) -> None:
    usage = Usage(input_tokens=3000, cache_read_tokens=7000, output_tokens=1200)
    got = quote(provider="deepseek", model="deepseek-chat", usage=usage, requested_at=at)
    assert got.cost_nanousd == nano(usd(published, inp=3000, read=7000, out=1200))


def test_model_priced_only_per_audio_hour_is_unpriced_for_tokens() -> None:
    """Groq's whisper is priced per audio hour: token usage must not come out as $0."""
    got = quote(provider="groq", model="whisper-large-v3", usage=PLAIN)
    assert got == PriceQuote(None, None, "whisper-large-v3")


def test_web_searches_without_a_price_leave_the_row_unpriced() -> None:
    usage = Usage(input_tokens=100, output_tokens=10, web_search_requests=2)
    got = quote(provider="google", model="gemini-2.0-flash-lite", usage=usage)
    assert got == PriceQuote(None, None, "gemini-2.0-flash-lite")


def test_provider_names_are_case_insensitive_and_x_ai_is_xai() -> None:
    a = quote(provider="XAI", model="grok-3-mini")
    b = quote(provider="x-ai", model="grok-3-mini")
    assert a == b
    assert a.matched_model == "grok-3-mini"


def test_never_raises_and_never_warns() -> None:
    class Weird:
        def __getattr__(self, name: str) -> int:
            raise RuntimeError("broken usage object")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert quote(usage=Weird()) == PriceQuote(None, None, None)
        assert quote(requested_at="yesterday") == PriceQuote(None, None, None)
        assert quote(provider=None) == PriceQuote(None, None, None)
        assert quote(model="\x00/..//") == PriceQuote(None, None, None)


def test_repeated_calls_are_identical() -> None:
    first = quote()
    assert all(quote() == first for _ in range(100))
