"""Projects in the ledger: the list with spend, renames and merges, and one row's attribution.

A rename or merge records an alias (`project_aliases`, migration 2) so the daemon files new
calls under the new name; existing rows move only when the caller asks (`rewrite_history`),
because a ledger that others have exported from should not change under them unasked.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from halton_meter.ledger.row import ROW_COLUMNS


class ProjectError(ValueError):
    """A rename or merge that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class ProjectSummary:
    project: str
    requests: int
    unpriced_requests: int
    month_cost_nanousd: int
    total_cost_nanousd: int
    last_active: str | None
    top_model: str | None
    renamed_to: str | None
    # Money spent above leaves subscription calls out; their API-equivalent value is here.
    subscription_requests: int = 0
    subscription_value_nanousd: int = 0


def month_start(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-01T00:00:00.000Z")


def list_projects(con: sqlite3.Connection, now: datetime | None = None) -> list[ProjectSummary]:
    """Every project with rows, most recently active first. Money sums priced calls only, and
    money spent leaves a subscription's calls out (their value is summed apart)."""
    since = month_start(now)
    spent = "CASE WHEN billing = 'subscription' THEN NULL ELSE cost_nanousd END"
    totals = con.execute(
        "SELECT project, COUNT(*), SUM(cost_nanousd IS NULL), "
        f"COALESCE(SUM(CASE WHEN requested_at >= ? THEN {spent} END), 0), "
        f"COALESCE(SUM({spent}), 0), MAX(requested_at), SUM(billing = 'subscription'), "
        "COALESCE(SUM(CASE WHEN billing = 'subscription' THEN cost_nanousd END), 0) "
        "FROM requests GROUP BY project",
        (since,),
    ).fetchall()
    # Top model: the most spent on; by number of calls when nothing is priced.
    top: dict[str, str] = {}
    for project, model, *_ in con.execute(
        "SELECT project, COALESCE(model, model_requested, '(unknown)') AS m, "
        "COALESCE(SUM(cost_nanousd), 0) AS spent, COUNT(*) AS calls "
        "FROM requests GROUP BY project, m ORDER BY project, spent DESC, calls DESC, m"
    ):
        top.setdefault(project, model)
    aliases = dict(con.execute("SELECT name, target FROM project_aliases").fetchall())
    summaries = [
        ProjectSummary(
            project=project,
            requests=count,
            unpriced_requests=unpriced or 0,
            month_cost_nanousd=month,
            total_cost_nanousd=total,
            last_active=last,
            top_model=top.get(project),
            renamed_to=aliases.get(project),
            subscription_requests=subscribed or 0,
            subscription_value_nanousd=value,
        )
        for project, count, unpriced, month, total, last, subscribed, value in totals
    ]
    return sorted(summaries, key=lambda s: (s.last_active or "", s.project), reverse=True)


def _rows_of(con: sqlite3.Connection, project: str) -> int:
    return int(
        con.execute("SELECT COUNT(*) FROM requests WHERE project = ?", (project,)).fetchone()[0]
    )


def move_project(
    con: sqlite3.Connection, old: str, new: str, *, merge: bool, rewrite_history: bool
) -> tuple[int, int]:
    """Point `old` at `new` for new calls; move its rows too when `rewrite_history`.

    Returns (rows moved, rows that stay under `old`). A rename refuses a `new` that already has
    rows (that is a merge); a merge wants an `into` that exists. Aliases that pointed at `old`
    follow it, so no chain of aliases is ever left behind."""
    if old == new:
        raise ProjectError(f"{old!r} and {new!r} are the same project")
    con.execute("BEGIN IMMEDIATE")
    try:
        old_rows = _rows_of(con, old)
        known_alias = con.execute(
            "SELECT 1 FROM project_aliases WHERE target = ?", (old,)
        ).fetchone()
        if not old_rows and not known_alias:
            raise ProjectError(f"no project {old!r} in the ledger")
        new_rows = _rows_of(con, new)
        if not merge and new_rows:
            raise ProjectError(
                f"project {new!r} already has {new_rows} rows: use `projects merge {old} {new}`"
            )
        if merge and not new_rows:
            raise ProjectError(
                f"no project {new!r} to merge into: use `projects rename {old} {new}`"
            )
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        con.execute("DELETE FROM project_aliases WHERE name = ?", (new,))
        con.execute("UPDATE project_aliases SET target = ? WHERE target = ?", (new, old))
        con.execute(
            "INSERT OR REPLACE INTO project_aliases (name, target, created_at) VALUES (?, ?, ?)",
            (old, new, stamp),
        )
        moved = 0
        if rewrite_history:
            moved = con.execute(
                "UPDATE requests SET project = ? WHERE project = ?", (new, old)
            ).rowcount
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return moved, old_rows - moved


def find_request(con: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
    """One row by id, or by a prefix that names exactly one row."""
    sql = f"SELECT {', '.join(ROW_COLUMNS)} FROM requests WHERE id "
    rows = con.execute(sql + "= ?", (request_id,)).fetchall()
    if not rows and len(request_id) >= 6:
        rows = con.execute(sql + "LIKE ? LIMIT 2", (request_id.replace("%", "") + "%",)).fetchall()
    if len(rows) != 1:
        return None
    return dict(zip(ROW_COLUMNS, rows[0], strict=True))
