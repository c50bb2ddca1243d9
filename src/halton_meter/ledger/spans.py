"""Unmetered spans: the LLM traffic the edge tunnelled while the daemon was away.

Those calls have no rows (nothing was decrypted), so the ledger keeps what the edge could
count instead: one span per connection (host, first and last byte, bytes each way, how it
ended), from the edge's spool (unmetered.py). Reports, the API, the dashboard and /metrics
show them as holes, so a total over a window with a gap never looks complete.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halton_meter import unmetered
from halton_meter.ledger.db import connect
from halton_meter.ledger.row import utc_iso_ms

log = logging.getLogger(__name__)

INGEST_SECONDS = 2.0
SPAN_COLUMNS = (
    "id",
    "host",
    "port",
    "kind",
    "opened_at",
    "last_at",
    "closed_at",
    "closed_by",
    "bytes_up",
    "bytes_down",
    "recorded_at",
)

# A later line for a connection carries counters at least as large: keep the largest, and
# the close once known.
_UPSERT = f"""INSERT INTO unmetered_spans ({", ".join(SPAN_COLUMNS)})
VALUES ({", ".join("?" for _ in SPAN_COLUMNS)})
ON CONFLICT (id) DO UPDATE SET
    last_at = max(last_at, excluded.last_at),
    closed_at = COALESCE(closed_at, excluded.closed_at),
    closed_by = COALESCE(closed_by, excluded.closed_by),
    bytes_up = max(bytes_up, excluded.bytes_up),
    bytes_down = max(bytes_down, excluded.bytes_down)"""


def store(con: sqlite3.Connection, connections: Iterable[unmetered.UnmeteredConnection]) -> int:
    """Write (or update) one span per connection in one transaction; returns how many."""
    now = utc_iso_ms(datetime.now(UTC).timestamp())
    values = [
        (
            c.id,
            c.host,
            c.port,
            c.kind,
            utc_iso_ms(c.opened_at),
            utc_iso_ms(max(c.last_at, c.opened_at)),
            None if c.closed_at is None else utc_iso_ms(c.closed_at),
            c.closed_by,
            c.bytes_up,
            c.bytes_down,
            now,
        )
        for c in connections
    ]
    if not values:
        return 0
    con.execute("BEGIN IMMEDIATE")
    try:
        con.executemany(_UPSERT, values)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return len(values)


def ingest(con: sqlite3.Connection, home: Path) -> int:
    """Store what the edge has spooled; each taken file is deleted once stored."""
    stored = 0
    for path in unmetered.take(home):
        stored += store(con, unmetered.read(path))
        path.unlink(missing_ok=True)
    return stored


class SpoolIngest:
    """The daemon's thread that moves the edge's spool into the ledger every 2 s."""

    def __init__(self, home: Path, ledger: Path) -> None:
        self.home, self.ledger = home, ledger
        self.stored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unmetered-spool", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        con: sqlite3.Connection | None = None
        try:
            while True:
                try:
                    con = con or connect(self.ledger)
                    count = ingest(con, self.home)
                    if count:
                        self.stored += count
                        log.info("stored %d unmetered span(s) from the edge's spool", count)
                except (OSError, sqlite3.Error) as error:  # a locked ledger: next round
                    log.warning("cannot store the edge's unmetered spans yet: %s", error)
                if self._stop.wait(INGEST_SECONDS):
                    return
        finally:
            if con is not None:
                with contextlib.suppress(sqlite3.Error):
                    con.close()


@dataclass(frozen=True, slots=True)
class Hole:
    """Unmetered traffic to one host within a window: the spans summed."""

    host: str
    port: int
    connections: int
    first_at: str
    last_at: str
    bytes_up: int
    bytes_down: int
    open: int  # connections not closed yet when last spooled

    @property
    def target(self) -> str:
        return self.host if self.port == 443 else f"{self.host}:{self.port}"

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "connections": self.connections,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "open": self.open,
            "text": self.describe(),
        }

    def describe(self, today: str | None = None) -> str:
        """`3 connections to api.anthropic.com between 12:01 and 12:03, 48 kB` (the date too
        when not today, UTC)."""
        today = today or datetime.now(UTC).strftime("%Y-%m-%d")

        def when(stamp: str) -> str:
            return stamp[11:16] if stamp[:10] == today else f"{stamp[:10]} {stamp[11:16]}"

        plural = "" if self.connections == 1 else "s"
        return (
            f"{self.connections} connection{plural} to {self.target} between "
            f"{when(self.first_at)} and {when(self.last_at)} UTC, "
            f"{size_text(self.bytes_up + self.bytes_down)}"
        )


def size_text(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    if count < 1_000_000:
        return f"{count / 1000:.0f} kB"
    return f"{count / 1_000_000:.1f} MB"


def holes(con: sqlite3.Connection, since: str | None, until: str | None) -> list[Hole]:
    """Unmetered traffic per host whose spans overlap [since, until), earliest first. A
    ledger an older release created has no such table yet: no holes."""
    clauses, params = [], []
    if since:
        clauses.append("last_at >= ?")
        params.append(since)
    if until:
        clauses.append("opened_at < ?")
        params.append(until)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = (
        "SELECT host, port, COUNT(*), MIN(opened_at), MAX(last_at), SUM(bytes_up), "
        f"SUM(bytes_down), SUM(closed_at IS NULL) FROM unmetered_spans{where} "
        "GROUP BY host, port ORDER BY MIN(opened_at)"
    )
    try:
        rows = con.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    return [Hole(*row) for row in rows]


def spans(
    con: sqlite3.Connection, since: str | None, until: str | None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The spans themselves (one per connection), newest first."""
    clauses, params = [], []
    if since:
        clauses.append("last_at >= ?")
        params.append(since)
    if until:
        clauses.append("opened_at < ?")
        params.append(until)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = (
        f"SELECT {', '.join(SPAN_COLUMNS)} FROM unmetered_spans{where} "
        "ORDER BY opened_at DESC, id DESC LIMIT ?"
    )
    try:
        rows = con.execute(sql, [*params, limit]).fetchall()
    except sqlite3.OperationalError:
        return []
    return [dict(zip(SPAN_COLUMNS, row, strict=True)) for row in rows]


def pending(home: Path) -> list[unmetered.UnmeteredConnection]:
    """Connections the edge spooled that no daemon has stored yet (it is down, or about to)."""
    found: dict[str, unmetered.UnmeteredConnection] = {}
    files = [unmetered.spool_path(home), *home.glob(f"{unmetered.SPOOL_FILE}.*.taken")]
    for path in files:
        for connection in unmetered.read(path):
            found[connection.id] = connection  # the latest line for a connection wins
    return list(found.values())


def summary(ledger: Path, home: Path, since: str) -> dict[str, Any]:
    """For `status`: the holes recorded since `since`, and what still waits in the spool."""
    recorded: list[Hole] = []
    if ledger.exists():
        try:
            con = sqlite3.connect(f"file:{ledger.as_posix()}?mode=ro", uri=True, timeout=5)
            try:
                recorded = holes(con, since, None)
            finally:
                con.close()
        except sqlite3.Error:
            pass
    waiting: dict[str, int] = {}
    for connection in pending(home):
        target = (
            connection.host if connection.port == 443 else f"{connection.host}:{connection.port}"
        )
        waiting[target] = waiting.get(target, 0) + 1
    return {"recorded": [hole.as_json() for hole in recorded], "spooled": waiting}
