"""Money is integer nano-USD everywhere; these turn it into exact decimals and display text."""

from __future__ import annotations

from dataclasses import dataclass
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
