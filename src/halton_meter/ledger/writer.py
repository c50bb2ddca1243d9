"""The ledger writer: one thread per process, batched commits, never in the way of traffic.

The proxy's event loop only calls `submit` (an O(1) put on a SimpleQueue). The writer thread
turns each pending call into a row (parsing happens here, not on the event loop; the writer's
`RowBuilder` prices and attributes it, ledger/build.py), and commits
whatever has accumulated in one BEGIN IMMEDIATE ... COMMIT. If the ledger cannot be written
(disk full, locked by another program) rows stay in memory and are retried; traffic never waits.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

from halton_meter.ledger.build import PendingCall, RowBuilder
from halton_meter.ledger.db import connect
from halton_meter.ledger.row import INSERT_QUOTA_SQL, INSERT_SQL, LedgerRow, quota_values

log = logging.getLogger(__name__)

MAX_BATCH = 500
# After the first row of a batch arrives, wait this long for more: one commit per 50 ms under
# load instead of one per row, which halves the writer's CPU cost per row (bench/README.md).
BATCH_WINDOW_SECONDS = 0.05
# Rows kept in memory while the ledger is unwritable (a full disk, a lock held for long):
# about 1 KB each, so at most ~200 MB. Past this the oldest are dropped, counted in
# `rows_dropped` and logged; `status`, `doctor` and /metrics show the count.
MAX_BACKLOG = 200_000
DROP_LOG_EVERY = 1000  # after the first dropped row, one log line per this many more
RETRY_SECONDS = (0.05, 0.2, 1.0, 5.0)


class ReadyRow(Protocol):
    """A row built by its submitter (tools and tests that write rows themselves); `to_row`
    runs on the writer thread."""

    def to_row(self) -> LedgerRow: ...


# What `submit` takes: a call the writer's RowBuilder turns into a row, or a ready row.
PendingRow = PendingCall | ReadyRow


_STOP = object()


class LedgerWriter:
    def __init__(
        self,
        path: Path,
        on_commit: Callable[[list[LedgerRow]], None] | None = None,
        builder: RowBuilder | None = None,
    ):
        self._path = path
        self._builder = builder if builder is not None else RowBuilder()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._backlog: deque[LedgerRow] = deque()
        self._on_commit = on_commit
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self.rows_written = 0
        self.rows_dropped = 0
        # Why the ledger cannot be written right now (None: it can), and since when.
        self.last_error: str | None = None
        self.unwritable_since: float | None = None
        self.finished_cleanly = False
        self._closing = False
        # Opened here so a ledger that cannot be opened fails the daemon's start, loudly.
        self._con: sqlite3.Connection | None = connect(path)

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: PendingRow) -> None:
        """Hand a finished call to the writer. Safe from any thread; never blocks."""
        if self._closing:  # nothing reads the queue any more: say so instead of losing quietly
            self.rows_dropped += 1
            log.error("a call finished after the ledger writer closed; its row is lost")
            return
        self._queue.put(item)

    def close(self, timeout: float = 120.0) -> bool:
        """Write every pending row, then stop the thread. False when rows were lost."""
        self._closing = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "ledger writer still busy after %.0f s; %d rows lost", timeout, self.pending()
            )
            return False
        return self.finished_cleanly and self.rows_dropped == 0

    def pending(self) -> int:
        return self._queue.qsize() + len(self._backlog)

    def health(self) -> dict[str, object]:
        """What `status` and `doctor` show (through the API): is the ledger being written,
        and if not why, since when, how many rows wait in memory and how many were lost."""
        return {
            "writable": self.unwritable_since is None,
            "error": self.last_error,
            "unwritable_since": self.unwritable_since,
            "pending_rows": self.pending(),
            "held_rows_cap": MAX_BACKLOG,
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_dropped,
        }

    # --- writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        """The thread's body: never dies while the process lives, whatever a row holds."""
        while True:
            try:
                self._loop()
                return
            except Exception:
                log.exception("ledger writer failed; restarting it")
                time.sleep(0.1)

    def _loop(self) -> None:
        stopping = False
        failures = 0
        while True:
            wait = None if not self._backlog else RETRY_SECONDS[min(failures, 3)]
            # While the ledger fails, everything queued joins the backlog, where the cap
            # applies; otherwise a batch at a time.
            limit = MAX_BATCH if not failures else None
            stopping = self._collect(wait, limit) or stopping
            if self._backlog:
                if self._commit():
                    failures = 0
                else:
                    failures += 1
                    if stopping and failures > len(RETRY_SECONDS):
                        log.error("ledger unwritable at shutdown; %d rows lost", len(self._backlog))
                        self.rows_dropped += len(self._backlog)
                        break
            if stopping and not self._backlog and self._queue.empty():
                break
        if self._con is not None:
            self._con.close()
        self.finished_cleanly = not self._backlog

    def _collect(self, wait: float | None, limit: int | None = MAX_BATCH) -> bool:
        """Move queued items into the backlog: block for the first, then take what is there."""
        stopping = False
        try:
            item = self._queue.get(timeout=wait) if wait is not None else self._queue.get()
        except queue.Empty:
            return False
        taken = 0
        deadline = time.monotonic() + BATCH_WINDOW_SECONDS
        while True:
            if item is _STOP:
                stopping = True
            else:
                self._add(cast(PendingRow, item))
                taken += 1
            if limit is not None and taken >= limit:
                break
            try:
                if stopping:  # flush what is there now, wait for nothing more
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
        return stopping

    def _add(self, item: PendingRow) -> None:
        try:
            if isinstance(item, PendingCall):
                row = self._builder.build(item.facts())
            else:
                row = item.to_row()
        except Exception:  # a bug in parsing must never stop the writer
            log.exception("could not build a ledger row; call dropped")
            self.rows_dropped += 1
            return
        if len(self._backlog) >= MAX_BACKLOG:
            self._backlog.popleft()
            self._dropped_oldest()
        self._backlog.append(row)

    def _dropped_oldest(self) -> None:
        self.rows_dropped += 1
        if self.rows_dropped == 1 or self.rows_dropped % DROP_LOG_EVERY == 0:
            log.error(
                "ledger unwritable (%s) and %d rows held in memory, the most it keeps: "
                "dropping the oldest; %d dropped so far",
                self.last_error or "not written yet",
                MAX_BACKLOG,
                self.rows_dropped,
            )

    def _commit(self) -> bool:
        batch = list(self._backlog)
        try:
            if self._con is None:
                self._con = connect(self._path)
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.executemany(INSERT_SQL, [row.values() for row in batch])
                quota = [values for row in batch if (values := quota_values(row)) is not None]
                if quota:
                    self._con.executemany(INSERT_QUOTA_SQL, quota)
                self._con.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): a second
                # ROLLBACK would raise and hide the real error.
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as error:
            # Locked, busy, disk full, I/O: the rows are fine, the ledger is not (yet).
            if self.unwritable_since is None:
                self.unwritable_since = time.time()
            self.last_error = str(error)
            log.warning("ledger write failed (%s); %d rows kept for retry", error, len(batch))
            self._reopen()
            return False
        except Exception:
            # Something in a row SQLite refuses: write the rows one by one, drop only the bad.
            log.exception("a batch of %d rows was refused; writing them one by one", len(batch))
            self._commit_one_by_one(batch)
            return True
        self._backlog.clear()
        if self.unwritable_since is not None:
            log.warning(
                "ledger writable again after %.0f s; %d held rows written",
                time.time() - self.unwritable_since,
                len(batch),
            )
            self.unwritable_since = self.last_error = None
        self.rows_written += len(batch)
        if self._on_commit is not None:
            try:
                self._on_commit(batch)
            except Exception:
                log.exception("on_commit callback failed")
        return True

    def _commit_one_by_one(self, batch: list[LedgerRow]) -> None:
        assert self._con is not None
        self._backlog.clear()
        for row in batch:
            try:
                self._con.execute("BEGIN IMMEDIATE")
                self._con.execute(INSERT_SQL, row.values())
                if (values := quota_values(row)) is not None:
                    self._con.execute(INSERT_QUOTA_SQL, values)
                self._con.execute("COMMIT")
                self.rows_written += 1
            except Exception:  # sqlite3.Error, or a value it cannot bind: counted, never lost
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                self.rows_dropped += 1
                log.error("ledger row %s refused and dropped", row.id)

    def _reopen(self) -> None:
        try:
            if self._con is not None:
                self._con.close()
        except sqlite3.Error:
            pass
        self._con = None
