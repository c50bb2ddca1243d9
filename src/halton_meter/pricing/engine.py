"""``price_call``: one ledger row's cost in integer nano-USD, with the provenance of its price.

Order of precedence: a zero-cost call (token counting) costs 0; a cost the provider reported
(OpenRouter ``usage.cost``, Perplexity, xAI ticks) wins over any computation; then the first
matching user override; then the catalogue. Anything that cannot be priced exactly is unpriced
(cost None), never $0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Final

from ..providers.base import Usage
from . import catalogue as cat
from .catalogue import (
    CACHE_READ,
    INPUT,
    OUTPUT,
    REASONING,
    REQUEST,
    TOKEN_KINDS,
    WEB_SEARCH,
    WRITE_1H,
    WRITE_5M,
)
from .corrections import CORRECTIONS
from .overrides import PriceOverride, select_override


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """A row's price. ``cost_nanousd`` None means unpriced (and then ``price_source`` is None);
    ``matched_model`` is the catalogue model id the price came from, when one did."""

    cost_nanousd: int | None
    price_source: str | None
    matched_model: str | None


UNPRICED: Final = PriceQuote(None, None, None)

# Sums of token counts times catalogue prices are exact in this precision; trapping Inexact
# turns any rounding before the final one into an exception (and so an unpriced row).
_EXACT: Final = Context(
    prec=100,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
_ROUND: Final = Context(prec=100, rounding=ROUND_HALF_EVEN)
_HALF: Final = Decimal("0.5")
_NO_RATES: Final[cat.Rates] = (None,) * 8

# Service tiers billed at the standard price. Only OpenAI and Gemini price tiers differently;
# Anthropic's "priority" is a capacity commitment billed at standard rates, Groq's "flex" and
# "performance" cost the same as on-demand.
_STANDARD_TIERS: Final = frozenset({"default", "auto", "standard", "scale", "on_demand"})
_TIERED_PROVIDERS: Final = frozenset({"openai", "google"})
# Gemini 1.x/2.x bill Google Search grounding per grounded prompt, Gemini 3 per search query.
_SEARCH_PER_PROMPT: Final = ("gemini-1", "gemini-2")


def catalogue_version() -> str:
    """The bundled catalogue, as recorded in ``price_source`` (e.g. ``genai-prices 0.2.3``)."""
    return cat.CATALOGUE


def price_call(
    *,
    provider: str,
    model: str | None,
    usage: Usage,
    requested_at: datetime,
    service_tier: str | None = None,
    batch: bool = False,
    provider_cost_usd: str | None = None,
    zero_cost: bool = False,
    overrides: Sequence[PriceOverride] = (),
) -> PriceQuote:
    """Price one call. Pure and exception-free: any failure inside makes the row unpriced
    rather than losing it on the ledger writer thread."""
    try:
        return _price_call(
            provider=provider,
            model=model,
            usage=usage,
            requested_at=requested_at,
            service_tier=service_tier,
            batch=batch,
            provider_cost_usd=provider_cost_usd,
            zero_cost=zero_cost,
            overrides=overrides,
        )
    except Exception:
        return UNPRICED


def _price_call(
    *,
    provider: str,
    model: str | None,
    usage: Usage,
    requested_at: datetime,
    service_tier: str | None,
    batch: bool,
    provider_cost_usd: str | None,
    zero_cost: bool,
    overrides: Sequence[PriceOverride],
) -> PriceQuote:
    if zero_cost:
        return PriceQuote(0, "free:count_tokens", None)
    if provider_cost_usd is not None:
        reported = _reported_nanousd(provider_cost_usd)
        if reported is not None:
            return PriceQuote(reported, "provider-reported", None)
    if not model:
        return UNPRICED

    name = provider.strip().lower()
    name = cat.PROVIDER_ALIASES.get(name, name)
    found = cat.find_model(name, model)
    at = requested_at if requested_at.tzinfo is not None else requested_at.replace(tzinfo=UTC)
    matched = found.id if found is not None else None
    measured = _counts(usage)
    if measured is None:
        return PriceQuote(None, None, matched) if found is not None else UNPRICED
    counts, prompt = measured
    day = at.astimezone(UTC).date()
    # The user's override decides; our corrections to the catalogue, where one applies, are
    # the base it falls back on (and a discount applies to), in place of the catalogue.
    override = select_override(overrides, name, model, matched, day, prompt)
    correction = select_override(CORRECTIONS, name, model, matched, day, prompt)
    if found is None and override is None and correction is None:
        return UNPRICED
    per_prompt = name == "google" and found is not None and found.id.startswith(_SEARCH_PER_PROMPT)
    if per_prompt and counts[WEB_SEARCH] > 1:
        counts = (*counts[:WEB_SEARCH], 1, *counts[WEB_SEARCH + 1 :])

    tier = _tier(name, service_tier)
    if tier == "batch":
        batch = True
    if batch:
        tier = None

    with localcontext(_EXACT):
        base = _base_rates(found, at, counts, prompt, batch, tier, correction)
        if override is None:
            if base is None:
                return PriceQuote(None, None, matched)
            rates, source = base
            total = _total(counts, rates)
        elif override.discount_pct is not None:
            if base is None:
                return PriceQuote(None, None, matched)
            rates, base_source = base
            total = _total(counts, rates)
            if total is not None:
                total = (total * (100 - override.discount_pct)).scaleb(-2)
            pct = format(override.discount_pct, "f")
            source = f"{override.source} (-{pct}% on {base_source})"
        else:  # explicit prices are the user's word for every tier but batch/flex (halved)
            total, source = _merge(override, base, counts, batch, tier)
        if total is None:
            return PriceQuote(None, None, matched)
        return PriceQuote(_nanousd(total), source, matched)


def _tier(provider: str, service_tier: str | None) -> str | None:
    """The non-standard tier to price, "batch" (Anthropic reports Message Batches that way), or
    None for the standard price."""
    if not service_tier:
        return None
    tier = service_tier.strip().lower()
    if tier == "batch":
        return tier
    if provider not in _TIERED_PROVIDERS or tier in _STANDARD_TIERS:
        return None
    return tier


def _counts(usage: Usage) -> tuple[tuple[int, ...], int] | None:
    """Billed counts per kind (see catalogue.INPUT…REQUEST) and the prompt size that picks the
    long-context tier. None when the usage has nothing to price or contradicts itself.

    Our usage is already split the way prices are (uncached input apart from cache reads and
    writes; output including reasoning), so this only splits writes by lifetime and reasoning
    out of output (priced at the output rate unless the model prices reasoning apart). Fields
    the provider did not report count as zero: a cut stream prices what it has.
    """
    values = (
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.cache_write_1h_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
        usage.web_search_requests,
    )
    if all(value is None for value in values):
        return None
    for value in values:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return None
        if value is not None and value < 0:
            return None
    inp, read, write, write_1h, out, reasoning, searches = (value or 0 for value in values)
    if write_1h > write:
        if usage.cache_write_tokens is not None:
            return None
        write = write_1h
    if reasoning > out:
        reasoning = 0  # informational and sometimes approximate: never bill more than output
    counts = (inp, read, write - write_1h, write_1h, out - reasoning, reasoning, searches, 1)
    return counts, inp + read + write


def _halved(rates: cat.Rates) -> cat.Rates:
    """Batch (and OpenAI flex) pricing: half of every token price; per-call fees unchanged."""
    return tuple(
        rate * _HALF if rate is not None and kind in TOKEN_KINDS else rate
        for kind, rate in enumerate(rates)
    )


def _catalogue_rates(
    found: cat.CatalogueModel, at: datetime, prompt: int, batch: bool, tier: str | None
) -> tuple[cat.Rates, str] | None:
    """Catalogue rates at ``at`` for the processing mode, and what to add to the provenance.

    The catalogue's batch and tier prices are used when it has them for that date. Otherwise a
    batch call (or an OpenAI/Gemini flex call) pays half the standard token prices, which is the
    providers' published rule, and the provenance says so. A priority call with no priority
    price for that date is unpriced: there is no rule to derive it from.
    """
    if batch:
        if cat.has_variant(found, cat.BATCH, at):
            return cat.rates(cat.price_table(found, at, cat.BATCH), prompt), ""
        return _halved(cat.rates(cat.price_table(found, at, None), prompt)), " (batch -50%)"
    if tier is not None:
        context = {"service_tier": tier}
        if cat.has_variant(found, context, at):
            return cat.rates(cat.price_table(found, at, context), prompt), ""
        if tier == "flex":
            return _halved(cat.rates(cat.price_table(found, at, None), prompt)), " (flex -50%)"
        return None
    return cat.rates(cat.price_table(found, at, None), prompt), ""


def _explicit_rates(
    override: PriceOverride, batch: bool, tier: str | None
) -> tuple[cat.Rates, str]:
    """The prices an override names (flat, halved for batch and flex), None for the others."""
    given: list[Decimal | None] = [None] * len(_NO_RATES)
    given[INPUT] = override.input_mtok
    given[CACHE_READ] = override.cache_read_mtok
    given[WRITE_5M] = override.cache_write_mtok
    given[WRITE_1H] = override.cache_write_1h_mtok
    given[OUTPUT] = given[REASONING] = override.output_mtok
    given[WEB_SEARCH] = override.web_search_kcount
    explicit = tuple(given)
    if batch or tier == "flex":
        return _halved(explicit), " (batch -50%)" if batch else " (flex -50%)"
    return explicit, ""


def _merge(
    override: PriceOverride,
    fallback: tuple[cat.Rates, str] | None,
    counts: tuple[int, ...],
    batch: bool,
    tier: str | None,
) -> tuple[Decimal | None, str]:
    """An explicit-price entry's prices for the kinds it names, the fallback's (a correction's
    or the catalogue's) for every other kind; unpriced if a kind with tokens has neither."""
    rates, source = _lay_over(override, fallback, counts, batch, tier)
    return _total(counts, rates), source


def _lay_over(
    entry: PriceOverride,
    fallback: tuple[cat.Rates, str] | None,
    counts: tuple[int, ...],
    batch: bool,
    tier: str | None,
) -> tuple[cat.Rates, str]:
    """The entry's prices over the fallback's, and the provenance of the mix."""
    explicit, suffix = _explicit_rates(entry, batch, tier)
    base, base_source = fallback if fallback is not None else (_NO_RATES, "")
    rates = tuple(
        mine if mine is not None else theirs for mine, theirs in zip(explicit, base, strict=True)
    )
    source = entry.source + suffix
    used = [kind for kind in (*TOKEN_KINDS, WEB_SEARCH) if counts[kind] and explicit[kind] is None]
    if base_source and (used or base[REQUEST] is not None):
        source += f" + {base_source}"
    return rates, source


def _base_rates(
    found: cat.CatalogueModel | None,
    at: datetime,
    counts: tuple[int, ...],
    prompt: int,
    batch: bool,
    tier: str | None,
    correction: PriceOverride | None,
) -> tuple[cat.Rates, str] | None:
    """The rates a row is priced at without user overrides, with their provenance: the
    catalogue's, with Halton Meter's correction laid over it where one applies."""
    resolved = _catalogue_rates(found, at, prompt, batch, tier) if found else None
    catalogue = (resolved[0], cat.CATALOGUE + resolved[1]) if resolved is not None else None
    if correction is None:
        return catalogue
    return _lay_over(correction, catalogue, counts, batch, tier)


def _total(counts: tuple[int, ...], rates: cat.Rates) -> Decimal | None:
    """Exact USD: tokens * USD/MTok + searches * USD/1000 + the per-request fee, if any."""
    tokens = Decimal(0)
    for kind in TOKEN_KINDS:
        count = counts[kind]
        if count:
            rate = rates[kind]
            if rate is None:
                return None
            tokens += count * rate
    calls = Decimal(0)
    searches = counts[WEB_SEARCH]
    if searches:
        rate = rates[WEB_SEARCH]
        if rate is None:
            return None
        calls += searches * rate
    fee = rates[REQUEST]
    if fee is not None:
        calls += fee
    return tokens.scaleb(-6) + calls.scaleb(-3)


def _nanousd(usd: Decimal) -> int:
    """The one rounding per row: exact USD to integer nano-USD, half to even."""
    with localcontext(_ROUND):
        return int(usd.scaleb(9).to_integral_value(rounding=ROUND_HALF_EVEN))


def _reported_nanousd(text: str) -> int | None:
    """A provider-reported USD amount, or None when it is not a finite non-negative number."""
    try:
        amount = Decimal(str(text).strip())
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return _nanousd(amount)
