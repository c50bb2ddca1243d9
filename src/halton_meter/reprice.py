"""Re-pricing history: only when the user asks, showing the change per model before applying.

A row's cost was fixed when it was written, with its provenance. `reprice` recomputes it from
the row's own normalised usage with today's catalogue and overrides (the price in effect at the
row's `requested_at`, as always), so a corrected catalogue or a new negotiated price can be
applied to past rows, visibly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from halton_meter.ledger.queries import Window
from halton_meter.pricing import REPRICE_COLUMNS, ModelChange, PriceOverride, reprice_row

_COLUMNS = ("id", "requested_at", *REPRICE_COLUMNS)


@dataclass(slots=True)
class RepricePlan:
    changes: dict[tuple[str, str], ModelChange]
    # (row id, new cost, new provenance) for every row whose cost or provenance changes.
    updates: list[tuple[str, int | None, str | None]]


def _rows(con: sqlite3.Connection, window: Window) -> Iterator[tuple[object, ...]]:
    # Every row is priced by the one rule, the self-test's too (reports only hide them).
    where, params = replace(window, include_self_test=True).where()
    yield from con.execute(f"SELECT {', '.join(_COLUMNS)} FROM requests{where}", params)


def plan_reprice(
    con: sqlite3.Connection,
    window: Window,
    overrides: Sequence[PriceOverride],
    progress: Callable[[int], None] | None = None,
) -> RepricePlan:
    """Work out every row's new price; nothing is written."""
    changes: dict[tuple[str, str], ModelChange] = {}
    updates: list[tuple[str, int | None, str | None]] = []
    for count, raw in enumerate(_rows(con, window), start=1):
        row = dict(zip(_COLUMNS, raw, strict=True))
        quote = reprice_row(row, overrides, changes)
        if quote is not None:
            updates.append((str(row["id"]), quote.cost_nanousd, quote.price_source))
        if progress is not None and count % 1000 == 0:
            progress(1000)
    return RepricePlan(changes, updates)


def apply_reprice(con: sqlite3.Connection, plan: RepricePlan, batch: int = 1000) -> int:
    """Write the new costs, in short transactions so the daemon's writer is never held up."""
    written = 0
    for start in range(0, len(plan.updates), batch):
        chunk = plan.updates[start : start + batch]
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                "UPDATE requests SET cost_nanousd = ?, price_source = ? WHERE id = ?",
                [(cost, source, row_id) for row_id, cost, source in chunk],
            )
            # Paired with a team server: the server's copy of this machine's figure follows
            # (the sync sends these rows' new price again, cloud/sync.py).
            con.executemany(
                "INSERT INTO cloud_resend (id) SELECT ? WHERE EXISTS (SELECT 1 FROM cloud_sync "
                "WHERE id = 1 AND sync_target IS NOT NULL) "
                "ON CONFLICT (id) DO UPDATE SET version = version + 1",
                [(row_id,) for row_id, _, _ in chunk],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        written += len(chunk)
    return written
