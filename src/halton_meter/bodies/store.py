"""`bodies.sqlite` in the home: captured bodies, compressed, one row per ledger row.

Its own file so the ledger stays small and a purge never touches it; created only when the
first body is stored. `secure_delete` is on, so a purged body's pages are zeroed rather than
left in free space. The file is private (0600) like the ledger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import zstandard

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS bodies (
    id TEXT PRIMARY KEY,          -- the ledger row's id
    project TEXT NOT NULL,
    requested_at TEXT NOT NULL,   -- as in the ledger (UTC ISO, ms)
    provider TEXT,
    model TEXT,
    codec TEXT NOT NULL,          -- zstd | zlib
    document BLOB NOT NULL,       -- compressed JSON (see sink.py), redacted
    stored_bytes INTEGER NOT NULL,
    original_bytes INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    redactions TEXT NOT NULL      -- JSON: kind -> count
);
CREATE INDEX IF NOT EXISTS bodies_project_time ON bodies (project, requested_at);
"""


def compress(document: bytes) -> tuple[str, bytes]:
    return "zstd", zstandard.ZstdCompressor(level=6).compress(document)


def decompress(codec: str, blob: bytes) -> bytes:
    if codec == "zstd":
        return zstandard.ZstdDecompressor().decompress(blob)
    return zlib.decompress(blob)


@dataclass(frozen=True, slots=True)
class StoredBody:
    id: str
    project: str
    requested_at: str
    provider: str | None
    model: str | None
    document: dict[str, Any]
    stored_bytes: int
    original_bytes: int
    truncated: bool
    redactions: dict[str, int]


class BodyStore:
    """One connection, used from one thread at a time (the lock covers the rest)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._con is not None:
            return self._con
        if not create and not self.path.exists():
            return None
        if create and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        con = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
        con.execute("PRAGMA secure_delete = ON")
        con.executescript(SCHEMA)
        self._con = con
        return con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def put(
        self,
        *,
        id: str,
        project: str,
        requested_at: str,
        provider: str | None,
        model: str | None,
        document: dict[str, Any],
        original_bytes: int,
        truncated: bool,
        redactions: dict[str, int],
        max_project_bytes: int,
    ) -> int:
        """Store one body; then drop the project's oldest past its cap. Returns stored size."""
        codec, blob = compress(json.dumps(document, ensure_ascii=False).encode())
        with self._lock:
            con = self._connect(create=True)
            assert con is not None
            with con:
                con.execute(
                    "INSERT OR REPLACE INTO bodies VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        id,
                        project,
                        requested_at,
                        provider,
                        model,
                        codec,
                        blob,
                        len(blob),
                        original_bytes,
                        int(truncated),
                        json.dumps(redactions, sort_keys=True),
                    ),
                )
                con.execute(
                    """DELETE FROM bodies WHERE id IN (
                        SELECT id FROM (
                            SELECT id, SUM(stored_bytes) OVER (
                                ORDER BY requested_at DESC, id DESC) AS running
                            FROM bodies WHERE project = ?)
                        WHERE running > ?)""",
                    (project, max_project_bytes),
                )
        return len(blob)

    def get(self, id: str) -> StoredBody | None:
        with self._lock:
            con = self._connect(create=False)
            if con is None:
                return None
            row = con.execute(
                "SELECT id, project, requested_at, provider, model, codec, document, "
                "stored_bytes, original_bytes, truncated, redactions FROM bodies WHERE id = ?",
                (id,),
            ).fetchone()
        if row is None:
            return None
        return StoredBody(
            id=row[0],
            project=row[1],
            requested_at=row[2],
            provider=row[3],
            model=row[4],
            document=json.loads(decompress(row[5], row[6])),
            stored_bytes=row[7],
            original_bytes=row[8],
            truncated=bool(row[9]),
            redactions=json.loads(row[10]),
        )

    def ids(self) -> Iterator[str]:
        with self._lock:
            con = self._connect(create=False)
            rows = [] if con is None else con.execute("SELECT id FROM bodies").fetchall()
        return (row[0] for row in rows)

    def usage(self) -> list[dict[str, Any]]:
        """Per project: how many bodies, how many bytes, the oldest and newest."""
        with self._lock:
            con = self._connect(create=False)
            if con is None:
                return []
            rows = con.execute(
                "SELECT project, COUNT(*), SUM(stored_bytes), MIN(requested_at), "
                "MAX(requested_at) FROM bodies GROUP BY project ORDER BY project"
            ).fetchall()
        return [
            {"project": r[0], "bodies": r[1], "stored_bytes": r[2], "oldest": r[3], "newest": r[4]}
            for r in rows
        ]

    def purge(self, project: str | None = None, before: str | None = None) -> int:
        """Delete bodies (of one project, older than `before`: an ISO date or time); all of
        them when neither is given. Returns how many went."""
        where, params = [], []
        if project is not None:
            where.append("project = ?")
            params.append(project)
        if before is not None:
            where.append("requested_at < ?")
            params.append(before)
        sql = "DELETE FROM bodies" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            con = self._connect(create=False)
            if con is None:
                return 0
            with con:
                count = con.execute(sql, params).rowcount
            if count:
                con.execute("VACUUM")  # give the space back; secure_delete zeroed the pages
        return count

    def expire(self, retention_days: float, now: datetime | None = None) -> int:
        cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
        return self.purge(before=cutoff.strftime("%Y-%m-%dT%H:%M:%S.000Z"))


class ExpiryLoop:
    """The daemon's purge: bodies past their retention go at start and then every hour."""

    def __init__(self, store: BodyStore, retention_days: float, every: float = 3600.0) -> None:
        self._store = store
        self._days = retention_days
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="body-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            try:
                self._store.expire(self._days)
            except Exception:  # a locked or broken file: try again next round
                log.exception("body expiry failed")
            if self._stop.wait(self._every):
                return
