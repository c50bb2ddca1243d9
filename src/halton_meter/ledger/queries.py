"""Read queries over the ledger, shared by the CLI (and later the API).

Readers name their columns (never SELECT *), so a ledger migrated by a newer release still
reads. Money is summed as integers (nano-USD) in SQL, so totals are exact.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from halton_meter.ledger.row import ROW_COLUMNS

GROUP_COLUMNS = {
    "project": "project",
    "model": "COALESCE(model, model_requested, '(unknown)')",
    "provider": "provider",
    "day": "substr(requested_at, 1, 10)",
    "api": "api",
    "client": "COALESCE(client_process, '(unknown)')",
}
TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class Window:
    """Filters shared by every query: [since, until) as ledger timestamps, and a project."""

    since: str | None = None
    until: str | None = None
    project: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if self.since:
            clauses.append("requested_at >= ?")
            params.append(self.since)
        if self.until:
            clauses.append("requested_at < ?")
            params.append(self.until)
        if self.project:
            clauses.append("project = ?")
            params.append(self.project)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def recent_requests(con: sqlite3.Connection, window: Window, limit: int) -> list[dict[str, Any]]:
    """The latest rows, newest first, as dicts keyed by column name."""
    where, params = window.where()
    sql = (
        f"SELECT {', '.join(ROW_COLUMNS)} FROM requests{where} "
        "ORDER BY requested_at DESC, id DESC LIMIT ?"
    )
    rows = con.execute(sql, [*params, limit]).fetchall()
    result = []
    for row in rows:
        item = dict(zip(ROW_COLUMNS, row, strict=True))
        item["stream"] = bool(item["stream"])
        item["tokens_complete"] = bool(item["tokens_complete"])
        result.append(item)
    return result


@dataclass(slots=True)
class Totals:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanousd: int = 0
    unpriced_requests: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, row: sqlite3.Row | tuple[Any, ...]) -> None:
        status, latency, cost, *tokens = row
        self.requests += 1
        self.errors += status != "ok"
        for name, value in zip(TOKEN_COLUMNS, tokens, strict=True):
            setattr(self, name, getattr(self, name) + (value or 0))
        if cost is None:
            self.unpriced_requests += 1
        else:
            self.cost_nanousd += cost
        if latency is not None:
            self.latencies.append(latency)

    @property
    def avg_latency_ms(self) -> float | None:
        if not self.latencies:
            return None
        return round(sum(self.latencies) / len(self.latencies), 1)

    @property
    def p95_latency_ms(self) -> float | None:
        """Nearest-rank 95th percentile."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 1)


@dataclass(slots=True)
class Report:
    totals: Totals
    groups: list[tuple[tuple[str, ...], Totals]]
    unpriced: list[dict[str, Any]]


def build_report(con: sqlite3.Connection, window: Window, group_by: list[str]) -> Report:
    """Totals, per-group totals (in key order) and the unpriced models, in one pass."""
    where, params = window.where()
    keys = [GROUP_COLUMNS[name] for name in group_by]
    columns = ["status", "latency_ms", "cost_nanousd", *TOKEN_COLUMNS, *keys]
    sql = f"SELECT {', '.join(columns)} FROM requests{where}"
    totals = Totals()
    groups: dict[tuple[str, ...], Totals] = {}
    width = 3 + len(TOKEN_COLUMNS)
    for row in con.execute(sql, params):
        measures, key = row[:width], tuple(str(value) for value in row[width:])
        totals.add(measures)
        if group_by:
            groups.setdefault(key, Totals()).add(measures)
    unpriced_sql = (
        "SELECT provider, COALESCE(model, model_requested, '(unknown)') AS m, COUNT(*), "
        "SUM(COALESCE(input_tokens, 0) + COALESCE(cache_read_tokens, 0) "
        "+ COALESCE(cache_write_tokens, 0)), SUM(COALESCE(output_tokens, 0)) "
        f"FROM requests{where}{' AND' if where else ' WHERE'} cost_nanousd IS NULL "
        "GROUP BY provider, m ORDER BY COUNT(*) DESC"
    )
    unpriced = [
        {
            "provider": provider,
            "model": model,
            "requests": count,
            "prompt_tokens": prompt or 0,
            "output_tokens": output or 0,
        }
        for provider, model, count, prompt, output in con.execute(unpriced_sql, params)
    ]
    return Report(totals, sorted(groups.items()), unpriced)
