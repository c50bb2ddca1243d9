"""Money is integer nano-USD everywhere; these turn it into exact decimals and display text."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

NANO_PER_USD = 10**9
# The dashboard contract's unit: millicents, 1 USD = 100,000 (1 minor unit = 10,000 nano-USD).
MINOR_UNITS_PER_USD = 100_000


def usd(nanousd: int) -> Decimal:
    """Exact dollars: Decimal division by a power of ten never rounds."""
    return Decimal(nanousd).scaleb(-9)


def usd_string(nanousd: int | None) -> str | None:
    """Exact decimal string for JSON (`"0.001234500"`), None when unpriced."""
    if nanousd is None:
        return None
    return f"{usd(nanousd):f}"


def minor_units(nanousd: int | None) -> int | None:
    """Millicents, rounded half to even from the exact sum (round once, after summing)."""
    if nanousd is None:
        return None
    step = NANO_PER_USD // MINOR_UNITS_PER_USD
    return int((Decimal(nanousd) / step).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True, slots=True)
class DisplayCurrency:
    """How amounts are shown in the terminal (`[display] currency` and `usd_rate`); the ledger
    and every --json output stay in USD."""

    code: str = "USD"
    per_usd: Decimal = Decimal(1)

    def format(self, nanousd: int | None) -> str:
        """6 decimals under 1, 2 above; unpriced is never shown as 0."""
        if nanousd is None:
            return "unpriced"
        amount = usd(nanousd) * self.per_usd
        text = f"{amount:.6f}" if abs(amount) < 1 else f"{amount:,.2f}"
        return f"${text}" if self.code == "USD" else f"{text} {self.code}"


USD = DisplayCurrency()


def format_usd(nanousd: int | None) -> str:
    return USD.format(nanousd)
