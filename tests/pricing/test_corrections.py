"""Halton Meter's corrections to the catalogue, checked against the published prices.

DeepSeek (api-docs.deepseek.com/quick_start/pricing, news 2025-09-05 and 2025-09-29):
V3.1 from 2025-09-05: $0.56 cache miss, $0.07 cache hit, $1.68 output per million tokens, for
deepseek-chat and deepseek-reasoner alike, no off-peak discount; V3.2-Exp from 2025-09-29:
$0.28 / $0.028 / $0.42.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from halton_meter.pricing import PriceOverride, price_call
from halton_meter.providers.base import Usage

V3_1 = {"miss": Decimal("0.56"), "hit": Decimal("0.07"), "out": Decimal("1.68")}
V3_2 = {"miss": Decimal("0.28"), "hit": Decimal("0.028"), "out": Decimal("0.42")}


def nano(prices: dict[str, Decimal], miss: int, hit: int, out: int) -> int:
    usd = (prices["miss"] * miss + prices["hit"] * hit + prices["out"] * out) / 1_000_000
    return int(usd * 10**9)


@pytest.mark.parametrize("model", ["deepseek-chat", "deepseek-reasoner"])
@pytest.mark.parametrize(
    ("moment", "prices", "name"),
    [
        # 17:00 UTC was inside the old off-peak window (16:30-00:30): no discount any more.
        (datetime(2025, 9, 10, 17, 0, tzinfo=UTC), V3_1, "v3.1"),
        (datetime(2025, 9, 28, 23, 59, tzinfo=UTC), V3_1, "v3.1"),
        (datetime(2025, 9, 29, 0, 0, tzinfo=UTC), V3_2, "v3.2"),
        (datetime(2026, 6, 1, 12, 0, tzinfo=UTC), V3_2, "v3.2"),
    ],
)
def test_deepseek_prices_after_the_v3_era(
    model: str, moment: datetime, prices: dict[str, Decimal], name: str
) -> None:
    usage = Usage(
        input_tokens=4000, cache_read_tokens=9000, cache_write_tokens=0, output_tokens=1500
    )
    quote = price_call(provider="deepseek", model=model, usage=usage, requested_at=moment)
    assert quote.cost_nanousd == nano(prices, 4000, 9000, 1500)
    assert quote.price_source is not None
    assert quote.price_source.startswith(f"correction:deepseek-{name}-{model} ")


def test_a_users_override_wins_over_a_correction() -> None:
    mine = PriceOverride(
        name="deal",
        provider="deepseek",
        model="deepseek-*",
        input_mtok=Decimal("0.1"),
        output_mtok=Decimal("0.2"),
        cache_read_mtok=Decimal("0.01"),
    )
    quote = price_call(
        provider="deepseek",
        model="deepseek-chat",
        usage=Usage(input_tokens=1_000_000, cache_read_tokens=0, output_tokens=1_000_000),
        requested_at=datetime(2026, 1, 5, tzinfo=UTC),
        overrides=(mine,),
    )
    assert quote.cost_nanousd == 300_000_000  # $0.10 + $0.20
    assert quote.price_source == "override:deal"


def test_a_discount_applies_to_the_corrected_price_not_the_stale_catalogue() -> None:
    """DeepSeek V3.2, 1M input + 1M output on 2025-10-15: $0.28 + $0.42 = $0.70; 10% off is
    $0.63 (the catalogue's stale V3 prices would give something else)."""
    deal = PriceOverride(
        name="deal", provider="deepseek", model="deepseek-chat", discount_pct=Decimal("10")
    )
    quote = price_call(
        provider="deepseek",
        model="deepseek-chat",
        usage=Usage(input_tokens=1_000_000, cache_read_tokens=0, output_tokens=1_000_000),
        requested_at=datetime(2025, 10, 15, 12, tzinfo=UTC),
        overrides=(deal,),
    )
    assert quote.cost_nanousd == 630_000_000
    assert quote.price_source is not None
    assert quote.price_source.startswith("override:deal (-10% on correction:deepseek-v3.2")


def test_a_partial_override_falls_back_on_the_corrected_long_context_price() -> None:
    """Claude Sonnet 4 with a 300k-token prompt: the user prices output only ($20); input falls
    back on the long-context correction ($6 per million, the whole request above 200k)."""
    deal = PriceOverride(
        name="out-only", provider="anthropic", model="claude-sonnet-4*", output_mtok=Decimal("20")
    )
    quote = price_call(
        provider="anthropic",
        model="claude-sonnet-4-20250514",
        usage=Usage(
            input_tokens=300_000, cache_read_tokens=0, cache_write_tokens=0, output_tokens=1000
        ),
        requested_at=datetime(2026, 1, 5, tzinfo=UTC),
        overrides=(deal,),
    )
    assert quote.cost_nanousd == (300_000 * 6 + 1000 * 20) * 1000
    assert quote.price_source is not None
    assert "correction:claude-sonnet-4-long-context" in quote.price_source


def test_corrections_are_data_read_by_the_overrides_parser() -> None:
    """corrections.toml goes through parse_overrides: a typo or a missing source is refused,
    and each entry keeps its source for `price_source`."""
    from halton_meter.pricing.corrections import CORRECTIONS, load_corrections
    from halton_meter.pricing.overrides import OverrideError

    sources = {c.name: c.source for c in CORRECTIONS}
    assert sources["o3-launch-price"] == "correction:o3-launch-price (openai.com/api/pricing)"
    entry = '[[corrections]]\nname = "x"\nprovider = "openai"\nmodel = "o3"\ninput_mtok = "1"\n'
    with pytest.raises(OverrideError, match="source"):
        load_corrections(entry)
    with pytest.raises(OverrideError, match="did you mean 'input_mtok'"):
        load_corrections(entry.replace("input_mtok", "imput_mtok") + 'source = "s"\n')
    (parsed,) = load_corrections(entry + 'source = "s"\nabove_prompt_tokens = 10\n')
    assert (parsed.input_mtok, parsed.above_prompt_tokens) == (Decimal(1), 10)
    # A user's [[pricing.overrides]] may not use the corrections-only keys.
    from halton_meter.pricing import parse_overrides

    with pytest.raises(OverrideError, match="unknown key"):
        parse_overrides([{"provider": "openai", "model": "o3", "source": "s"}], lambda i, k: None)
