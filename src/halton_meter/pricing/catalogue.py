"""The bundled genai-prices catalogue, read offline: provider ids, model lookup, per-kind rates.

Only the data shipped inside the installed ``genai_prices`` wheel is used (``genai_prices.data``),
never a snapshot that ``UpdatePrices`` may have downloaded, so a row's price depends on the
release it was written with and nothing else. Lookups are cached; rates are read straight from
the catalogue's ``ModelPrice`` objects because genai-prices' own ``calc_price`` costs ~120 µs a
call, more than the whole per-row budget.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

import genai_prices
from genai_prices.data import providers as _PROVIDERS
from genai_prices.types import (
    ModelInfo,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from ..providers.base import Usage

CATALOGUE: Final = f"genai-prices {genai_prices.__version__}"

# Our provider names (providers/hosts.py) -> genai-prices provider ids.
PROVIDER_IDS: Final[Mapping[str, str]] = {
    "anthropic": "anthropic",
    "openai": "openai",
    "google": "google",
    "xai": "x-ai",
    "groq": "groq",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
    "cerebras": "cerebras",
    "perplexity": "perplexity",
    # The clouds: a row's provider is the cloud that served (and bills) the call.
    "bedrock": "aws",
    "vertex": "google",
    "azure": "azure",
}
_OUR_NAMES: Final = {catalogue_id: ours for ours, catalogue_id in PROVIDER_IDS.items()}
# Catalogue rows some providers only list under their full resource path.
_MODEL_PREFIXES: Final[Mapping[str, str]] = {"fireworks": "accounts/fireworks/models/"}
# Spellings users may write in config for our provider names.
PROVIDER_ALIASES: Final[Mapping[str, str]] = {"x-ai": "xai", "gemini": "google"}

# Billed kinds, in the order of every rates/counts tuple in this package.
INPUT, CACHE_READ, WRITE_5M, WRITE_1H, OUTPUT, REASONING, WEB_SEARCH, REQUEST = range(8)
TOKEN_KINDS: Final = (INPUT, CACHE_READ, WRITE_5M, WRITE_1H, OUTPUT, REASONING)

# For each kind, the catalogue price keys that can price it, most specific first. This mirrors
# genai-prices' unit tree: a kind without its own price is billed at its parent's (cache reads
# at the input rate when a model has no cache price, and so on).
_CHAINS: Final[tuple[tuple[str, ...], ...]] = (
    ("input_mtok",),
    ("cache_read_mtok", "input_mtok"),
    ("cache_write_5m_mtok", "cache_write_mtok", "input_mtok"),
    ("cache_write_1h_mtok", "cache_write_mtok", "input_mtok"),
    ("output_mtok",),
    ("output_reasoning_mtok", "output_mtok"),
    ("web_searches_kcount",),
    ("requests_kcount",),
)

BATCH: Final[Mapping[str, str]] = {"processing": "batch"}

Rates = tuple[Decimal | None, ...]


@dataclass(frozen=True, slots=True)
class CatalogueModel:
    """A catalogue row found for (provider, model). ``native`` is False when the provider only
    borrows the row from a fallback provider; genai-prices ignores price variants then, so do we.
    """

    provider: Provider
    model: ModelInfo
    native: bool

    @property
    def id(self) -> str:
        return self.model.id


def catalogue_provider(provider: str) -> Provider | None:
    """Our provider name (or an exact genai-prices id) -> the catalogue's provider.

    No fuzzy matching: a custom endpoint called "my-openai-proxy" must not be priced as OpenAI.
    """
    name = provider.strip().lower()
    name = PROVIDER_IDS.get(PROVIDER_ALIASES.get(name, name), name)
    for candidate in _PROVIDERS:
        if candidate.id == name:
            return candidate
    return None


def normalise_model(model: str) -> str:
    """Lower case without Gemini's ``models/`` resource prefix: the name overrides match."""
    name = model.strip().lower()
    return name.removeprefix("models/")


_DATE_SUFFIX = re.compile(r"[-@](?:\d{8}|\d{4}-\d{2}-\d{2})$")
_DOT_VERSION = re.compile(r"(?<!\d)(\d)\.(\d)(?!\d)")
_DASH_VERSION = re.compile(r"(?<![\d.])(\d)-(\d)(?!\d)")


def model_candidates(model: str) -> tuple[str, ...]:
    """Spellings to try, in order: as named, without a vendor prefix (``anthropic/…``), with
    dots and dashes swapped in version numbers (``4.5`` ↔ ``4-5``), without a date suffix
    (``-20250929``, ``-2025-04-14``, ``@20250929``). The name as given always comes first, so a
    snapshot the catalogue prices on its own (``gpt-4o-2024-05-13``) keeps its own price.
    """
    name = normalise_model(model)
    bases = [name]
    if "/" in name:
        bases.append(name.rsplit("/", 1)[1])
    out: list[str] = []
    for base in bases:
        undated = _DATE_SUFFIX.sub("", base)
        for form in (base, undated):
            for spelling in (
                form,
                _DOT_VERSION.sub(r"\1-\2", form),
                _DASH_VERSION.sub(r"\1.\2", form),
            ):
                if spelling and spelling not in out:
                    out.append(spelling)
    return tuple(out)


@lru_cache(maxsize=4096)
def find_model(provider: str, model: str) -> CatalogueModel | None:
    """The catalogue row for a model as a response names it, within that provider only (a
    reseller's price is not the vendor's). None when unknown: never guess a price."""
    found_provider = catalogue_provider(provider)
    if found_provider is None:
        return None
    candidates = model_candidates(model)
    prefix = _MODEL_PREFIXES.get(found_provider.id)
    if prefix is not None:
        candidates += tuple(prefix + ref for ref in candidates if "/" not in ref)
    for ref in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info = found_provider.find_model(ref, all_providers=_PROVIDERS)
        except Exception:
            info = None
        if info is not None:
            native = any(info is own for own in found_provider.models)
            return CatalogueModel(found_provider, info, native)
    return None


def has_variant(found: CatalogueModel, context: Mapping[str, str], at: datetime) -> bool:
    """Whether the catalogue has a non-empty price variant for ``context`` in effect at ``at``
    (mirrors ``ModelInfo.get_prices``: a variant applies when all its conditions hold)."""
    if not found.native:
        return False
    for variant in found.model.price_variants or ():
        if not all(context.get(key) == value for key, value in variant.when.items()):
            continue
        if variant.constraint is not None and not variant.constraint.active(at):
            continue
        if any(value is not None for value in variant.prices.__dict__.values()):
            return True
    return False


def price_table(found: CatalogueModel, at: datetime, context: Mapping[str, str] | None) -> Any:
    """The catalogue's price keys in effect at ``at`` (genai-prices resolves dates, time of day
    and variants); a plain mapping of price key -> Decimal | TieredPrices | None."""
    if context and found.native:
        return found.model.get_prices(at, context).__dict__
    return found.model.get_prices(at).__dict__


def _at_prompt(price: object, prompt_tokens: int) -> Decimal | None:
    """A flat price, or the tier a prompt of this size falls in: tiers are cliffs, the whole
    request pays the tier rate once the prompt (input + cache read + cache write) exceeds it."""
    if isinstance(price, Decimal):
        return price
    if isinstance(price, TieredPrices):
        for tier in reversed(price.tiers):
            if prompt_tokens > tier.start:
                return tier.price
        return price.base
    return None


def rates(table: Mapping[str, object], prompt_tokens: int) -> Rates:
    """Per-kind rates (USD per million tokens, per thousand searches/requests) for a prompt size;
    None where the catalogue has no price for that kind."""
    out: list[Decimal | None] = []
    for chain in _CHAINS:
        rate: Decimal | None = None
        for key in chain:
            value = table.get(key)
            if value is not None:
                rate = _at_prompt(value, prompt_tokens)
                break
        out.append(rate)
    return tuple(out)


def to_genai_usage(usage: Usage) -> genai_prices.Usage:
    """Our usage in genai-prices' convention, for checking this engine against its arithmetic.

    genai-prices counts ``input_tokens`` as the whole prompt (cache reads and writes included)
    and ``cache_write_tokens`` as all writes (its ``cache_write_1h_tokens`` is a subset), and
    bills ``output_tokens`` whole; ours keeps uncached input apart. Reasoning is left out: it is
    inside our output already, and giving it again would only split output, never add to it.
    """
    read = usage.cache_read_tokens or 0
    write = max(usage.cache_write_tokens or 0, usage.cache_write_1h_tokens or 0)
    return genai_prices.Usage(
        input_tokens=(usage.input_tokens or 0) + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=usage.cache_write_1h_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        web_searches=usage.web_search_requests or 0,
    )


# --- listing (pricing list / show) -----------------------------------------------------------

_LIST_KEYS: Final = (
    ("input_mtok", INPUT),
    ("output_mtok", OUTPUT),
    ("cache_read_mtok", CACHE_READ),
    ("cache_write_5m_mtok", WRITE_5M),
    ("cache_write_1h_mtok", WRITE_1H),
    ("web_search_kcount", WEB_SEARCH),
    ("request_kcount", REQUEST),
)
_VARIANTS: Final[tuple[tuple[str, Mapping[str, str]], ...]] = (
    ("batch", BATCH),
    ("flex", {"service_tier": "flex"}),
    ("priority", {"service_tier": "priority"}),
)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _rate_fields(table: Mapping[str, object], prompt_tokens: int) -> dict[str, str | None]:
    found = rates(table, prompt_tokens)
    return {name: _text(found[kind]) for name, kind in _LIST_KEYS}


def _tier_starts(table: Mapping[str, object]) -> list[int]:
    tiered = [value for value in table.values() if isinstance(value, TieredPrices)]
    return sorted({tier.start for value in tiered for tier in value.tiers})


def _effective_from(info: ModelInfo, at: datetime) -> date | None:
    """Start date of the dated price in effect at ``at`` (None: undated)."""
    if not isinstance(info.prices, list):
        return None
    for conditional in reversed(info.prices):
        constraint = conditional.constraint
        if constraint is None or constraint.active(at):
            return constraint.start_date if isinstance(constraint, StartDateConstraint) else None
    return None


def describe(found: CatalogueModel, at: datetime) -> dict[str, Any]:
    """One model's prices in effect at ``at``, JSON-ready (exact decimal strings)."""
    table = price_table(found, at, None)
    info = found.model
    entry: dict[str, Any] = {
        "provider": _OUR_NAMES.get(found.provider.id, found.provider.id),
        "catalogue_provider": found.provider.id,
        "model": info.id,
        "name": info.name,
        **_rate_fields(table, 0),
        "long_context": [
            {"above_prompt_tokens": start, **_rate_fields(table, start + 1)}
            for start in _tier_starts(table)
        ],
        "variants": {
            label: _rate_fields(price_table(found, at, context), 0)
            for label, context in _VARIANTS
            if has_variant(found, context, at)
        },
        "effective_from": None,
        "time_of_day_pricing": isinstance(info.prices, list)
        and any(isinstance(c.constraint, TimeOfDateConstraint) for c in info.prices),
        "context_window": info.context_window,
        "deprecated": bool(info.deprecated),
        "catalogue": CATALOGUE,
    }
    started = _effective_from(info, at)
    entry["effective_from"] = started.isoformat() if started else None
    return entry


def _now(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def list_models(provider: str | None, at: datetime | None) -> list[dict[str, Any]]:
    """Every catalogue model (of one provider: our name or a genai-prices id)."""
    when = _now(at)
    wanted = catalogue_provider(provider) if provider is not None else None
    if provider is not None and wanted is None:
        return []
    out: list[dict[str, Any]] = []
    for candidate in _PROVIDERS:
        if wanted is not None and candidate is not wanted:
            continue
        for info in candidate.models:
            out.append(describe(CatalogueModel(candidate, info, True), when))
    out.sort(key=lambda entry: (entry["provider"], entry["model"]))
    return out


def show_model(model: str, provider: str | None, at: datetime | None) -> dict[str, Any] | None:
    """One model as a response would name it; without a provider, our providers are tried in
    order (anthropic, openai, google, …), then every other catalogue provider."""
    names = [provider] if provider is not None else [*PROVIDER_IDS, *(p.id for p in _PROVIDERS)]
    for name in names:
        found = find_model(name, model)
        if found is not None:
            return {**describe(found, _now(at)), "matched_from": model}
    return None
