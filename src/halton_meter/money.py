"""Money is integer nano-USD everywhere; these turn it into exact decimals and display text."""

from __future__ import annotations

from decimal import Decimal

NANO_PER_USD = 10**9


def usd(nanousd: int) -> Decimal:
    """Exact dollars: Decimal division by a power of ten never rounds."""
    return Decimal(nanousd).scaleb(-9)


def usd_string(nanousd: int | None) -> str | None:
    """Exact decimal string for JSON (`"0.001234500"`), None when unpriced."""
    if nanousd is None:
        return None
    return f"{usd(nanousd):f}"


def format_usd(nanousd: int | None) -> str:
    """Terminal display: 6 decimals under $1, 2 above; unpriced is never shown as $0."""
    if nanousd is None:
        return "unpriced"
    amount = usd(nanousd)
    if abs(amount) < 1:
        return f"${amount:.6f}"
    return f"${amount:,.2f}"
