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
from halton_meter.providers.selftest import SELF_TEST_PROVIDER

ROLLUP_KEYS = frozenset(ROLLUP_KEY)
_MIDNIGHT = ("", "T00:00:00.000Z")


@dataclass(frozen=True, slots=True)
class Span:
    """[since, until) as ledger timestamps (None: open), optionally one project/provider.

    The self-test's rows (`init`'s free call, provider `halton-meter`) are left out unless
    `include_self_test`, or the provider asked for is that one: they are the meter checking
    itself, not spend. This and `self_test_filter` are the one place that rule lives."""

    since: str | None = None
    until: str | None = None
    project: str | None = None
    provider: str | None = None
    include_self_test: bool = False


def self_test_filter(include_self_test: bool, provider: str | None = None) -> list[str]:
    """The SQL condition (on `requests` or `daily_rollup`, both keyed by provider) that leaves
    the self-test's rows out; none when they are asked for."""
    if include_self_test or provider == SELF_TEST_PROVIDER:
        return []
    return [f"provider != '{SELF_TEST_PROVIDER}'"]


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
    return aggregate_many(con, span, [keys])[0]


def aggregate_many(
    con: sqlite3.Connection, span: Span, views: list[list[str]]
) -> list[list[dict[str, Any]]]:
    """`aggregate` for several groupings of one window: the partial days' rows are read once
    (grouped by every key), the rollup's whole days once per grouping, in SQL."""
    for keys in views:
        unknown = set(keys) - ROLLUP_KEYS
        if unknown:
            raise ValueError(f"cannot group by {sorted(unknown)}")
    days, raw = _split(span)
    edges: list[dict[str, Any]] = []
    if raw:
        parts, params = [], []
        raw_columns = ", ".join(
            f"{value} AS {name}"
            for value, name in zip(rollup_values("r"), (*ROLLUP_KEY, *ROLLUP_SUMS), strict=True)
        )
        for since, until in raw:
            clauses, values = _filters(span, "requested_at", since, until)
            parts.append(f"SELECT {raw_columns} FROM requests AS r{clauses}")
            params += values
        edges = _grouped(con, " UNION ALL ".join(parts), params, list(ROLLUP_KEY))
    results = []
    for keys in views:
        groups = fold(edges, keys) if edges else []
        if days is not None:
            clauses, values = _filters(span, "day", days[0], days[1])
            columns = ", ".join((*ROLLUP_KEY, *ROLLUP_SUMS))
            whole = _grouped(con, f"SELECT {columns} FROM daily_rollup{clauses}", values, keys)
            groups = fold(whole + groups, keys) if groups else whole
        results.append([group for group in groups if group["requests"] > 0])
    return results


def aggregate_rows(
    con: sqlite3.Connection, span: Span, keys: dict[str, str]
) -> list[dict[str, Any]]:
    """`aggregate` straight from the rows, grouped by SQL expressions over `requests` (name ->
    expression): for keys the rollup does not keep (the client process, …)."""
    clauses, values = _filters(span, "requested_at", span.since, span.until)
    measures = rollup_values("r")[len(ROLLUP_KEY) :]
    source = ", ".join(
        [
            *(f'{expression} AS "{name}"' for name, expression in keys.items()),
            *(f"{value} AS {name}" for value, name in zip(measures, ROLLUP_SUMS, strict=True)),
        ]
    )
    return [
        group
        for group in _grouped(con, f"SELECT {source} FROM requests AS r{clauses}", values, [*keys])
        if group["requests"] > 0
    ]


def _grouped(
    con: sqlite3.Connection, source: str, params: list[Any], keys: list[str]
) -> list[dict[str, Any]]:
    group = ", ".join(f'"{key}"' for key in keys)  # quoted: `commit` is an SQL keyword
    sums = ", ".join(f"SUM({name})" for name in ROLLUP_SUMS)
    sql = f"SELECT {group + ', ' if keys else ''}{sums} FROM ({source})"
    if keys:
        sql += f" GROUP BY {group} ORDER BY {group}"
    names = [*keys, *ROLLUP_SUMS]
    return [
        dict(zip(names, row, strict=True))
        for row in con.execute(sql, params)
        if row[len(keys)] is not None  # SUM over no rows
    ]


def fold(groups: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Re-group `aggregate` results by fewer keys, in Python: one SQL pass serves many views."""
    folded: dict[tuple[Any, ...], dict[str, Any]] = {}
    for group in groups:
        key = tuple(group[name] for name in keys)
        into = folded.get(key)
        if into is None:
            folded[key] = {
                **dict(zip(keys, key, strict=True)),
                **{n: group[n] for n in ROLLUP_SUMS},
            }
        else:
            for name in ROLLUP_SUMS:
                into[name] += group[name]
    return [folded[key] for key in sorted(folded)]


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
    clauses += self_test_filter(span.include_self_test, span.provider)
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
