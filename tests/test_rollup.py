"""The daily rollup (migration 3) always equals a GROUP BY over the rows it summarises: after
inserts, re-pricing, renames and deletes, on a ledger migrated from before it, and for windows
that cut days in half."""

from __future__ import annotations

import math
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from halton_meter.ledger.db import connect
from halton_meter.ledger.rollup import Span, aggregate, p95_latencies
from halton_meter.ledger.row import INSERT_SQL, ROW_COLUMNS
from halton_meter.ledger.schema import MIGRATIONS, ROLLUP_SUMS
from halton_meter.timewindow import ledger_timestamp
from tests.test_ledger import sample_row

START = datetime(2026, 10, 1, tzinfo=UTC)


def random_rows(count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        moment = START + timedelta(minutes=rng.randrange(0, 60 * 24 * 20))
        rows.append(
            sample_row(
                id=f"{n:024x}",
                requested_at=ledger_timestamp(moment),
                project=rng.choice(["a", "b", "c"]),
                provider=rng.choice(["anthropic", "openai"]),
                model=rng.choice(["m1", "m2", None]),
                model_requested=rng.choice(["r1", None]),
                input_tokens=rng.choice([None, rng.randrange(1000)]),
                cache_read_tokens=rng.randrange(1000),
                output_tokens=rng.choice([None, rng.randrange(500)]),
                cost_nanousd=rng.choice([None, rng.randrange(10**9)]),
                latency_ms=rng.choice([None, rng.random() * 1000]),
                status=rng.choice(["ok", "ok", "error"]),
                billing=rng.choice(["api", "subscription", "unknown"]),
            )
        )
    return rows


def by_hand(con: sqlite3.Connection, since: str | None, until: str | None) -> dict[Any, Any]:
    """The same sums straight from the rows, written out independently of the schema code."""
    where, params = [], []
    if since:
        where.append("requested_at >= ?")
        params.append(since)
    if until:
        where.append("requested_at < ?")
        params.append(until)
    sql = (
        "SELECT substr(requested_at, 1, 10), project, "
        "COUNT(*), SUM(status != 'ok'), SUM(COALESCE(input_tokens, 0)), "
        "SUM(COALESCE(output_tokens, 0)), "
        # Money spent leaves subscription calls out; their API-equivalent value is apart.
        "SUM(CASE WHEN billing = 'subscription' THEN 0 ELSE COALESCE(cost_nanousd, 0) END), "
        "SUM(cost_nanousd IS NULL), COUNT(latency_ms), SUM(billing = 'subscription'), "
        "SUM(CASE WHEN billing = 'subscription' THEN COALESCE(cost_nanousd, 0) ELSE 0 END) "
        "FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY 1, 2"
    )
    return {(row[0], row[1]): row[2:] for row in con.execute(sql, params)}


def from_rollup(con: sqlite3.Connection, since: str | None, until: str | None) -> dict[Any, Any]:
    names = (
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cost_nanousd",
        "unpriced_requests",
        "latency_count",
        "subscription_requests",
        "subscription_value_nanousd",
    )
    return {
        (item["day"], item["project"]): tuple(item[name] for name in names)
        for item in aggregate(con, Span(since, until), ["day", "project"])
    }


def check(con: sqlite3.Connection) -> None:
    windows = [
        (None, None),
        ("2026-10-03", "2026-10-10"),
        ("2026-10-03T11:22:33.444Z", "2026-10-09T01:02:03.000Z"),
        ("2026-10-05T06:00:00.000Z", "2026-10-05T18:00:00.000Z"),  # inside one day
        ("2026-10-07T00:00:00.000Z", None),
    ]
    for since, until in windows:
        assert from_rollup(con, since, until) == by_hand(con, since, until), (since, until)


def test_rollup_follows_inserts_updates_and_deletes(tmp_path: Path) -> None:
    con = connect(tmp_path / "db.sqlite")
    rows = random_rows(600, seed=1)
    con.executemany(INSERT_SQL, [row.values() for row in rows])
    con.executemany(INSERT_SQL, [row.values() for row in rows[:50]])  # OR IGNORE: no change
    check(con)
    con.execute("UPDATE requests SET cost_nanousd = 7 WHERE project = 'a'")  # a reprice
    con.execute("UPDATE requests SET project = 'renamed' WHERE project = 'b'")
    con.execute("UPDATE requests SET cost_nanousd = NULL WHERE id < ?", (f"{40:024x}",))
    check(con)
    con.execute("UPDATE requests SET billing = 'subscription' WHERE billing = 'unknown'")
    check(con)
    con.execute("DELETE FROM requests WHERE project = 'c'")
    check(con)
    # A key whose rows all moved away is not reported as a group with zero requests.
    assert {item["project"] for item in aggregate(con, Span(), ["project"])} == {"a", "renamed"}


def test_migration_fills_the_rollup_from_existing_rows(tmp_path: Path) -> None:
    """A ledger written by a release before migration 3 gets its rollup on the next open."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute(
        "CREATE TABLE _migrations(id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at REAL NOT NULL)"
    )
    for number, name, statements in MIGRATIONS:
        if number >= 3:
            continue
        for statement in statements:
            old.execute(statement)
        old.execute("INSERT INTO _migrations VALUES (?, ?, 0)", (number, name))
    # That release's columns: those of migrations 1 and 2 (later ones came with migration 5 on).
    columns = list(ROW_COLUMNS[: ROW_COLUMNS.index("wire")])
    insert = f"INSERT INTO requests ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    old.executemany(insert, [row.values()[: len(columns)] for row in random_rows(400, seed=2)])
    old.close()
    con = connect(path)
    assert 3 in {row[0] for row in con.execute("SELECT id FROM _migrations")}
    check(con)
    sums = aggregate(con, Span(), [])[0]
    assert sums["requests"] == 400 and set(sums) == set(ROLLUP_SUMS)


def test_p95_is_the_nearest_rank_overall_and_per_group(tmp_path: Path) -> None:
    con = connect(tmp_path / "db.sqlite")
    rows = random_rows(500, seed=3)
    con.executemany(INSERT_SQL, [row.values() for row in rows])
    since = "2026-10-04T05:06:07.000Z"
    inside = [row for row in rows if row.requested_at >= since and row.latency_ms is not None]

    def nearest_rank(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]

    assert p95_latencies(con, Span(since), []) == {(): nearest_rank([r.latency_ms for r in inside])}
    per_project = p95_latencies(con, Span(since), ["project"])
    assert per_project == {
        (name,): nearest_rank([r.latency_ms for r in inside if r.project == name])
        for name in {r.project for r in inside}
    }
    assert p95_latencies(con, Span("2030-01-01"), []) == {}
