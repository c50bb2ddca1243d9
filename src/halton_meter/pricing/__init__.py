"""Pricing engine: exact cost of a metered call from the bundled genai-prices catalogue.

Pure functions, no I/O: no network (the catalogue ships inside the installed package), no
SQLite. The ledger stores what ``price_call`` returns: integer nano-USD (None = unpriced) and the
provenance of the price, so a user can check every row against a provider's price page.

A ledger row is priced by ``price_row`` (its wire format's billing rule, then ``price_call``),
wherever it is priced: capture, ``reprice``, the team server's ingest.

Rules, in order: zero-cost calls (token counting) cost 0; a cost the provider reported wins;
then the first matching ``[[pricing.overrides]]`` entry; then the catalogue price in effect at
the row's ``requested_at``. An unknown model, a usage that contradicts itself or a price the
catalogue lacks makes the row unpriced, never $0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import catalogue as _catalogue
from .engine import PriceQuote, catalogue_version, price_call
from .overrides import OverrideError, PriceOverride, parse_overrides
from .row import REPRICE_COLUMNS, ModelChange, RowFacts, price_row, reprice_row, stored_row_facts

__all__ = (
    "REPRICE_COLUMNS",
    "ModelChange",
    "OverrideError",
    "PriceOverride",
    "PriceQuote",
    "RowFacts",
    "catalogue_version",
    "list_prices",
    "parse_overrides",
    "price_call",
    "price_row",
    "reprice_row",
    "show_price",
    "stored_row_facts",
)


def list_prices(provider: str | None = None, *, at: datetime | None = None) -> list[dict[str, Any]]:
    """Every catalogue model (optionally of one provider, our name or a genai-prices id) with
    the prices in effect at ``at`` (default: now), for ``halton-meter pricing list``.

    Each entry: provider, catalogue_provider, model, name; input_mtok, output_mtok,
    cache_read_mtok, cache_write_5m_mtok, cache_write_1h_mtok (USD per million tokens, exact
    decimal strings, the rate actually billed: a kind without its own price shows its parent's),
    web_search_kcount, request_kcount (USD per thousand); long_context (tiers by prompt size);
    variants (batch/flex/priority prices the catalogue has at that date); effective_from (start
    of a dated price); time_of_day_pricing; context_window; deprecated; catalogue.
    """
    return _catalogue.list_models(provider, at)


def show_price(
    model: str, provider: str | None = None, *, at: datetime | None = None
) -> dict[str, Any] | None:
    """One model as a response would name it (dated snapshots, prefixes and dot/dash spellings
    resolve as when pricing), in the shape of a ``list_prices`` entry plus ``matched_from``;
    None when the catalogue has no such model."""
    return _catalogue.show_model(model, provider, at)
