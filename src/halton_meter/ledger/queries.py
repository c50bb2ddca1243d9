"""Read queries over the ledger, shared by the CLI (and later the API).

Readers name their columns (never SELECT *), so a ledger migrated by a newer release still
reads. Money is summed as integers (nano-USD) in SQL, so totals are exact.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from halton_meter.ledger.rollup import (
    Span,
    aggregate_many,
    aggregate_rows,
    p95_latencies,
    self_test_filter,
)
from halton_meter.ledger.row import ROW_COLUMNS

GROUP_COLUMNS = {
    "project": "project",
    "model": "COALESCE(model, model_requested, '(unknown)')",
    "provider": "provider",
    "day": "substr(requested_at, 1, 10)",
    "api": "api",
    "client": "COALESCE(client_process, '(unknown)')",
    "billing": "billing",
    # A cloud's rows (Bedrock, Vertex, Azure) by the family of the model it resold.
    "family": "COALESCE(model_family, provider)",
    "region": "COALESCE(cloud_region, '(none)')",
    # The client's git branch and HEAD commit (migration 10); rows outside a repository: (none).
    "branch": "COALESCE(git_branch, '(none)')",
    "commit": "COALESCE(git_commit, '(none)')",
}
# The rollup's column for each --by key it keeps (not client: that one reads the rows).
ROLLUP_NAMES = {name: name for name in ("project", "model", "provider", "day", "api")}
TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class Window:
    """Filters shared by every query: [since, until) as ledger timestamps, and a project;
    the self-test's rows only when asked (see `rollup.Span`)."""

    since: str | None = None
    until: str | None = None
    project: str | None = None
    include_self_test: bool = False

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
        clauses += self_test_filter(self.include_self_test)
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
    latency_ms_sum: float = 0.0
    latency_count: int = 0
    p95_latency_ms: float | None = None
    # Calls billed by a subscription, and what they would have cost at API prices: apart
    # from `cost_nanousd` (money spent), never added to it.
    subscription_requests: int = 0
    subscription_value_nanousd: int = 0

    @classmethod
    def from_sums(cls, sums: dict[str, Any], p95: float | None) -> Totals:
        """From one `rollup.aggregate` group."""
        return cls(
            requests=sums["requests"],
            errors=sums["errors"],
            input_tokens=sums["input_tokens"],
            cache_read_tokens=sums["cache_read_tokens"],
            cache_write_tokens=sums["cache_write_tokens"],
            output_tokens=sums["output_tokens"],
            reasoning_tokens=sums["reasoning_tokens"],
            cost_nanousd=sums["cost_nanousd"],
            unpriced_requests=sums["unpriced_requests"],
            latency_ms_sum=float(sums["latency_ms_sum"]),
            latency_count=sums["latency_count"],
            p95_latency_ms=None if p95 is None else round(p95, 1),
            subscription_requests=sums["subscription_requests"],
            subscription_value_nanousd=sums["subscription_value_nanousd"],
        )

    @property
    def avg_latency_ms(self) -> float | None:
        if not self.latency_count:
            return None
        return round(self.latency_ms_sum / self.latency_count, 1)


@dataclass(slots=True)
class Report:
    totals: Totals
    groups: list[tuple[tuple[str, ...], Totals]]
    unpriced: list[dict[str, Any]]


def build_report(con: sqlite3.Connection, window: Window, group_by: list[str]) -> Report:
    """Totals, per-group totals (in key order) and the unpriced models.

    Sums come from the daily rollup (whole days) plus the raw rows of the window's partial
    days; only the 95th-percentile latency reads every row of the window (nearest rank)."""
    span = Span(
        window.since, window.until, window.project, include_self_test=window.include_self_test
    )
    rolled_up = all(name in ROLLUP_NAMES for name in group_by)
    keys = [ROLLUP_NAMES[name] for name in group_by] if rolled_up else []
    everything, grouped, models = aggregate_many(con, span, [[], keys, ["provider", "model"]])
    if not rolled_up:  # a key the rollup does not keep (client): sum the window's rows
        keys = list(group_by)
        grouped = aggregate_rows(con, span, {name: GROUP_COLUMNS[name] for name in group_by})
    p95 = p95_latencies(con, span, [])
    totals = Totals.from_sums(everything[0], p95.get(())) if everything else Totals()
    groups: list[tuple[tuple[str, ...], Totals]] = []
    if group_by:
        group_p95 = p95_latencies(con, span, [GROUP_COLUMNS[name] for name in group_by])
        for sums in grouped:
            key = tuple(str(sums[name]) for name in keys)
            groups.append((key, Totals.from_sums(sums, group_p95.get(key))))
    unpriced = [
        {
            "provider": sums["provider"],
            "model": sums["model"],
            "requests": sums["unpriced_requests"],
            "prompt_tokens": sums["unpriced_prompt_tokens"],
            "output_tokens": sums["unpriced_output_tokens"],
        }
        for sums in models
        if sums["unpriced_requests"] > 0
    ]
    unpriced.sort(key=lambda item: -item["requests"])
    return Report(totals, sorted(groups), unpriced)
