"""`POST /v1/requests/batch`: strict validation, then one transaction that stores each new row
once and adds it to the daily rollups.

Idempotent by row id: the ledger's key is (workspace, machine, id, requested_at) and rows that
are already there are skipped (`ON CONFLICT DO NOTHING`), so a batch sent twice, or two senders
racing with the same batch, store each row once; only rows actually inserted reach the
rollups, in the same statement. A batch is all or nothing: one bad row refuses the batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from halton_meter.pricing import PriceOverride, price_row, stored_row_facts
from halton_meter.providers import row_billing
from halton_meter.teamserver.schema import (
    NO_BRANCH,
    ROLLUP_MEASURES,
    ROLLUP_TABLES,
    ensure_partitions,
    month_start,
)

Text = Annotated[str, StringConstraints(max_length=512)]
Count = Annotated[int, Field(ge=0, le=2**62)]
TIMESTAMP_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"


class WireRow(BaseModel):
    """One ledger row as a machine sends it: metadata only, never bodies or keys."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
    requested_at: Annotated[str, StringConstraints(pattern=TIMESTAMP_RE)]
    provider: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    api: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    host: Text | None = None
    model: Text | None = None
    model_requested: Text | None = None
    stream: bool
    input_tokens: Count | None = None
    cache_read_tokens: Count | None = None
    cache_write_tokens: Count | None = None
    cache_write_1h_tokens: Count | None = None
    output_tokens: Count | None = None
    reasoning_tokens: Count | None = None
    web_search_requests: Count | None = None
    http_status: Annotated[int, Field(ge=0, le=999)] | None = None
    status: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    error_class: Text | None = None
    provider_error_code: Text | None = None
    latency_ms: Annotated[float, Field(ge=0, le=1e9)] | None = None
    ttft_ms: Annotated[float, Field(ge=0, le=1e9)] | None = None
    tokens_complete: bool
    response_id: Text | None = None
    service_tier: Text | None = None
    user_agent: Text | None = None
    project: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    cost_nanousd: Annotated[int, Field(ge=0, le=2**62)] | None = None
    price_source: Text | None = None
    attribution: Annotated[str, StringConstraints(max_length=100)] | None = None
    client_process: Annotated[str, StringConstraints(max_length=200)] | None = None
    provider_cost_usd: (
        Annotated[str, StringConstraints(pattern=r"^\d{1,12}(\.\d{1,18})?$")] | None
    ) = None
    # Sent since ledger migration 5; a row from an older machine has none and gets the one the
    # backfill rule derives from host and api (providers/registry.py).
    wire: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    # Sent since ledger migration 6; a row from an older machine has none: `subscription` for
    # a subscription's wire format (Code Assist), else `unknown` (`providers.row_billing`).
    billing: Literal["api", "subscription", "unknown"] | None = None
    # Sent since ledger migration 10 (team server migration 7): the client's git branch and
    # HEAD commit; none outside a repository, and none from an older machine.
    git_branch: Text | None = None
    git_commit: Annotated[str, StringConstraints(max_length=100)] | None = None

    @field_validator("requested_at")
    @classmethod
    def _a_real_moment(cls, value: str) -> str:
        """The pattern lets 2025-06-00 or 2025-02-30 through; refuse them here (422), not
        at storage (a 500). Found by fuzz/ (issue 18)."""
        parse_timestamp(value)  # its ValueError becomes a validation error
        return value


class Batch(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    workspace_id: Annotated[str, StringConstraints(max_length=64)]
    machine_id: Annotated[str, StringConstraints(max_length=64)]
    rows: list[WireRow]


_TEXT = "text[]"
# (column, SQL array type) in the order they are sent to unnest().
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", _TEXT),
    ("requested_at", "timestamptz[]"),
    ("provider", _TEXT),
    ("api", _TEXT),
    ("host", _TEXT),
    ("model", _TEXT),
    ("model_requested", _TEXT),
    ("stream", "boolean[]"),
    ("input_tokens", "bigint[]"),
    ("cache_read_tokens", "bigint[]"),
    ("cache_write_tokens", "bigint[]"),
    ("cache_write_1h_tokens", "bigint[]"),
    ("output_tokens", "bigint[]"),
    ("reasoning_tokens", "bigint[]"),
    ("web_search_requests", "bigint[]"),
    ("http_status", "integer[]"),
    ("status", _TEXT),
    ("error_class", _TEXT),
    ("provider_error_code", _TEXT),
    ("latency_ms", "float8[]"),
    ("ttft_ms", "float8[]"),
    ("tokens_complete", "boolean[]"),
    ("response_id", _TEXT),
    ("service_tier", _TEXT),
    ("user_agent", _TEXT),
    ("project", _TEXT),
    ("provider_cost_usd", _TEXT),
    ("attribution", _TEXT),
    ("client_process", _TEXT),
    ("machine_cost_nanousd", "bigint[]"),
    ("machine_price_source", _TEXT),
    ("cost_nanousd", "bigint[]"),
    ("price_source", _TEXT),
    ("wire", _TEXT),
    ("billing", _TEXT),
    ("git_branch", _TEXT),
    ("git_commit", _TEXT),
)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_SUMS = (
    "count(*) AS requests, count(*) FILTER (WHERE status <> 'ok') AS errors, "
    "COALESCE(sum(input_tokens), 0) AS input_tokens, "
    "COALESCE(sum(cache_read_tokens), 0) AS cache_read_tokens, "
    "COALESCE(sum(cache_write_tokens), 0) AS cache_write_tokens, "
    "COALESCE(sum(output_tokens), 0) AS output_tokens, "
    "COALESCE(sum(reasoning_tokens), 0) AS reasoning_tokens, "
    # Money spent leaves a subscription's calls out; they are counted and valued apart.
    "COALESCE(sum(cost_nanousd) FILTER (WHERE NOT subscribed), 0) AS cost_nanousd, "
    "count(*) FILTER (WHERE cost_nanousd IS NULL) AS unpriced_requests, "
    "COALESCE(sum(machine_cost_nanousd) FILTER (WHERE NOT subscribed), 0) "
    "AS machine_cost_nanousd, "
    "count(*) FILTER (WHERE machine_cost_nanousd IS NULL) AS machine_unpriced_requests, "
    "COALESCE(sum(latency_ms), 0) AS latency_ms_sum, count(latency_ms) AS latency_count, "
    "count(*) FILTER (WHERE subscribed) AS subscription_requests, "
    "COALESCE(sum(cost_nanousd) FILTER (WHERE subscribed), 0) AS subscription_value_nanousd, "
    "max(requested_at) AS last_request_at"
)


def _rollup_upsert(table: str) -> str:
    """Add the batch's new rows (`fine`: grouped by every key) to one rollup table, in key
    order so two senders lock shared rows (a project's day) in the same order."""
    keys = [k for k in ROLLUP_TABLES[table] if k != "machine_id"]
    key_list = ", ".join(keys)
    sums = ", ".join(f"sum({m})" for m in ROLLUP_MEASURES)
    return (
        f"INSERT INTO {table} (workspace_id, {', '.join(ROLLUP_TABLES[table])}, "
        f"{', '.join(ROLLUP_MEASURES)}, last_request_at) "
        f"SELECT %(workspace)s, "
        + ", ".join("%(machine)s" if k == "machine_id" else k for k in ROLLUP_TABLES[table])
        + f", {sums}, max(last_request_at) FROM fine GROUP BY {key_list} ORDER BY {key_list} "
        f"ON CONFLICT (workspace_id, {', '.join(ROLLUP_TABLES[table])}) DO UPDATE SET "
        + ", ".join(f"{m} = {table}.{m} + EXCLUDED.{m}" for m in ROLLUP_MEASURES)
        + f", last_request_at = GREATEST({table}.last_request_at, EXCLUDED.last_request_at)"
    )


INGEST_SQL = f"""
WITH inserted AS (
    INSERT INTO ledger (workspace_id, machine_id, {_NAMES})
    SELECT %(workspace)s, %(machine)s, {_NAMES}
    FROM unnest({", ".join(f"%({name})s::{kind}" for name, kind in _COLUMNS)}) AS t({_NAMES})
    ON CONFLICT DO NOTHING
    RETURNING requested_at, project, provider, COALESCE(model, model_requested, '(unknown)') AS m,
        status, latency_ms, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens,
        reasoning_tokens, cost_nanousd, machine_cost_nanousd,
        billing = 'subscription' AS subscribed, COALESCE(git_branch, '{NO_BRANCH}') AS branch
), fine AS (
    SELECT (requested_at AT TIME ZONE 'UTC')::date AS day, project, provider, m AS model, branch,
        {_SUMS}
    FROM inserted GROUP BY 1, 2, 3, 4, 5
), {", ".join(f"up_{table} AS ({_rollup_upsert(table)})" for table in ROLLUP_TABLES)}
SELECT count(*) FROM inserted
"""


@dataclass(frozen=True, slots=True)
class RollupChange:
    """What one stored row's change adds to its rollup rows (a re-price, a resent price)."""

    day: date
    machine_id: str
    project: str
    provider: str
    model: str
    branch: str  # '(none)' for a row without one, as ingest keyed it
    measures: dict[str, int]


def change_rollups(
    con: psycopg.Connection[Any], workspace_id: str, changes: Sequence[RollupChange]
) -> None:
    """Add changes to every rollup table (inside the caller's transaction). The rows exist:
    the ledger rows that changed were added to them when stored."""
    names = sorted({name for change in changes for name in change.measures})
    if not names:
        return
    columns = {
        "day": [c.day for c in changes],
        "machine_id": [c.machine_id for c in changes],
        "project": [c.project for c in changes],
        "provider": [c.provider for c in changes],
        "model": [c.model for c in changes],
        "branch": [c.branch for c in changes],
    }
    params: dict[str, Any] = {"workspace": workspace_id, **columns}
    for name in names:
        params[f"d_{name}"] = [c.measures.get(name, 0) for c in changes]
    kinds = {"day": "date[]", "machine_id": "uuid[]"}
    source = (
        "SELECT * FROM unnest("
        + ", ".join(f"%({k})s::{kinds.get(k, 'text[]')}" for k in columns)
        + ", "
        + ", ".join(f"%(d_{n})s::bigint[]" for n in names)
        + f") AS c({', '.join(columns)}, {', '.join(names)})"
    )
    for table, keys in ROLLUP_TABLES.items():
        con.execute(
            f"UPDATE {table} r SET "
            + ", ".join(f"{n} = r.{n} + d.{n}" for n in names)
            + f" FROM (SELECT {', '.join(keys)}, "
            + ", ".join(f"sum({n})::bigint AS {n}" for n in names)
            + f" FROM ({source}) c GROUP BY {', '.join(keys)}) d WHERE r.workspace_id = "
            "%(workspace)s AND " + " AND ".join(f"r.{k} = d.{k}" for k in keys),
            params,
        )


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def columns_for(
    rows: Sequence[WireRow], overrides: Sequence[PriceOverride] = ()
) -> dict[str, list[Any]]:
    """Column arrays for unnest(), with the server's own price beside the machine's: the same
    `pricing.price_row` the machine priced it with, with the server's catalogue and the
    workspace's own prices (teamserver/prices.py)."""
    arrays: dict[str, list[Any]] = {name: [] for name, _ in _COLUMNS}
    for row in rows:
        values = row.model_dump()
        facts = stored_row_facts(values)
        quote = price_row(facts, overrides)
        values["requested_at"] = parse_timestamp(row.requested_at)
        values["wire"] = facts.wire
        values["billing"] = row_billing(facts.wire, values["billing"])
        values["machine_cost_nanousd"] = values.pop("cost_nanousd")
        values["machine_price_source"] = values.pop("price_source")
        values["cost_nanousd"] = quote.cost_nanousd
        values["price_source"] = quote.price_source
        for name, _ in _COLUMNS:
            arrays[name].append(values[name])
    return arrays


class PartitionCache:
    """Months whose partitions exist, so ingest asks the catalogue once per month."""

    def __init__(self) -> None:
        self.known: set[date] = set()

    def ensure(self, con: psycopg.Connection[Any], moments: list[datetime]) -> None:
        months = {month_start(moment.date()) for moment in moments} - self.known
        if months:
            ensure_partitions(con, months)
            self.known |= months


def store_batch(
    con: psycopg.Connection[Any],
    workspace_id: str,
    machine_id: str,
    rows: Sequence[WireRow],
    partitions: PartitionCache,
    overrides: Sequence[PriceOverride] = (),
) -> int:
    """Store the new rows of a batch; returns how many were new (the rest were already there).
    Retries a deadlock between two senders of overlapping batches."""
    arrays = columns_for(rows, overrides)
    partitions.ensure(con, arrays["requested_at"])
    params: dict[str, Any] = {"workspace": workspace_id, "machine": machine_id, **arrays}
    for attempt in range(5):
        try:
            with con.transaction():
                found = con.execute(INGEST_SQL, params).fetchone()
                con.execute(
                    "UPDATE machines SET last_seen_at = now() WHERE id = %s AND "
                    "(last_seen_at IS NULL OR last_seen_at < now() - interval '5 seconds')",
                    (machine_id,),
                )
            return int(found[0]) if found else 0
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == 4:
                raise
    return 0  # pragma: no cover


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --- a machine's own figure, sent again after it re-priced rows it had already sent --------


class MachinePrice(BaseModel):
    """A row's new price on its machine (the machine's `reprice`)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
    requested_at: Annotated[str, StringConstraints(pattern=TIMESTAMP_RE)]
    cost_nanousd: Annotated[int, Field(ge=0, le=2**62)] | None = None
    price_source: Text | None = None


class MachinePrices(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    workspace_id: Annotated[str, StringConstraints(max_length=64)]
    machine_id: Annotated[str, StringConstraints(max_length=64)]
    rows: list[MachinePrice]


def replace_machine_prices(
    con: psycopg.Connection[Any], workspace_id: str, machine_id: str, rows: Sequence[MachinePrice]
) -> int:
    """Replace the server's copy of the machine's figure for these rows (by id), adjusting the
    rollups by the difference; returns how many rows were found. Sent twice, the second time
    changes nothing (the difference is then 0). The server's own price is not touched."""
    latest = {row.id: row for row in rows}  # the same id twice: the last one counts
    ids = list(latest)
    moments = [parse_timestamp(latest[i].requested_at) for i in ids]
    for attempt in range(5):
        try:
            with con.transaction():
                found = con.execute(
                    "SELECT l.id, l.requested_at, l.machine_cost_nanousd, l.project, l.provider, "
                    "COALESCE(l.model, l.model_requested, '(unknown)'), "
                    "l.billing = 'subscription', COALESCE(l.git_branch, %s) FROM ledger l "
                    "JOIN unnest(%s::text[], %s::timestamptz[]) AS k(id, at) "
                    "ON l.id = k.id AND l.requested_at = k.at "
                    "WHERE l.workspace_id = %s AND l.machine_id = %s "
                    "ORDER BY l.requested_at, l.id FOR UPDATE OF l",
                    (NO_BRANCH, ids, moments, workspace_id, machine_id),
                ).fetchall()
                changes = []
                for row_id, moment, old, project, provider, model, subscribed, branch in found:
                    new = latest[row_id].cost_nanousd
                    # The machine's money spent leaves a subscription's calls out (ingest).
                    spent = 0 if subscribed else (new or 0) - (old or 0)
                    changes.append(
                        RollupChange(
                            moment.astimezone(UTC).date(),
                            machine_id,
                            project,
                            provider,
                            model,
                            branch,
                            {
                                "machine_cost_nanousd": spent,
                                "machine_unpriced_requests": (new is None) - (old is None),
                            },
                        )
                    )
                con.execute(
                    "UPDATE ledger l SET machine_cost_nanousd = k.cost, "
                    "machine_price_source = k.source "
                    "FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[], %s::text[]) "
                    "AS k(id, at, cost, source) WHERE l.workspace_id = %s AND l.machine_id = %s "
                    "AND l.id = k.id AND l.requested_at = k.at",
                    (
                        ids,
                        moments,
                        [latest[i].cost_nanousd for i in ids],
                        [latest[i].price_source for i in ids],
                        workspace_id,
                        machine_id,
                    ),
                )
                change_rollups(con, workspace_id, changes)
            return len(found)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == 4:
                raise
    return 0  # pragma: no cover
