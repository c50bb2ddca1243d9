"""Sums over a time window from the daily rollup (migration 3), exact to the millisecond.

Whole UTC days inside the window are read from `daily_rollup` (kept by triggers, so it always
agrees with `requests`); the partial days at either edge are summed from `requests` itself. A
30-day answer on a million-row ledger therefore reads a few thousand rollup rows plus at most two
days of requests, instead of every row.
"""

from __future__ import annotations

import heapq
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from halton_meter.ledger.schema import ROLLUP_KEY, ROLLUP_SUMS, rollup_values

ROLLUP_KEYS = frozenset(ROLLUP_KEY)
_MIDNIGHT = ("", "T00:00:00.000Z")


@dataclass(frozen=True, slots=True)
class Span:
    """[since, until) as ledger timestamps (None: open), optionally one project/provider."""

    since: str | None = None
    until: str | None = None
    project: str | None = None
    provider: str | None = None


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _split(span: Span) -> tuple[tuple[str | None, str | None] | None, list[tuple[str | None, str]]]:
    """(whole days [first, end) for the rollup or None, raw [since, until) ranges)."""
    first_day: str | None = None
    raw: list[tuple[str | None, str]] = []
    if span.since is not None:
        day = span.since[:10]
        first_day = day if span.since[10:] in _MIDNIGHT else _next_day(day)
    end_day: str | None = None
    if span.until is not None:
        end_day = span.until[:10]
    if first_day is not None and end_day is not None and first_day >= end_day:
        assert span.until is not None
        return None, [(span.since, span.until)]
    if span.since is not None and first_day is not None and span.since < first_day:
        raw.append((span.since, first_day))
    if span.until is not None and end_day is not None and span.until[10:] not in _MIDNIGHT:
        raw.append((end_day, span.until))
    return (first_day, end_day), raw


def aggregate(con: sqlite3.Connection, span: Span, keys: list[str]) -> list[dict[str, Any]]:
    """One dict per group of `keys` (any of day, project, provider, api, model) with every sum
    in `ROLLUP_SUMS`; groups without requests are left out. Ordered by the keys."""
    unknown = set(keys) - ROLLUP_KEYS
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}")
    days, raw = _split(span)
    parts: list[str] = []
    params: list[Any] = []
    columns = ", ".join((*ROLLUP_KEY, *ROLLUP_SUMS))
    if days is not None:
        clauses, values = _filters(span, "day", days[0], days[1])
        parts.append(f"SELECT {columns} FROM daily_rollup{clauses}")
        params += values
    raw_columns = ", ".join(
        f"{value} AS {name}"
        for value, name in zip(rollup_values("r"), (*ROLLUP_KEY, *ROLLUP_SUMS), strict=True)
    )
    for since, until in raw:
        clauses, values = _filters(span, "requested_at", since, until)
        parts.append(f"SELECT {raw_columns} FROM requests AS r{clauses}")
        params += values
    group = ", ".join(keys)
    sums = ", ".join(f"SUM({name}) AS {name}" for name in ROLLUP_SUMS)
    sql = f"SELECT {group + ', ' if keys else ''}{sums} FROM ({' UNION ALL '.join(parts)})"
    if keys:
        sql += f" GROUP BY {group} HAVING SUM(requests) > 0 ORDER BY {group}"
    result = []
    for row in con.execute(sql, params):
        item = dict(zip([*keys, *ROLLUP_SUMS], row, strict=True))
        if item["requests"] is None or item["requests"] <= 0:
            continue
        result.append(item)
    return result


def _filters(span: Span, column: str, low: str | None, high: str | None) -> tuple[str, list[Any]]:
    clauses, values = [], []
    if low is not None:
        clauses.append(f"{column} >= ?")
        values.append(low)
    if high is not None:
        clauses.append(f"{column} < ?")
        values.append(high)
    if span.project is not None:
        clauses.append("project = ?")
        values.append(span.project)
    if span.provider is not None:
        clauses.append("provider = ?")
        values.append(span.provider)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


def p95_latencies(
    con: sqlite3.Connection, span: Span, keys: list[str]
) -> dict[tuple[str, ...], float]:
    """Nearest-rank 95th percentile of latency_ms per group of the SQL expressions `keys`
    (overall under the empty tuple). Percentiles cannot be summed, so this reads the rows.

    Overall: a count, then SQLite's top-N sort keeps only the slowest 5% (the covering index
    on (requested_at, latency_ms) means no table reads). Per group: one pass, and a heap of
    each group's slowest 5%."""
    clauses, values = _filters(span, "requested_at", span.since, span.until)
    clauses += (" AND " if clauses else " WHERE ") + "latency_ms IS NOT NULL"
    if not keys:
        count = con.execute(f"SELECT COUNT(*) FROM requests{clauses}", values).fetchone()[0]
        if not count:
            return {}
        above = count - _rank(count)  # rows slower than the percentile's own row
        found = con.execute(
            f"SELECT latency_ms FROM requests{clauses} ORDER BY latency_ms DESC LIMIT 1 OFFSET ?",
            [*values, above],
        ).fetchone()
        return {(): float(found[0])}
    groups: dict[tuple[str, ...], list[float]] = {}
    sql = f"SELECT {', '.join(keys)}, latency_ms FROM requests{clauses}"
    for row in con.execute(sql, values):
        groups.setdefault(tuple(str(value) for value in row[:-1]), []).append(row[-1])
    return {
        key: float(heapq.nlargest(len(latencies) - _rank(len(latencies)) + 1, latencies)[-1])
        for key, latencies in groups.items()
    }


def _rank(count: int) -> int:
    """Nearest rank of the 95th percentile among `count` values: ceil(0.95 n), at least 1."""
    return max(1, (95 * count + 99) // 100)
