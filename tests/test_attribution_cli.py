"""`projects`, `projects rename/merge`, `why` and `report --by client` on a real ledger, through
the real CLI; and migration 2 on a ledger written before it existed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from halton_meter.ledger import schema
from halton_meter.ledger.db import connect
from halton_meter.ledger.row import INSERT_SQL
from tests.conftest import METER
from tests.test_ledger import sample_row


def stamp(month_offset: int) -> str:
    """A timestamp early in the current UTC month (0), or in a month long ago (-1)."""
    if month_offset == 0:
        return datetime.now(UTC).strftime("%Y-%m-01T00:00:01.000Z")
    return "2020-03-15T12:00:00.000Z"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HALTON_METER_HOME": str(home)}
    return subprocess.run([METER, *args], env=env, capture_output=True, text=True, timeout=60)


def add(home: Path, **fields: Any) -> str:
    row = sample_row(**fields)
    con = connect(home / "db.sqlite")
    con.execute(INSERT_SQL, row.values())
    con.close()
    return row.id


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_projects_lists_spend_last_activity_and_top_model(home: Path) -> None:
    add(home, project="acme", model="m-cheap", cost_nanousd=1_000, requested_at=stamp(0))
    add(home, project="acme", model="m-cheap", cost_nanousd=1_000, requested_at=stamp(0))
    add(home, project="acme", model="m-dear", cost_nanousd=5_000_000_000, requested_at=stamp(-1))
    add(home, project="acme", model="m-free", cost_nanousd=None, requested_at=stamp(0))
    add(home, project="blog", model="m-x", cost_nanousd=None, requested_at=stamp(-1))
    done = cli(home, "projects", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [p["project"] for p in listed] == ["acme", "blog"]  # most recently active first
    acme, blog = listed
    assert acme == {
        "project": "acme",
        "requests": 4,
        "unpriced_requests": 1,
        "month_cost_nanousd": 2_000,
        "month_cost_usd": "0.000002000",
        "total_cost_nanousd": 5_000_002_000,
        "total_cost_usd": "5.000002000",
        "last_active": stamp(0),
        "top_model": "m-dear",
        "renamed_to": None,
        # No call of these was billed by a subscription: nothing to value apart.
        "subscription_requests": 0,
        "subscription_value_nanousd": 0,
        "subscription_value_usd": "0.000000000",
    }
    assert (blog["total_cost_nanousd"], blog["unpriced_requests"], blog["top_model"]) == (
        0,
        1,
        "m-x",
    )
    table = cli(home, "projects")
    assert table.returncode == 0 and "acme" in table.stdout and "$5.00" in table.stdout


def test_rename_keeps_history_unless_asked(home: Path) -> None:
    for _ in range(3):
        add(home, project="old-name")
    done = cli(home, "projects", "rename", "old-name", "new-name", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "from": "old-name",
        "to": "new-name",
        "rows_moved": 0,
        "rows_kept": 3,
    }
    listed = {p["project"]: p for p in json.loads(cli(home, "projects", "--json").stdout)}
    assert listed["old-name"]["renamed_to"] == "new-name" and "new-name" not in listed
    moved = cli(home, "projects", "rename", "old-name", "newer", "--rewrite-history")
    assert moved.returncode == 0, moved.stderr
    assert "3 earlier rows moved from old-name to newer" in moved.stdout
    con = sqlite3.connect(home / "db.sqlite")
    assert con.execute("SELECT project, COUNT(*) FROM requests GROUP BY 1").fetchall() == [
        ("newer", 3)
    ]
    assert con.execute("SELECT name, target FROM project_aliases").fetchall() == [
        ("old-name", "newer")
    ]


def test_merge_moves_rows_only_when_asked_and_says_how_many(home: Path) -> None:
    add(home, project="side")
    add(home, project="side")
    add(home, project="main")
    kept = cli(home, "projects", "merge", "side", "main")
    assert kept.returncode == 0, kept.stderr
    assert "2 earlier rows stay under side" in kept.stdout
    moved = json.loads(
        cli(home, "projects", "merge", "side", "main", "--rewrite-history", "--json").stdout
    )
    assert (moved["rows_moved"], moved["rows_kept"]) == (2, 0)
    con = sqlite3.connect(home / "db.sqlite")
    assert con.execute("SELECT COUNT(*) FROM requests WHERE project = 'main'").fetchone() == (3,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rename", "a", "b"), "already has 1 rows: use `projects merge a b`"),
        (("merge", "a", "nowhere"), "no project 'nowhere' to merge into"),
        (("rename", "ghost", "x"), "no project 'ghost'"),
        (("rename", "a", "a"), "the same project"),
    ],
)
def test_refused_moves_change_nothing(home: Path, args: tuple[str, ...], message: str) -> None:
    add(home, project="a")
    add(home, project="b")
    done = cli(home, "projects", *args)
    assert done.returncode == 1 and message in done.stderr
    con = sqlite3.connect(home / "db.sqlite")
    assert con.execute("SELECT COUNT(*) FROM project_aliases").fetchone() == (0,)
    assert con.execute("SELECT project FROM requests ORDER BY 1").fetchall() == [("a",), ("b",)]


def test_bad_slug_is_a_usage_error(home: Path) -> None:
    add(home, project="a")
    done = cli(home, "projects", "rename", "a", "Not Valid")
    assert done.returncode == 2 and "not a project slug" in done.stderr


def test_why_explains_a_row_and_refuses_an_unknown_id(home: Path) -> None:
    detail = {"pid": 4242, "process": "node", "cwd": "/src/shop", "saw": "git repository /src/shop"}
    request_id = add(
        home,
        project="shop",
        attribution="git",
        attribution_detail=json.dumps(detail),
        client_process="node",
    )
    said = cli(home, "why", request_id)
    assert said.returncode == 0, said.stderr
    assert "Decided by: git (the name of the git repository the client runs in)" in said.stdout
    assert "It saw:   git repository /src/shop" in said.stdout
    assert "node (pid 4242)" in said.stdout
    by_prefix = json.loads(cli(home, "why", request_id[:16], "--json").stdout)
    assert (by_prefix["id"], by_prefix["layer"], by_prefix["cwd"]) == (
        request_id,
        "git",
        "/src/shop",
    )
    missing = cli(home, "why", "0123456789abcdef")
    assert missing.returncode == 1 and "no request" in missing.stderr


def test_report_by_client(home: Path) -> None:
    add(home, client_process="claude", cost_nanousd=7)
    add(home, client_process="claude", cost_nanousd=5)
    add(home, client_process=None, cost_nanousd=1)
    report = json.loads(cli(home, "report", "--by", "client", "--since", "1d", "--json").stdout)
    groups = {g["key"]["client"]: (g["requests"], g["cost_nanousd"]) for g in report["groups"]}
    assert groups == {"claude": (2, 12), "(unknown)": (1, 1)}


def test_migration_2_on_a_ledger_from_before_it(home: Path) -> None:
    home.mkdir()
    ledger = home / "db.sqlite"
    con = sqlite3.connect(ledger, isolation_level=None)
    con.execute(
        "CREATE TABLE _migrations(id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)"
    )
    for statement in schema.MIGRATIONS[0][2]:
        con.execute(statement)
    con.execute("INSERT INTO _migrations VALUES (1, 'create_requests', 0)")
    old = sample_row(project="legacy")
    columns = [c for c in ("id", "requested_at", "provider", "api", "host", "status", "project")]
    con.execute(
        f"INSERT INTO requests ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [getattr(old, c) for c in columns],
    )
    con.close()
    said = json.loads(cli(home, "why", old.id, "--json").stdout)
    assert (said["project"], said["layer"]) == ("legacy", None)
    assert said["layer_means"] == "recorded before attribution existed"
    con = sqlite3.connect(ledger)
    assert {2} <= {row[0] for row in con.execute("SELECT id FROM _migrations")}
    names = {row[1] for row in con.execute("PRAGMA table_info(requests)")}
    assert {"attribution", "attribution_detail", "client_process"} <= names
