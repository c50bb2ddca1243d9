"""Where the bundled catalogue is known to be wrong, the published price, with its source.

Each entry is checked against the provider's published prices by tests/pricing
(test_published_prices.py, test_corrections.py). A correction replaces the catalogue's price
where it applies; a user's override still wins, and its discount or missing kinds build on the
corrected price. Rows say so in `price_source` (`correction:<name> (<source>)`).
Remove an entry once the catalogue has the right price for its whole date range.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from .overrides import PriceOverride

_DEEPSEEK = "api-docs.deepseek.com/quick_start/pricing"
_OPENAI = "openai.com/api/pricing"
_XAI = "docs.x.ai/docs/models"

CORRECTIONS: tuple[PriceOverride, ...] = (
    # DeepSeek V3.1 (from 2025-09-05) and V3.2-Exp (from 2025-09-29) replaced the V3 prices and
    # ended the off-peak discount; the catalogue still has the V3 prices with off-peak windows.
    *(
        PriceOverride(
            name=f"deepseek-v3.1-{model}",
            provider="deepseek",
            model=model,
            input_mtok=Decimal("0.56"),
            cache_read_mtok=Decimal("0.07"),
            output_mtok=Decimal("1.68"),
            effective_from=date(2025, 9, 5),
            effective_until=date(2025, 9, 29),
            correction_source=_DEEPSEEK,
        )
        for model in ("deepseek-chat", "deepseek-reasoner")
    ),
    *(
        PriceOverride(
            name=f"deepseek-v3.2-{model}",
            provider="deepseek",
            model=model,
            input_mtok=Decimal("0.28"),
            cache_read_mtok=Decimal("0.028"),
            output_mtok=Decimal("0.42"),
            effective_from=date(2025, 9, 29),
            correction_source=_DEEPSEEK,
        )
        for model in ("deepseek-chat", "deepseek-reasoner")
    ),
    # Long context: the whole request at the higher rate once the prompt passes the threshold;
    # the catalogue has no tier for these models.
    PriceOverride(
        name="claude-sonnet-4-long-context",
        provider="anthropic",
        model="claude-sonnet-4-0",
        input_mtok=Decimal("6"),
        output_mtok=Decimal("22.50"),
        cache_read_mtok=Decimal("0.60"),
        cache_write_mtok=Decimal("7.50"),
        cache_write_1h_mtok=Decimal("12"),
        above_prompt_tokens=200_000,
        correction_source="claude.com/pricing",
    ),
    PriceOverride(
        name="grok-4-long-context",
        provider="xai",
        model="grok-4-0709",
        input_mtok=Decimal("6"),
        output_mtok=Decimal("30"),
        cache_read_mtok=Decimal("1.50"),
        above_prompt_tokens=128_000,
        correction_source=_XAI,
    ),
    *(
        PriceOverride(
            name=f"{model}-long-context",
            provider="xai",
            model=model,
            input_mtok=Decimal("0.40"),
            output_mtok=Decimal("1"),
            cache_read_mtok=Decimal("0.10"),
            above_prompt_tokens=128_000,
            correction_source=_XAI,
        )
        for model in ("grok-4-fast-reasoning", "grok-4-fast-non-reasoning")
    ),
    # o3 launched at $10 input, $2.50 cached, $40 output; the catalogue has $0.50 cached.
    PriceOverride(
        name="o3-launch-price",
        provider="openai",
        model="o3",
        input_mtok=Decimal("10"),
        cache_read_mtok=Decimal("2.50"),
        output_mtok=Decimal("40"),
        effective_until=date(2025, 6, 10),
        correction_source=_OPENAI,
    ),
)
