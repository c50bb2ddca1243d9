"""`price_row`: the one decision of what a ledger row costs, from the row's facts.

Capture (the ledger writer's row builder), `reprice` and the team server's ingest all call it,
so the same row gets the same price wherever it is priced. The wire format decides how its
calls are billed (`providers.Billing`): metered and subscription calls go to `price_call` (a
subscription call's price is its API-equivalent value: the row's `billing` keeps it out of
money spent, never the price); the meter's own are free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..providers.base import Usage
from ..providers.registry import row_wire, wire_format
from ..providers.wireformat import Billing
from .engine import PriceQuote, price_call
from .overrides import PriceOverride

# Zero-cost APIs of a row whose wire format this release does not know.
_ZERO_COST_APIS = frozenset({"count_tokens"})


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


def price_row(facts: RowFacts, overrides: Sequence[PriceOverride] = ()) -> PriceQuote:
    """A row's cost and its provenance. Pure and exception-free."""
    wire = wire_format(facts.wire)
    billing = wire.billing if wire is not None else Billing.METERED
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
    )
