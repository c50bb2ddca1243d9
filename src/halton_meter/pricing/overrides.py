"""User price overrides (``[[pricing.overrides]]``): the type, its validation, and matching.

An override either gives explicit per-million-token prices (a negotiated rate card) or a
``discount_pct`` off the catalogue price, for one provider and a model glob, optionally only
between two dates. Validation names the entry and key so a typo in config.toml is easy to find.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import Final

from .catalogue import PROVIDER_ALIASES, normalise_model

# Override price keys, in the order they are listed in messages.
PRICE_KEYS: Final = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "cache_write_1h_mtok",
    "web_search_kcount",
)
_KEYS: Final = (
    "name",
    "provider",
    "model",
    *PRICE_KEYS,
    "discount_pct",
    "effective_from",
    "effective_until",
)
# Keys only Halton Meter's own corrections have (pricing/corrections.toml).
_CORRECTION_KEYS: Final = ("source", "above_prompt_tokens")


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """One ``[[pricing.overrides]]`` entry.

    Explicit prices are flat (no long-context tiers) and apply only to the kinds they name;
    every other kind keeps the catalogue's price for that kind, and a kind with tokens but no
    price in either leaves the row unpriced. ``discount_pct`` instead scales the whole
    catalogue cost. ``effective_until`` is exclusive; both dates are UTC days.
    """

    name: str | None
    provider: str
    model: str
    input_mtok: Decimal | None = None
    output_mtok: Decimal | None = None
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    cache_write_1h_mtok: Decimal | None = None
    web_search_kcount: Decimal | None = None
    discount_pct: Decimal | None = None
    effective_from: date | None = None
    effective_until: date | None = None
    # Set for Halton Meter's own corrections to the catalogue (pricing/corrections.toml).
    correction_source: str | None = None
    # Corrections only: the entry applies to the whole request once the prompt (input + cache
    # read + cache write) passes this many tokens — the long-context rule.
    above_prompt_tokens: int | None = None

    @property
    def source(self) -> str:
        """Provenance recorded with each row this override prices."""
        if self.correction_source is not None:
            return f"correction:{self.name} ({self.correction_source})"
        return f"override:{self.name or f'{self.provider}/{self.model}'}"

    def applies(self, provider: str, names: Sequence[str], day: date, prompt: int = 0) -> bool:
        """Same provider, model glob matching one of the row's model names, day in range (and,
        for a long-context correction, a prompt above its threshold)."""
        if _provider_name(self.provider) != provider:
            return False
        if self.above_prompt_tokens is not None and prompt <= self.above_prompt_tokens:
            return False
        if self.effective_from is not None and day < self.effective_from:
            return False
        if self.effective_until is not None and day >= self.effective_until:
            return False
        pattern = self.model.strip().lower()
        return any(fnmatchcase(name, pattern) for name in names)


class OverrideError(ValueError):
    """A config error in one override entry. ``index`` is 0-based; ``key`` is None when the
    problem is the entry as a whole; ``line`` is where ``locate`` found it, if it could."""

    def __init__(
        self,
        index: int,
        key: str | None,
        problem: str,
        line: int | None = None,
        table: str = "pricing.overrides",
    ):
        self.index = index
        self.key = key
        self.problem = problem
        self.line = line
        where = f"[[{table}]] entry {index + 1}"
        if key is not None:
            where += f", key {key!r}"
        if line is not None:
            where += f" (line {line})"
        super().__init__(f"{where}: {problem}")


def _provider_name(provider: str) -> str:
    name = provider.strip().lower()
    return PROVIDER_ALIASES.get(name, name)


def override_names(model: str, catalogue_id: str | None) -> tuple[str, ...]:
    """The names an override's glob is tried against: the model as the response named it
    (lower case, no ``models/``), without a vendor prefix, and the catalogue id it matched."""
    name = normalise_model(model)
    names = [name]
    if "/" in name:
        names.append(name.rsplit("/", 1)[1])
    if catalogue_id is not None and catalogue_id.lower() not in names:
        names.append(catalogue_id.lower())
    return tuple(names)


def select_override(
    overrides: Sequence[PriceOverride],
    provider: str,
    model: str,
    catalogue_id: str | None,
    day: date,
    prompt: int = 0,
) -> PriceOverride | None:
    """The first override that applies (config order decides between overlapping ones)."""
    names = override_names(model, catalogue_id)
    for override in overrides:
        if override.applies(provider, names, day, prompt):
            return override
    return None


# --- validation -------------------------------------------------------------------------------


def _decimal(value: object) -> Decimal | None:
    """A TOML number (or a decimal string, for exact prices) as an exact Decimal."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(int(value))
    if isinstance(value, float):
        # repr gives the shortest text that round-trips: 3.75 -> Decimal("3.75"), not the binary
        # expansion of the float.
        return Decimal(repr(float(value))) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip().replace("_", ""))
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None


def _day(value: object) -> date | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return date(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return str(value).strip()
    return None


def parse_overrides(
    raw: Sequence[object],
    locate: Callable[[int, str | None], int | None],
    *,
    corrections: bool = False,
) -> tuple[PriceOverride, ...]:
    """Validate raw ``[[pricing.overrides]]`` tables; raise OverrideError on the first problem.

    ``locate(index, key)`` returns the config line of an entry (key None) or of one of its keys,
    for the message; it may return None. ``corrections`` reads Halton Meter's own
    ``[[corrections]]`` instead: ``name`` and ``source`` required, ``above_prompt_tokens``
    allowed.
    """
    return tuple(_parse_entry(index, entry, locate, corrections) for index, entry in enumerate(raw))


def _parse_entry(
    index: int,
    entry: object,
    locate: Callable[[int, str | None], int | None],
    corrections: bool,
) -> PriceOverride:
    table = "corrections" if corrections else "pricing.overrides"
    allowed = (*_KEYS, *_CORRECTION_KEYS) if corrections else _KEYS

    def fail(key: str | None, problem: str) -> OverrideError:
        return OverrideError(index, key, problem, locate(index, key), table)

    if not isinstance(entry, Mapping):
        raise fail(None, "must be a table with provider, model and prices")
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise fail(str(key), f"unknown key{hint} (allowed: {', '.join(allowed)})")

    provider = _text(entry.get("provider"))
    if provider is None:
        raise fail("provider", "required: a provider name such as 'anthropic' or 'openai'")
    model = _text(entry.get("model"))
    if model is None:
        raise fail("model", "required: a model name or glob such as 'claude-sonnet-4-5*'")
    name: str | None = None
    if "name" in entry:
        name = _text(entry["name"])
        if name is None:
            raise fail("name", "must be a non-empty string")

    prices: dict[str, Decimal] = {}
    for key in PRICE_KEYS:
        if key not in entry:
            continue
        price = _decimal(entry[key])
        if price is None:
            raise fail(key, "must be a number (USD per million tokens; searches: per 1000)")
        if price < 0:
            raise fail(key, "must not be negative")
        prices[key] = price

    discount: Decimal | None = None
    if "discount_pct" in entry:
        discount = _decimal(entry["discount_pct"])
        if discount is None:
            raise fail("discount_pct", "must be a number between 0 and 100")
        if not 0 <= discount <= 100:
            raise fail("discount_pct", f"must be between 0 and 100, not {discount}")
        if prices:
            given = ", ".join(prices)
            raise fail("discount_pct", f"give either discount_pct or prices, not both ({given})")
    elif not prices:
        raise fail(None, f"give at least one price ({', '.join(PRICE_KEYS)}) or discount_pct")

    days: dict[str, date | None] = {}
    for key in ("effective_from", "effective_until"):
        days[key] = None
        if key in entry:
            days[key] = _day(entry[key])
            if days[key] is None:
                raise fail(key, "must be a date such as 2025-07-01 (a day, not a time)")
    start, end = days["effective_from"], days["effective_until"]
    if start is not None and end is not None and end <= start:
        raise fail("effective_until", f"must be after effective_from ({start.isoformat()})")

    source: str | None = None
    above: int | None = None
    if corrections:
        source = _text(entry.get("source"))
        if name is None or source is None:
            raise fail(None, "a correction needs a name and the source of its price")
        if "above_prompt_tokens" in entry:
            above = entry["above_prompt_tokens"]
            if isinstance(above, bool) or not isinstance(above, int) or above < 0:
                raise fail("above_prompt_tokens", "must be a whole number of tokens")

    return PriceOverride(
        name=name,
        provider=_provider_name(provider),
        model=model.lower(),
        input_mtok=prices.get("input_mtok"),
        output_mtok=prices.get("output_mtok"),
        cache_read_mtok=prices.get("cache_read_mtok"),
        cache_write_mtok=prices.get("cache_write_mtok"),
        cache_write_1h_mtok=prices.get("cache_write_1h_mtok"),
        web_search_kcount=prices.get("web_search_kcount"),
        discount_pct=discount,
        effective_from=start,
        effective_until=end,
        correction_source=source,
        above_prompt_tokens=above,
    )
