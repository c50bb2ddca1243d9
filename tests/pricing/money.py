"""Arithmetic for expected costs, written independently of the code under test.

Expected values are worked out from published prices the way a person would on paper:
tokens x USD per million tokens, searches x USD per thousand, summed exactly, then rounded once
to integer nano-USD (half to even).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

MILLION = Decimal(1_000_000)
THOUSAND = Decimal(1_000)
HALF = Decimal("0.5")


@dataclass(frozen=True)
class Published:
    """A provider's published prices for one model, USD per million tokens (as strings, so they
    are exact). ``write_5m`` / ``write_1h``: cache writes by lifetime; None = not offered."""

    input: str
    output: str
    cache_read: str | None = None
    write_5m: str | None = None
    write_1h: str | None = None


def usd(
    p: Published,
    *,
    inp: int = 0,
    read: int = 0,
    w5: int = 0,
    w1h: int = 0,
    out: int = 0,
    factor: Decimal = Decimal(1),
) -> Decimal:
    """Exact USD for token counts at published prices, times ``factor`` (0.5 for batch)."""
    total = Decimal(inp) * Decimal(p.input) + Decimal(out) * Decimal(p.output)
    if read:
        assert p.cache_read is not None
        total += Decimal(read) * Decimal(p.cache_read)
    if w5:
        assert p.write_5m is not None
        total += Decimal(w5) * Decimal(p.write_5m)
    if w1h:
        assert p.write_1h is not None
        total += Decimal(w1h) * Decimal(p.write_1h)
    return total * factor / MILLION


def per_thousand(count: int, price: str) -> Decimal:
    """Exact USD for per-call charges priced per 1000 (web searches)."""
    return Decimal(count) * Decimal(price) / THOUSAND


def nano(amount: Decimal) -> int:
    """The single rounding: USD to integer nano-USD, half to even."""
    return int((amount * 10**9).to_integral_value(rounding=ROUND_HALF_EVEN))
