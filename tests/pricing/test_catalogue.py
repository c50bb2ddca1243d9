"""The catalogue side: provider ids, model-name spellings, listing, and a conformance check.

The conformance check is not where expected prices come from (those are the published prices in
test_published_prices.py). It checks that the engine's fast arithmetic agrees with genai-prices'
own ``calc_price`` on every catalogue row of our providers, given our usage converted to its
convention: input counted with cache reads and writes, 1-hour writes inside all writes.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from importlib.metadata import version

import genai_prices
import pytest
from genai_prices.data import providers as genai_providers

from halton_meter.pricing import catalogue_version, list_prices, price_call, show_price
from halton_meter.pricing.catalogue import (
    PROVIDER_IDS,
    catalogue_provider,
    find_model,
    model_candidates,
    to_genai_usage,
)
from halton_meter.providers.base import Usage

NOV_2025 = datetime(2025, 11, 15, 12, 0, tzinfo=UTC)
NOV_2026 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
OFF_PEAK_2025 = datetime(2025, 3, 3, 18, 0, tzinfo=UTC)

OUR_PROVIDERS = (
    "anthropic",
    "openai",
    "google",
    "xai",
    "groq",
    "mistral",
    "deepseek",
    "openrouter",
    "together",
    "fireworks",
    "cerebras",
    "perplexity",
)


def test_catalogue_version_names_the_installed_package() -> None:
    assert catalogue_version() == f"genai-prices {version('genai-prices')}"


@pytest.mark.parametrize("ours", OUR_PROVIDERS)
def test_every_provider_maps_to_a_catalogue_provider(ours: str) -> None:
    found = catalogue_provider(ours)
    assert found is not None
    assert found.id == PROVIDER_IDS[ours]


def test_xai_is_x_ai_in_the_catalogue() -> None:
    assert PROVIDER_IDS["xai"] == "x-ai"
    assert catalogue_provider("x-ai") is catalogue_provider("xai")


def test_no_fuzzy_provider_names() -> None:
    """A custom endpoint called "my-openai-proxy" is not OpenAI."""
    assert catalogue_provider("my-openai-proxy") is None
    assert catalogue_provider("") is None


@pytest.mark.parametrize(
    ("model", "first", "also"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic/claude-sonnet-4.5", "anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-2-5-flash", "gemini-2-5-flash", "gemini-2.5-flash"),
        ("gpt-4.1-2025-04-14", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("  GPT-4o  ", "gpt-4o", "gpt-4o"),
    ],
)
def test_model_candidates(model: str, first: str, also: str) -> None:
    candidates = model_candidates(model)
    assert candidates[0] == first
    assert also in candidates


def test_dates_are_not_mangled_by_dot_dash_swaps() -> None:
    assert "gpt-4o-2024.08.06" not in model_candidates("gpt-4o-2024-08-06")
    assert "gpt-4o-2024-08-06" in model_candidates("gpt-4o-2024-08-06")


def test_fireworks_short_and_full_names() -> None:
    full = find_model("fireworks", "accounts/fireworks/models/deepseek-r1-0528")
    short = find_model("fireworks", "deepseek-r1-0528")
    assert full is not None and short is not None
    assert full.id == short.id == "deepseek-r1-0528"


def test_lookup_is_cached() -> None:
    find_model.cache_clear()
    find_model("anthropic", "claude-sonnet-4-5-20250929")
    find_model("anthropic", "claude-sonnet-4-5-20250929")
    info = find_model.cache_info()
    assert (info.hits, info.misses) == (1, 1)


# --- pricing list / show -----------------------------------------------------------------------


def test_list_prices_covers_every_catalogue_model() -> None:
    entries = list_prices(at=NOV_2025)
    assert len(entries) == sum(len(p.models) for p in genai_providers)
    keys = {
        "provider",
        "catalogue_provider",
        "model",
        "name",
        "input_mtok",
        "output_mtok",
        "cache_read_mtok",
        "cache_write_5m_mtok",
        "cache_write_1h_mtok",
        "web_search_kcount",
        "request_kcount",
        "long_context",
        "variants",
        "effective_from",
        "time_of_day_pricing",
        "context_window",
        "deprecated",
        "catalogue",
    }
    assert all(set(entry) == keys for entry in entries)
    assert entries == sorted(entries, key=lambda e: (e["provider"], e["model"]))


@pytest.mark.parametrize("name", ["xai", "x-ai", "XAI"])
def test_list_prices_for_one_provider_uses_our_name(name: str) -> None:
    entries = list_prices(name, at=NOV_2025)
    assert entries
    assert {entry["provider"] for entry in entries} == {"xai"}
    assert {entry["catalogue_provider"] for entry in entries} == {"x-ai"}


def test_list_prices_unknown_provider_is_empty() -> None:
    assert list_prices("nobody") == []


def test_show_price_sonnet_45() -> None:
    """Published: https://docs.claude.com/en/docs/about-claude/pricing."""
    entry = show_price("claude-sonnet-4-5-20250929", at=NOV_2025)
    assert entry is not None
    assert entry["provider"] == "anthropic"
    assert entry["model"] == "claude-sonnet-4-5"
    assert entry["matched_from"] == "claude-sonnet-4-5-20250929"
    prices = {k: entry[k] for k in ("input_mtok", "output_mtok", "cache_read_mtok")}
    assert {k: Decimal(v) for k, v in prices.items()} == {
        "input_mtok": Decimal("3"),
        "output_mtok": Decimal("15"),
        "cache_read_mtok": Decimal("0.30"),
    }
    assert Decimal(entry["cache_write_5m_mtok"]) == Decimal("3.75")
    assert Decimal(entry["cache_write_1h_mtok"]) == Decimal("6")
    (tier,) = entry["long_context"]
    assert tier["above_prompt_tokens"] == 200_000
    assert Decimal(tier["input_mtok"]) == Decimal("6")
    assert Decimal(tier["output_mtok"]) == Decimal("22.50")
    assert entry["variants"] == {}  # the catalogue's batch row starts 2026-10-14


def test_show_price_variants_and_dates() -> None:
    """Published: https://platform.openai.com/docs/pricing (gpt-5 flex $0.625, priority $2.50;
    o3 $2/$8 from 2025-06-10)."""
    later = show_price("gpt-5", "openai", at=NOV_2026)
    assert later is not None
    assert set(later["variants"]) == {"batch", "flex", "priority"}
    assert Decimal(later["variants"]["flex"]["input_mtok"]) == Decimal("0.625")
    assert Decimal(later["variants"]["priority"]["input_mtok"]) == Decimal("2.50")
    o3 = show_price("o3-2025-04-16", "openai", at=NOV_2025)
    assert o3 is not None
    assert o3["effective_from"] == "2025-06-10"
    assert Decimal(o3["input_mtok"]) == Decimal("2")


def test_show_price_time_of_day_and_unknown() -> None:
    deepseek = show_price("deepseek-chat", "deepseek", at=OFF_PEAK_2025)
    assert deepseek is not None
    assert deepseek["time_of_day_pricing"] is True
    assert show_price("no-such-model-anywhere") is None
    assert show_price("gpt-4.1", "anthropic") is None


# --- conformance with genai-prices' own arithmetic -----------------------------------------------

SAMPLES = (
    Usage(input_tokens=1000, cache_read_tokens=0, cache_write_tokens=0, output_tokens=500),
    Usage(
        input_tokens=800,
        cache_read_tokens=12_000,
        cache_write_tokens=3000,
        cache_write_1h_tokens=1000,
        output_tokens=400,
        web_search_requests=1,
    ),
    Usage(input_tokens=150_000, cache_read_tokens=60_000, cache_write_tokens=5000, output_tokens=7),
    Usage(input_tokens=250_000, output_tokens=100),
)


def _genai_nano(
    usage: Usage, model: str, provider_id: str, at: datetime, context: dict[str, str]
) -> tuple[int, str] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calc = genai_prices.calc_price(
                to_genai_usage(usage),
                model,
                provider_id=provider_id,
                genai_request_timestamp=at,
                price_context=context or None,
            )
    except (LookupError, ValueError):
        return None
    nano = (calc.total_price * 10**9).to_integral_value(rounding=ROUND_HALF_EVEN)
    return int(nano), calc.model.id


@pytest.mark.parametrize("ours", OUR_PROVIDERS)
def test_engine_agrees_with_genai_prices(ours: str) -> None:
    provider = catalogue_provider(ours)
    assert provider is not None
    compared = 0
    for info in provider.models:
        # Fireworks rows match only the full resource path its API echoes.
        ref = f"accounts/fireworks/models/{info.id}" if ours == "fireworks" else info.id
        for at in (NOV_2025, NOV_2026, OFF_PEAK_2025):
            table = info.get_prices(at).__dict__
            for usage in SAMPLES:
                runs: list[tuple[dict[str, str], bool, str | None]] = [({}, False, None)]
                if at is NOV_2026:
                    runs += [
                        ({"processing": "batch"}, True, None),
                        ({"service_tier": "flex"}, False, "flex"),
                        ({"service_tier": "priority"}, False, "priority"),
                    ]
                for context, batch, tier in runs:
                    theirs = _genai_nano(usage, ref, provider.id, at, context)
                    if theirs is None or theirs[1] != info.id:
                        continue  # another row answers to this id; it gets its own turn
                    mine = price_call(
                        provider=ours,
                        model=ref,
                        usage=usage,
                        requested_at=at,
                        batch=batch,
                        service_tier=tier,
                    )
                    if mine.cost_nanousd is None:
                        # Unpriced where genai-prices would silently bill a kind at $0, or a
                        # tier the catalogue does not price (genai-prices falls back to the
                        # standard price): both deliberate.
                        lacking = any(table.get(k) is None for k in ("input_mtok", "output_mtok"))
                        no_search = usage.web_search_requests and not table.get(
                            "web_searches_kcount"
                        )
                        assert lacking or no_search or context, (info.id, at, usage)
                        continue
                    # Compare where both use the catalogue's own rows; the engine's own 50 % for
                    # batch/flex without a catalogue row is covered by the published-price table.
                    if mine.price_source == catalogue_version():
                        assert mine.cost_nanousd == theirs[0], (info.id, at, usage, context)
                        compared += 1
    assert compared > 0
