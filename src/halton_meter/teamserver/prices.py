"""The team's own prices: a workspace's `[[pricing.overrides]]` (negotiated discounts,
committed-use rates, with dates and model globs), in the very format of a machine's
config.toml and read by the same parser (pricing/overrides.py). Ingest prices every new row
with them through `pricing.price_row`; the server's `reprice` applies them to rows already
stored. The machines' own figures are never changed by them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from halton_meter.config import locate_key
from halton_meter.pricing import OverrideError, PriceOverride, parse_overrides

Connection = psycopg.Connection[Any]
TABLE = "pricing.overrides"


class PricesError(ValueError):
    """A prices file that is not TOML or has a bad entry; the message names entry and line."""


def parse_prices(text: str) -> tuple[PriceOverride, ...]:
    """`[[pricing.overrides]]` tables, as in a machine's config.toml; nothing else."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PricesError(f"not TOML: {error}") from None
    pricing = data.get("pricing", {})
    unknown = sorted(set(data) - {"pricing"}) + (
        sorted(f"pricing.{k}" for k in set(pricing) - {"overrides"})
        if isinstance(pricing, dict)
        else ["pricing"]
    )
    if unknown:
        raise PricesError(
            f"unknown {', '.join(unknown)}: a prices file holds [[pricing.overrides]] tables only"
        )
    raw = pricing.get("overrides", [])
    if not isinstance(raw, list):
        raise PricesError("expected an array of tables: [[pricing.overrides]]")
    try:
        return parse_overrides(raw, lambda index, key: locate_key(text, TABLE, key, index))
    except OverrideError as error:
        raise PricesError(str(error)) from None


def set_prices(con: Connection, workspace_id: str, text: str, by: str) -> int:
    """Replace the workspace's prices (validated first; an empty file removes them). Returns
    the number of entries. Rows already stored keep their price until a `reprice`."""
    entries = parse_prices(text)
    if not entries:
        con.execute("DELETE FROM workspace_prices WHERE workspace_id = %s", (workspace_id,))
        return 0
    con.execute(
        "INSERT INTO workspace_prices (workspace_id, overrides_toml, entries, updated_by) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (workspace_id) DO UPDATE SET "
        "overrides_toml = EXCLUDED.overrides_toml, entries = EXCLUDED.entries, "
        "updated_at = now(), updated_by = EXCLUDED.updated_by",
        (workspace_id, text, len(entries), by),
    )
    return len(entries)


def prices_info(con: Connection, workspace_id: str) -> dict[str, Any]:
    row = con.execute(
        "SELECT overrides_toml, entries, updated_at, updated_by FROM workspace_prices "
        "WHERE workspace_id = %s",
        (workspace_id,),
    ).fetchone()
    if row is None:
        return {"toml": "", "entries": 0, "updated_at": None, "updated_by": None}
    return {
        "toml": row[0],
        "entries": row[1],
        "updated_at": row[2].isoformat(),
        "updated_by": row[3],
    }


def load_prices(con: Connection, workspace_id: str) -> tuple[PriceOverride, ...]:
    found = con.execute(
        "SELECT overrides_toml FROM workspace_prices WHERE workspace_id = %s", (workspace_id,)
    ).fetchone()
    return parse_prices(found[0]) if found else ()


@dataclass
class PriceCache:
    """Each worker's parsed prices per workspace, re-read when their `updated_at` moves: ingest
    asks one indexed question per batch, not a parse."""

    known: dict[str, tuple[datetime, tuple[PriceOverride, ...]]] = field(default_factory=dict)

    def get(self, con: Connection, workspace_id: str) -> tuple[PriceOverride, ...]:
        row = con.execute(
            "SELECT updated_at FROM workspace_prices WHERE workspace_id = %s", (workspace_id,)
        ).fetchone()
        if row is None:
            self.known.pop(workspace_id, None)
            return ()
        cached = self.known.get(workspace_id)
        if cached is not None and cached[0] == row[0]:
            return cached[1]
        overrides = load_prices(con, workspace_id)
        self.known[workspace_id] = (row[0], overrides)
        return overrides
