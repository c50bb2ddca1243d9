"""The unmetered-traffic spool: how the edge tells the ledger what it tunnelled unmetered.

While the daemon is down the edge tunnels LLM connections itself, and those calls have no
row. So the gap is never hidden, the edge appends one JSON line per such connection to
`unmetered.jsonl` in the home folder (when it ends, and every minute while it lasts), and the
daemon, when it runs, moves the file aside and stores the lines as unmetered spans in the
ledger (ledger/spans.py). A file, not the edge's memory or a request to the daemon: these
spans happen exactly while the daemon is away, and must outlive an edge restart too.

- Each line is one connection, keyed by `id` (edge pid, edge start, sequence): a later line
  for the same id replaces the earlier one's counters (they only grow), so a line read twice,
  or a progress line followed by the final one, is stored once.
- The edge writes a line with one `os.write` on a file opened with O_APPEND, so lines never
  interleave; the daemon renames the spool before reading and reads a renamed file only on a
  later round, when any write that opened the old name has long finished.
- The spool stops growing at `SPOOL_LIMIT` (a daemon that never comes back); the edge counts
  what it could not write.

Standard library only: the edge imports this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SPOOL_FILE = "unmetered.jsonl"
TAKEN_SUFFIX = ".taken"
SPOOL_LIMIT = 32 * 1024 * 1024  # ~100,000 connections
# A taken file is read this long after the rename at the earliest (see the module's notes).
TAKEN_SETTLE_SECONDS = 1.0


@dataclass(slots=True)
class UnmeteredConnection:
    """One LLM connection the edge carried without metering, as far as it got so far."""

    id: str
    host: str
    port: int
    kind: str  # "tunnel" (CONNECT) or "http" (plain-HTTP requests)
    opened_at: float  # Unix time
    last_at: float  # the last byte either way
    bytes_up: int = 0  # client to provider
    bytes_down: int = 0  # provider to client
    closed_at: float | None = None  # None while open
    closed_by: str | None = None  # "client", "resumed" (closed so metering resumes), "edge-stop"

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> UnmeteredConnection | None:
        """A spool line's object, or None when it is not one (a truncated line)."""
        try:
            closed = item.get("closed_at")
            return cls(
                id=str(item["id"]),
                host=str(item["host"]),
                port=int(item["port"]),
                kind=str(item.get("kind", "tunnel")),
                opened_at=float(item["opened_at"]),
                last_at=float(item["last_at"]),
                bytes_up=int(item.get("bytes_up", 0)),
                bytes_down=int(item.get("bytes_down", 0)),
                closed_at=None if closed is None else float(closed),
                closed_by=None if item.get("closed_by") is None else str(item["closed_by"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def spool_path(home: Path) -> Path:
    return home / SPOOL_FILE


def append(home: Path, connection: UnmeteredConnection) -> bool:
    """Append one line; False when it was not written (spool full, or the disk refused)."""
    line = (json.dumps(asdict(connection), separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(spool_path(home), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_size + len(line) > SPOOL_LIMIT:
            return False
        return os.write(fd, line) == len(line)
    except OSError:
        return False
    finally:
        os.close(fd)


def take(home: Path, now: float | None = None) -> list[Path]:
    """Move the spool aside (when there is one) and return the taken files that are ready to
    read, oldest first. The caller deletes each after storing what it holds."""
    now = time.time() if now is None else now
    spool = spool_path(home)
    if spool.exists():
        with contextlib.suppress(OSError):  # Windows: the edge has it open this instant
            spool.rename(home / f"{SPOOL_FILE}.{time.time_ns()}{TAKEN_SUFFIX}")
    ready = []
    for path in home.glob(f"{SPOOL_FILE}.*{TAKEN_SUFFIX}"):
        stamp = path.name[len(SPOOL_FILE) + 1 : -len(TAKEN_SUFFIX)]
        # The name carries when it was renamed (a rename keeps the file's mtime).
        if stamp.isdigit() and now - int(stamp) / 1e9 >= TAKEN_SETTLE_SECONDS:
            ready.append(path)
    return sorted(ready)


def read(path: Path) -> list[UnmeteredConnection]:
    """The connections in one taken file; lines that do not parse are skipped."""
    found = []
    with contextlib.suppress(OSError), path.open("rb") as handle:
        for raw in handle:
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if isinstance(item, dict) and (connection := UnmeteredConnection.from_json(item)):
                found.append(connection)
    return found
