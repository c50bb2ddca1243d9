"""``[[pricing.overrides]]``: validation that names entry and key, and how overrides price rows.

Catalogue parts of expected values use published prices (sources named next to each constant);
override parts use the prices the test configures.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from halton_meter.pricing import (
    OverrideError,
    PriceOverride,
    PriceQuote,
    catalogue_version,
    parse_overrides,
    price_call,
)
from halton_meter.providers.base import Usage

from .money import HALF, Published, nano, per_thousand, usd

CAT = catalogue_version()
AT = datetime(2025, 11, 15, 12, 0, tzinfo=UTC)

# https://docs.claude.com/en/docs/about-claude/pricing
SONNET_4_5 = Published("3", "15", cache_read="0.30", write_5m="3.75", write_1h="6")
# https://docs.x.ai/docs/models
GROK_3_MINI = Published("0.30", "0.50", cache_read="0.075")

USAGE = Usage(
    input_tokens=1000,
    cache_read_tokens=4000,
    cache_write_tokens=3000,
    cache_write_1h_tokens=1000,
    output_tokens=500,
)


def no_line(index: int, key: str | None) -> int | None:
    return None


def parse(toml: str) -> tuple[PriceOverride, ...]:
    raw = tomllib.loads(toml)["pricing"]["overrides"]
    return parse_overrides(raw, no_line)


def one(**entry: Any) -> PriceOverride:
    return parse_overrides([{"provider": "anthropic", "model": "claude-*", **entry}], no_line)[0]


def price(overrides: tuple[PriceOverride, ...] | list[PriceOverride], **kwargs: Any) -> PriceQuote:
    args: dict[str, Any] = {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5-20250929",
        "usage": USAGE,
        "requested_at": AT,
        "overrides": overrides,
    }
    args.update(kwargs)
    return price_call(**args)


# --- parsing -------------------------------------------------------------------------------


def test_parse_a_full_entry_from_toml() -> None:
    (override,) = parse(
        """
        [[pricing.overrides]]
        name = "acme-contract"
        provider = "Anthropic"
        model = "Claude-Sonnet-4-5*"
        input_mtok = 2.4
        output_mtok = 12
        cache_read_mtok = "0.24"
        cache_write_mtok = 3.0
        cache_write_1h_mtok = 4.8
        web_search_kcount = 8
        effective_from = 2025-07-01
        effective_until = 2026-07-01
        """
    )
    assert override == PriceOverride(
        name="acme-contract",
        provider="anthropic",
        model="claude-sonnet-4-5*",
        input_mtok=Decimal("2.4"),
        output_mtok=Decimal("12"),
        cache_read_mtok=Decimal("0.24"),
        cache_write_mtok=Decimal("3.0"),
        cache_write_1h_mtok=Decimal("4.8"),
        web_search_kcount=Decimal("8"),
        effective_from=date(2025, 7, 1),
        effective_until=date(2026, 7, 1),
    )
    assert override.source == "override:acme-contract"


def test_parse_a_discount_entry_and_default_name() -> None:
    (override,) = parse(
        """
        [[pricing.overrides]]
        provider = "x-ai"
        model = "grok-*"
        discount_pct = 12.5
        effective_from = "2025-01-01"
        """
    )
    assert override.provider == "xai"
    assert override.discount_pct == Decimal("12.5")
    assert override.effective_from == date(2025, 1, 1)
    assert override.source == "override:xai/grok-*"


def test_floats_become_their_shortest_decimal() -> None:
    assert one(input_mtok=0.1).input_mtok == Decimal("0.1")


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ({"provider": "anthropic", "model": "m", "input_mtk": 1}, "input_mtk", "input_mtok"),
        ({"model": "m", "input_mtok": 1}, "provider", "required"),
        ({"provider": "", "model": "m", "input_mtok": 1}, "provider", "required"),
        ({"provider": "anthropic", "input_mtok": 1}, "model", "required"),
        ({"provider": "anthropic", "model": 3, "input_mtok": 1}, "model", "required"),
        ({"provider": "anthropic", "model": "m", "name": "", "input_mtok": 1}, "name", "string"),
        ({"provider": "anthropic", "model": "m", "input_mtok": "abc"}, "input_mtok", "number"),
        ({"provider": "anthropic", "model": "m", "input_mtok": True}, "input_mtok", "number"),
        ({"provider": "anthropic", "model": "m", "output_mtok": [1]}, "output_mtok", "number"),
        ({"provider": "anthropic", "model": "m", "input_mtok": "nan"}, "input_mtok", "number"),
        ({"provider": "anthropic", "model": "m", "input_mtok": -1}, "input_mtok", "negative"),
        (
            {"provider": "anthropic", "model": "m", "cache_read_mtok": -0.01},
            "cache_read_mtok",
            "negative",
        ),
        ({"provider": "anthropic", "model": "m", "discount_pct": 150}, "discount_pct", "0 and 100"),
        ({"provider": "anthropic", "model": "m", "discount_pct": -5}, "discount_pct", "0 and 100"),
        ({"provider": "anthropic", "model": "m", "discount_pct": "x"}, "discount_pct", "number"),
        (
            {"provider": "anthropic", "model": "m", "discount_pct": 10, "input_mtok": 1},
            "discount_pct",
            "not both",
        ),
        ({"provider": "anthropic", "model": "m"}, None, "at least one price"),
        (
            {
                "provider": "anthropic",
                "model": "m",
                "input_mtok": 1,
                "effective_from": "2025-13-01",
            },
            "effective_from",
            "date",
        ),
        (
            {
                "provider": "anthropic",
                "model": "m",
                "input_mtok": 1,
                "effective_until": datetime(2025, 1, 1, 12, 0),
            },
            "effective_until",
            "not a time",
        ),
        (
            {
                "provider": "anthropic",
                "model": "m",
                "input_mtok": 1,
                "effective_from": date(2025, 6, 1),
                "effective_until": date(2025, 6, 1),
            },
            "effective_until",
            "after effective_from",
        ),
    ],
    ids=[
        "unknown-key-with-suggestion",
        "missing-provider",
        "empty-provider",
        "missing-model",
        "model-not-a-string",
        "empty-name",
        "price-not-a-number",
        "price-bool",
        "price-list",
        "price-nan",
        "negative-input",
        "negative-cache-read",
        "discount-above-100",
        "discount-below-0",
        "discount-not-a-number",
        "discount-and-prices",
        "no-price-at-all",
        "bad-date",
        "datetime-not-date",
        "until-not-after-from",
    ],
)
def test_errors_name_entry_and_key(entry: dict[str, Any], key: str | None, words: str) -> None:
    good = {"provider": "openai", "model": "gpt-*", "input_mtok": 1}
    seen: list[tuple[int, str | None]] = []

    def locate(index: int, at_key: str | None) -> int | None:
        seen.append((index, at_key))
        return 40 + index

    with pytest.raises(OverrideError) as caught:
        parse_overrides([good, entry], locate)
    error = caught.value
    assert (error.index, error.key, error.line) == (1, key, 41)
    assert seen == [(1, key)]
    assert words in error.problem
    assert str(error).startswith("[[pricing.overrides]] entry 2")
    if key is not None:
        assert repr(key) in str(error)
    assert "(line 41)" in str(error)


def test_entry_must_be_a_table() -> None:
    with pytest.raises(OverrideError) as caught:
        parse_overrides(["input_mtok = 3"], no_line)
    assert (caught.value.index, caught.value.key, caught.value.line) == (0, None, None)
    assert "table" in str(caught.value)


def test_empty_list_is_no_overrides() -> None:
    assert parse_overrides([], no_line) == ()


# --- pricing with overrides -------------------------------------------------------------------


def test_override_with_every_kind_replaces_the_catalogue() -> None:
    override = one(
        name="acme",
        input_mtok="2",
        output_mtok="10",
        cache_read_mtok="0.2",
        cache_write_mtok="2.5",
        cache_write_1h_mtok="4",
    )
    mine = Published("2", "10", cache_read="0.2", write_5m="2.5", write_1h="4")
    expected = nano(usd(mine, inp=1000, read=4000, w5=2000, w1h=1000, out=500))
    assert price([override]) == PriceQuote(expected, "override:acme", "claude-sonnet-4-5")


def test_kinds_the_override_omits_keep_the_catalogue_price() -> None:
    override = one(name="acme", input_mtok="2.4", output_mtok="12")
    expected = nano(
        Decimal(1000 * Decimal("2.4") + 500 * 12) / 1_000_000
        + usd(SONNET_4_5, read=4000, w5=2000, w1h=1000)
    )
    assert price([override]) == PriceQuote(expected, f"override:acme + {CAT}", "claude-sonnet-4-5")


def test_override_prices_a_model_the_catalogue_lacks() -> None:
    override = parse_overrides(
        [
            {
                "name": "local",
                "provider": "openai",
                "model": "ft:gpt-4.1:acme:*",
                "input_mtok": 3,
                "output_mtok": 12,
            }
        ],
        no_line,
    )
    usage = Usage(input_tokens=1000, cache_read_tokens=0, output_tokens=100)
    got = price(override, provider="openai", model="ft:gpt-4.1:acme:custom:abc123", usage=usage)
    assert got == PriceQuote(nano(Decimal(1000 * 3 + 100 * 12) / 1_000_000), "override:local", None)


def test_unknown_model_with_a_kind_nobody_prices_is_unpriced() -> None:
    override = parse_overrides(
        [{"provider": "openai", "model": "ft:*", "input_mtok": 3, "output_mtok": 12}], no_line
    )
    usage = Usage(input_tokens=1000, cache_read_tokens=500, output_tokens=100)
    got = price(override, provider="openai", model="ft:gpt-4.1:acme", usage=usage)
    assert got == PriceQuote(None, None, None)


def test_discount_scales_the_catalogue_cost() -> None:
    override = one(name="ent", discount_pct=20)
    expected = nano(usd(SONNET_4_5, inp=1000, read=4000, w5=2000, w1h=1000, out=500) * 80 / 100)
    assert price([override]) == PriceQuote(
        expected, f"override:ent (-20% on {CAT})", "claude-sonnet-4-5"
    )


def test_discount_on_top_of_batch() -> None:
    override = one(name="ent", discount_pct=10)
    base = usd(SONNET_4_5, inp=1000, read=4000, w5=2000, w1h=1000, out=500, factor=HALF)
    got = price([override], batch=True)
    assert got == PriceQuote(
        nano(base * 90 / 100), f"override:ent (-10% on {CAT} (batch -50%))", "claude-sonnet-4-5"
    )


def test_discount_needs_a_catalogue_price() -> None:
    override = one(discount_pct=10)
    assert price([override], model="claude-unknown-9") == PriceQuote(None, None, None)


def test_explicit_override_is_halved_for_batch() -> None:
    override = one(
        name="acme",
        input_mtok="2",
        output_mtok="10",
        cache_read_mtok="0.2",
        cache_write_mtok="2.5",
        cache_write_1h_mtok="4",
    )
    mine = Published("2", "10", cache_read="0.2", write_5m="2.5", write_1h="4")
    expected = nano(usd(mine, inp=1000, read=4000, w5=2000, w1h=1000, out=500, factor=HALF))
    assert price([override], batch=True) == PriceQuote(
        expected, "override:acme (batch -50%)", "claude-sonnet-4-5"
    )


def test_override_web_search_price() -> None:
    override = one(name="acme", input_mtok="3", output_mtok="15", web_search_kcount="5")
    usage = Usage(input_tokens=100, output_tokens=10, web_search_requests=4)
    expected = nano(Decimal(100 * 3 + 10 * 15) / 1_000_000 + per_thousand(4, "5"))
    assert price([override], usage=usage) == PriceQuote(
        expected, "override:acme", "claude-sonnet-4-5"
    )


@pytest.mark.parametrize(
    ("day", "overridden"),
    [
        (datetime(2025, 6, 30, 23, 59, tzinfo=UTC), False),
        (datetime(2025, 7, 1, 0, 0, tzinfo=UTC), True),  # effective_from is inclusive
        (datetime(2025, 12, 31, 23, 59, tzinfo=UTC), True),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), False),  # effective_until is exclusive
    ],
)
def test_effective_dates(day: datetime, overridden: bool) -> None:
    override = one(
        name="h2", discount_pct=50, effective_from="2025-07-01", effective_until="2026-01-01"
    )
    full = usd(SONNET_4_5, inp=1000, read=4000, w5=2000, w1h=1000, out=500)
    got = price([override], requested_at=day)
    assert got.cost_nanousd == nano(full / 2 if overridden else full)
    assert got.price_source == (f"override:h2 (-50% on {CAT})" if overridden else CAT)


def test_first_matching_override_wins() -> None:
    first = one(name="specific", model="claude-sonnet-4-5*", discount_pct=30)
    second = one(name="general", model="claude-*", discount_pct=10)
    assert price([first, second]).price_source == f"override:specific (-30% on {CAT})"
    assert price([second, first]).price_source == f"override:general (-10% on {CAT})"


def test_override_for_another_provider_does_not_apply() -> None:
    override = parse_overrides(
        [{"provider": "openrouter", "model": "*", "discount_pct": 50}], no_line
    )
    assert price(override).price_source == CAT


def test_override_glob_matches_the_catalogue_id() -> None:
    """A glob written for the catalogue id catches every dated snapshot and spelling."""
    override = one(name="sonnet", model="claude-sonnet-4-5", discount_pct=10)
    for model in ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5", "anthropic/claude-sonnet-4-5"):
        assert price([override], model=model).price_source == f"override:sonnet (-10% on {CAT})"


def test_override_provider_alias() -> None:
    override = parse_overrides(
        [{"provider": "x-ai", "model": "grok-3-mini", "discount_pct": 25}], no_line
    )
    usage = Usage(input_tokens=2000, cache_read_tokens=6000, output_tokens=1800)
    got = price(override, provider="xai", model="grok-3-mini", usage=usage)
    expected = usd(GROK_3_MINI, inp=2000, read=6000, out=1800) * 75 / 100
    assert got == PriceQuote(
        nano(expected), f"override:xai/grok-3-mini (-25% on {CAT})", "grok-3-mini"
    )


def test_provider_reported_cost_beats_an_override() -> None:
    override = one(discount_pct=50)
    got = price([override], provider_cost_usd="0.5")
    assert got == PriceQuote(500_000_000, "provider-reported", None)


def test_zero_cost_beats_an_override() -> None:
    assert price([one(input_mtok=3)], zero_cost=True) == PriceQuote(0, "free:count_tokens", None)


def test_override_on_openai_priority_without_catalogue_tier_price() -> None:
    """Explicit prices are the user's word for every tier but batch/flex, which halve them."""
    override = parse_overrides(
        [
            {
                "name": "c",
                "provider": "openai",
                "model": "gpt-4.1",
                "input_mtok": 1.8,
                "output_mtok": 7.2,
                "cache_read_mtok": 0.45,
            }
        ],
        no_line,
    )
    usage = Usage(input_tokens=1000, cache_read_tokens=1000, output_tokens=100)
    got = price(override, provider="openai", model="gpt-4.1", usage=usage, service_tier="priority")
    mine = Published("1.8", "7.2", cache_read="0.45")
    assert got == PriceQuote(nano(usd(mine, inp=1000, read=1000, out=100)), "override:c", "gpt-4.1")
    flex = price(override, provider="openai", model="gpt-4.1", usage=usage, service_tier="flex")
    assert flex == PriceQuote(
        nano(usd(mine, inp=1000, read=1000, out=100, factor=HALF)),
        "override:c (flex -50%)",
        "gpt-4.1",
    )


def test_catalogue_kinds_under_an_override_follow_the_catalogue_batch_rule() -> None:
    override = one(name="acme", input_mtok="2", output_mtok="10")
    got = price([override], batch=True)
    expected = usd(Published("2", "10"), inp=1000, out=500, factor=HALF) + usd(
        SONNET_4_5, read=4000, w5=2000, w1h=1000, factor=HALF
    )
    assert got == PriceQuote(
        nano(expected),
        f"override:acme (batch -50%) + {CAT} (batch -50%)",
        "claude-sonnet-4-5",
    )


def test_override_types_are_frozen() -> None:
    override = one(input_mtok=1)
    with pytest.raises(AttributeError):
        override.input_mtok = Decimal(2)  # type: ignore[misc]
