"""Where the bundled catalogue is known to be wrong, the published price, with its source.

Each entry is checked by a test against the provider's published price page
(tests/pricing/test_published_prices.py). They apply after the user's own overrides and before
the catalogue, and rows they price say so in `price_source` (`correction:<name> (<source>)`).
Remove an entry once the catalogue has the right price for its whole date range.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from .overrides import PriceOverride

_DEEPSEEK = "api-docs.deepseek.com/quick_start/pricing"
_OPENAI = "openai.com/api/pricing"

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
