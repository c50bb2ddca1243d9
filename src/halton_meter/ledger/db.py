"""Opening the ledger with the settings every connection needs (WAL, busy timeout)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from halton_meter.ledger.schema import migrate


def connect(path: Path) -> sqlite3.Connection:
    """Open the ledger, creating and migrating it when needed.

    Autocommit mode (isolation_level=None): transactions that write use BEGIN IMMEDIATE
    explicitly, which avoids SQLite's stale-snapshot "database is locked" trap.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=10000")
    migrate(con)
    return con
