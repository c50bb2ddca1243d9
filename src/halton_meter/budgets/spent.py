"""Money spent per budget in its current window, read from the ledger.

Used once at the daemon's start (and when a rolling window moves or config.toml changes) to
seed the running totals, and by the CLI, which reads the ledger directly. Scopes on project,
provider and model are summed from the daily roll-up (ledger/rollup.py: whole days from the
roll-up, the partial edge days from `requests`); a scope on the client reads `requests`,
because the roll-up has no client column. Subscription rows never count as money.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from halton_meter.budget_model import Budget, Window, forecast, local_zone, window_at
from halton_meter.ledger.rollup import Span, aggregate
from halton_meter.ledger.row import utc_iso_ms


def open_ledger(ledger: Path) -> sqlite3.Connection:
    """Read-only; raises sqlite3.Error when the ledger cannot be read (the caller fails
    open)."""
    con = sqlite3.connect(f"file:{ledger.as_posix()}?mode=ro", uri=True, timeout=5)
    con.row_factory = sqlite3.Row
    return con


def spent_in_windows(
    con: sqlite3.Connection, budgets: Sequence[tuple[Budget, Window]]
) -> list[int]:
    """Nano-USD of API billing inside each budget's window, in order."""
    by_start: dict[float, list[dict[str, object]]] = {}
    totals = []
    for budget, window in budgets:
        if budget.scope.client:
            totals.append(_client_scoped(con, budget, window))
            continue
        if window.start not in by_start:
            span = Span(since=utc_iso_ms(window.start), until=utc_iso_ms(window.end))
            by_start[window.start] = aggregate(con, span, ["project", "provider", "model"])
        total = 0
        for group in by_start[window.start]:
            project, provider, model = (
                str(group[k] or "") for k in ("project", "provider", "model")
            )
            if budget.scope.matches(project, ("*",), provider, model):
                total += int(group["cost_nanousd"] or 0)  # type: ignore[call-overload]
        totals.append(total)
    return totals


def _client_scoped(con: sqlite3.Connection, budget: Budget, window: Window) -> int:
    found = con.execute(
        "SELECT project, provider, model, client_process, user_agent, SUM(cost_nanousd) "
        "FROM requests WHERE requested_at >= ? AND requested_at < ? "
        "AND billing IS NOT 'subscription' AND cost_nanousd IS NOT NULL GROUP BY 1, 2, 3, 4, 5",
        (utc_iso_ms(window.start), utc_iso_ms(window.end)),
    ).fetchall()
    total = 0
    for project, provider, model, process, agent, cost in found:
        if budget.scope.matches(project or "", (process, agent), provider or "", model or ""):
            total += int(cost or 0)
    return total


def project_forecasts(con: sqlite3.Connection, now: float) -> list[dict[str, object]]:
    """Each project's API spend this calendar month (the user's time zone) and where it ends
    at the pace so far: the per-project forecast of `report`, the API and the dashboard."""
    window = window_at("month", 0, local_zone(), now)
    span = Span(since=utc_iso_ms(window.start), until=utc_iso_ms(window.end))
    found = []
    for group in aggregate(con, span, ["project"]):
        spent = int(group["cost_nanousd"] or 0)
        if spent <= 0:
            continue
        projected = forecast(spent, window, now)
        found.append(
            {
                "project": group["project"],
                "spent_usd": round(spent / 1e9, 6),
                "forecast_usd": None if projected is None else round(projected / 1e9, 2),
                "window": window.to_json(),
            }
        )
    found.sort(key=lambda item: -float(item["spent_usd"]))
    return found
