"""`price_row`: the one decision of what a ledger row costs, from the row's facts.

Capture (the ledger writer's row builder), `reprice` and the team server's ingest all call it,
so the same row gets the same price wherever it is priced. The wire format decides how its
calls are billed (`providers.Billing`): metered and subscription calls go to `price_call` (a
subscription call's price is its API-equivalent value: the row's `billing` keeps it out of
money spent, never the price); the meter's own are free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..money import usd_string
from ..providers.base import Usage
from ..providers.registry import row_wire, wire_format
from ..providers.wireformat import Billing
from .engine import PriceQuote, price_call
from .overrides import PriceOverride

# Zero-cost APIs of a row whose wire format this release does not know.
_ZERO_COST_APIS = frozenset({"count_tokens"})
# The price_source of a failed call that reported no usage: providers bill tokens, so it cost
# nothing, and saying so keeps it out of "unpriced" (a price we do not know) for good.
NO_USAGE = "no-usage"


@dataclass(frozen=True, slots=True)
class RowFacts:
    """What pricing reads from a row. ``wire`` None: a row whose wire format is unknown, priced
    as metered. ``status`` is the ledger's ("ok" or "error"): a failed token count is not free
    of doubt, so only an ok one costs 0."""

    provider: str
    wire: str | None
    api: str
    model: str | None
    usage: Usage
    requested_at: datetime
    service_tier: str | None = None
    provider_cost_usd: str | None = None
    status: str = "ok"
    # The ledger's error class; "network" and "timeout" mean the call was cut on the way, not
    # refused by the provider, so what it generated before the cut may well have been billed.
    error_class: str | None = None


# A call cut on the way (the connection failed, or timed out) is not known to be free.
_CUT = frozenset({"network", "timeout"})

# The usage a provider bills (reasoning is part of output, so not counted twice here).
_BILLED = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "web_search_requests",
)


def price_row(facts: RowFacts, overrides: Sequence[PriceOverride] = ()) -> PriceQuote:
    """A row's cost and its provenance. Pure and exception-free.

    A call the provider refused (status "error", not cut on the way) with no billed usage costs
    0 with price_source "no-usage", whatever its model; "unpriced" is left for usage we could
    not price, a cut call's included."""
    wire = wire_format(facts.wire)
    billing = wire.billing if wire is not None else Billing.METERED
    failed_unbilled = (
        facts.status != "ok"
        and facts.error_class not in _CUT
        and facts.provider_cost_usd is None
        and not any(getattr(facts.usage, name) for name in _BILLED)
    )
    if billing is not Billing.FREE and failed_unbilled:
        return PriceQuote(0, NO_USAGE, None)
    if billing is Billing.FREE:
        assert wire is not None
        return PriceQuote(0, wire.name, None)
    zero_cost_apis = wire.zero_cost_apis if wire is not None else _ZERO_COST_APIS
    tier = facts.service_tier
    return price_call(
        provider=facts.provider,
        model=facts.model,
        usage=facts.usage,
        requested_at=facts.requested_at,
        service_tier=tier,
        batch=tier == "batch",
        provider_cost_usd=facts.provider_cost_usd,
        zero_cost=facts.api in zero_cost_apis and facts.status == "ok",
        overrides=overrides,
    )


def stored_row_facts(row: Mapping[str, object]) -> RowFacts:
    """The facts of a row already recorded (ledger column names; ``requested_at`` as stored,
    ISO 8601 with a Z). A row without ``wire`` (written before it existed, or by an older
    release) gets the one the backfill rule derives from its host and api."""

    def text(name: str) -> str | None:
        value = row.get(name)
        return value if isinstance(value, str) else None

    def count(name: str) -> int | None:
        value = row.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    moment = row["requested_at"]
    if not isinstance(moment, datetime):
        moment = datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
    return RowFacts(
        provider=str(row["provider"]),
        wire=row_wire(text("wire"), text("host"), text("api")),
        api=str(row["api"]),
        model=text("model") or text("model_requested"),
        usage=Usage(**{name: count(name) for name in Usage.__slots__}),
        requested_at=moment,
        service_tier=text("service_tier"),
        provider_cost_usd=text("provider_cost_usd"),
        status=str(row["status"]),
        error_class=text("error_class"),
    )


# The stored columns a row's price is worked out from (`stored_row_facts`) and compared with:
# `reprice` on the ledger and the team server's reprice select exactly these.
REPRICE_COLUMNS = (
    "provider",
    "api",
    "host",
    "model",
    "model_requested",
    "status",
    "error_class",
    "service_tier",
    "provider_cost_usd",
    *Usage.__slots__,
    "wire",
    "cost_nanousd",
    "price_source",
)


@dataclass(slots=True)
class ModelChange:
    """How re-pricing changes one model's rows (shown before anything is written)."""

    provider: str
    model: str
    rows: int = 0
    changed: int = 0
    old_nanousd: int = 0
    new_nanousd: int = 0
    old_unpriced: int = 0
    new_unpriced: int = 0
    new_sources: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, object]:
        """One model's line of `reprice --json` (the local and the team server's alike)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "rows": self.rows,
            "rows_changing": self.changed,
            "old_cost_nanousd": self.old_nanousd,
            "new_cost_nanousd": self.new_nanousd,
            "old_cost_usd": usd_string(self.old_nanousd),
            "new_cost_usd": usd_string(self.new_nanousd),
            "old_unpriced": self.old_unpriced,
            "new_unpriced": self.new_unpriced,
            "new_price_sources": sorted(self.new_sources),
        }


def reprice_row(
    row: Mapping[str, object],
    overrides: Sequence[PriceOverride],
    changes: dict[tuple[str, str], ModelChange],
) -> PriceQuote | None:
    """Price a stored row (REPRICE_COLUMNS) again, counting it under its model in `changes`;
    the new quote when its cost or provenance changes, else None."""
    model = str(row["model"] or row["model_requested"] or "(unknown)")
    key = (str(row["provider"]), model)
    change = changes.setdefault(key, ModelChange(*key))
    quote = price_row(stored_row_facts(row), overrides)
    old = row["cost_nanousd"]
    change.rows += 1
    change.old_nanousd += old if isinstance(old, int) else 0
    change.old_unpriced += old is None
    change.new_nanousd += quote.cost_nanousd or 0
    change.new_unpriced += quote.cost_nanousd is None
    if quote.price_source:
        change.new_sources.add(quote.price_source)
    if (quote.cost_nanousd, quote.price_source) == (old, row["price_source"]):
        return None
    change.changed += 1
    return quote
