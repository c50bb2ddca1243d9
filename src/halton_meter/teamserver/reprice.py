"""The server's `reprice`: the team's rows priced again with today's catalogue and the
workspace's own prices, shown per model before anything is written (the same flow as a
machine's `halton-meter reprice`, reprice.py). Only the server's figure changes; each
machine's own figure stays as the machine sent it.

Applying works in short transactions: each locks its rows, writes their new price and adds
the difference to the rollups, so reports stay equal to the rows while ingest goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from halton_meter.pricing import REPRICE_COLUMNS, ModelChange, PriceOverride, reprice_row
from halton_meter.teamserver.ingest import RollupChange, change_rollups
from halton_meter.teamserver.schema import NO_BRANCH

Connection = psycopg.Connection[Any]


@dataclass(slots=True)
class RepricePlan:
    changes: dict[tuple[str, str], ModelChange]
    # (machine id, row id, requested_at, new cost, new provenance) for every row that changes.
    updates: list[tuple[str, str, datetime, int | None, str | None]]
    rows: int = 0


def plan_reprice(
    con: Connection,
    workspace_id: str,
    overrides: Sequence[PriceOverride],
    since: datetime | None = None,
    project: str | None = None,
) -> RepricePlan:
    """Every row's new price; nothing is written. Rows are read through a server-side cursor,
    a few thousand at a time."""
    sql = (
        f"SELECT machine_id, id, requested_at, {', '.join(REPRICE_COLUMNS)} FROM ledger "
        "WHERE workspace_id = %s"
    )
    params: list[Any] = [workspace_id]
    if since is not None:
        sql += " AND requested_at >= %s"
        params.append(since)
    if project is not None:
        sql += " AND project = %s"
        params.append(project)
    plan = RepricePlan({}, [])
    with con.transaction(), con.cursor(name="halton_reprice") as cursor:
        cursor.itersize = 5000
        cursor.execute(sql, params)
        for raw in cursor:
            row = dict(zip(REPRICE_COLUMNS, raw[3:], strict=True))
            row["requested_at"] = raw[2]
            quote = reprice_row(row, overrides, plan.changes)
            if quote is not None:
                plan.updates.append(
                    (str(raw[0]), raw[1], raw[2], quote.cost_nanousd, quote.price_source)
                )
            plan.rows += 1
    return plan


def apply_reprice(con: Connection, workspace_id: str, plan: RepricePlan, batch: int = 1000) -> int:
    """Write the planned prices and move the rollups by the difference, a batch per
    transaction (deadlocks with ingest retried)."""
    written = 0
    for start in range(0, len(plan.updates), batch):
        chunk = plan.updates[start : start + batch]
        for attempt in range(5):
            try:
                with con.transaction():
                    written += _apply_chunk(con, workspace_id, chunk)
                break
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == 4:
                    raise
    return written


def _apply_chunk(
    con: Connection,
    workspace_id: str,
    chunk: list[tuple[str, str, datetime, int | None, str | None]],
) -> int:
    keys = (
        [u[0] for u in chunk],
        [u[1] for u in chunk],
        [u[2] for u in chunk],
    )
    found = con.execute(
        "SELECT l.machine_id, l.id, l.requested_at, l.cost_nanousd, l.project, l.provider, "
        "COALESCE(l.model, l.model_requested, '(unknown)'), l.billing = 'subscription', "
        "COALESCE(l.git_branch, %s) FROM ledger l "
        "JOIN unnest(%s::uuid[], %s::text[], %s::timestamptz[]) AS k(machine, id, at) "
        "ON l.machine_id = k.machine AND l.id = k.id AND l.requested_at = k.at "
        "WHERE l.workspace_id = %s ORDER BY l.machine_id, l.requested_at, l.id FOR UPDATE OF l",
        (NO_BRANCH, *keys, workspace_id),
    ).fetchall()
    new = {(u[0], u[1], u[2]): (u[3], u[4]) for u in chunk}
    changes = []
    for machine_id, row_id, moment, old, project, provider, model, subscribed, branch in found:
        cost, _ = new[(str(machine_id), row_id, moment)]
        # A subscription's calls are valued apart from money spent (as ingest sums them).
        measure = "subscription_value_nanousd" if subscribed else "cost_nanousd"
        changes.append(
            RollupChange(
                moment.astimezone(UTC).date(),
                str(machine_id),
                project,
                provider,
                model,
                branch,
                {
                    measure: (cost or 0) - (old or 0),
                    "unpriced_requests": (cost is None) - (old is None),
                },
            )
        )
    con.execute(
        "UPDATE ledger l SET cost_nanousd = k.cost, price_source = k.source "
        "FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::bigint[], %s::text[]) "
        "AS k(machine, id, at, cost, source) WHERE l.workspace_id = %s "
        "AND l.machine_id = k.machine AND l.id = k.id AND l.requested_at = k.at",
        (*keys, [u[3] for u in chunk], [u[4] for u in chunk], workspace_id),
    )
    change_rollups(con, workspace_id, changes)
    return len(found)


def plan_json(plan: RepricePlan, dry_run: bool) -> dict[str, Any]:
    """The local `reprice --json` shape, plus how many rows were read."""
    changes = sorted(plan.changes.values(), key=lambda c: (c.provider, c.model))
    return {
        "dry_run": dry_run,
        "rows": plan.rows,
        "rows_changing": len(plan.updates),
        "models": [c.as_json() for c in changes],
    }
