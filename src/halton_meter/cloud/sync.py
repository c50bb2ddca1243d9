"""Pushing the ledger to the team server: the local ledger is the queue.

`requests` has an implicit rowid that grows in commit order (one SQLite writer at a time), so
the rows after `cloud_sync.synced_rowid` are exactly what is still to send. A batch is sent,
and only once the server has answered 200 does the position move past it; a crash in between
sends the batch again, which the server stores once (idempotent by row id). So nothing is lost
while offline and nothing is stored twice.

Answers: 401 pauses the sync as unauthorised, 403 as forbidden (both wait for the user:
`cloud connect` or `cloud resume`); anything else (server down, 5xx, a refused batch) marks it
degraded and is retried with back-off, without pausing.
"""

from __future__ import annotations

import hashlib
import logging
import random
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from halton_meter.cloud.credentials import Credentials, CredentialsError, load_credentials
from halton_meter.cloud.http import TransportError, request_json
from halton_meter.config import CloudSettings
from halton_meter.ledger.db import connect
from halton_meter.paths import Paths

log = logging.getLogger(__name__)

# The wire contract with the server, named explicitly so a new ledger column is never sent
# before the server knows it. Never sent: raw_usage (the provider's usage object verbatim; the
# normalised columns carry what counts) and attribution_detail (process ids and folders). The
# ledger holds no bodies, keys or headers to begin with.
WIRE_COLUMNS = (
    "id",
    "requested_at",
    "provider",
    "api",
    "host",
    "model",
    "model_requested",
    "stream",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "web_search_requests",
    "http_status",
    "status",
    "error_class",
    "provider_error_code",
    "latency_ms",
    "ttft_ms",
    "tokens_complete",
    "response_id",
    "service_tier",
    "user_agent",
    "project",
    "cost_nanousd",
    "price_source",
    "provider_cost_usd",
    "attribution",
    "client_process",
    "wire",
    "billing",
    # Ledger migration 10; the server stores them since its migration 7 (upgrade it first:
    # a server that predates them refuses the batch, as for any new column).
    "git_branch",
    "git_commit",
)
# `[cloud] privacy = "minimal"`: sent as null. A branch's name can say what the work is about.
MINIMAL_DROPS = ("user_agent", "response_id", "client_process", "git_branch", "git_commit")

ACTIVE, DEGRADED, PAUSED, NOT_CONFIGURED = "ACTIVE", "DEGRADED", "PAUSED", "NOT-CONFIGURED"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class SyncState:
    machine_uid: str
    sync_target: str | None
    synced_rowid: int
    synced_id: str | None
    rows_sent: int
    last_sync_at: str | None
    last_attempt_at: str | None
    last_error: str | None
    paused_reason: str | None


def read_state(con: sqlite3.Connection) -> SyncState:
    row = con.execute(
        "SELECT machine_uid, sync_target, synced_rowid, synced_id, rows_sent, last_sync_at, "
        "last_attempt_at, last_error, paused_reason FROM cloud_sync WHERE id = 1"
    ).fetchone()
    return SyncState(*row)


def _update(con: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> None:
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute(sql, params)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def set_target(con: sqlite3.Connection, target: str) -> None:
    """A new server or workspace starts from the first row (with today's prices, so nothing is
    left to resend); the same one keeps its place."""
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute(
            "DELETE FROM cloud_resend WHERE (SELECT sync_target FROM cloud_sync WHERE id = 1) "
            "IS NOT ?",
            (target,),
        )
        con.execute(
            "UPDATE cloud_sync SET synced_rowid = CASE WHEN sync_target IS ? THEN synced_rowid "
            "ELSE 0 END, synced_id = CASE WHEN sync_target IS ? THEN synced_id ELSE NULL END, "
            "sync_target = ?, paused_reason = NULL, last_error = NULL WHERE id = 1",
            (target, target, target),
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def pause(con: sqlite3.Connection, reason: str) -> None:
    _update(con, "UPDATE cloud_sync SET paused_reason = ? WHERE id = 1", (reason,))


def resume(con: sqlite3.Connection) -> None:
    _update(con, "UPDATE cloud_sync SET paused_reason = NULL, last_error = NULL WHERE id = 1")


def _record_failure(con: sqlite3.Connection, error: str) -> None:
    _update(
        con,
        "UPDATE cloud_sync SET last_error = ?, last_attempt_at = ? WHERE id = 1",
        (error[:500], _now()),
    )


def _record_sent(con: sqlite3.Connection, rowid: int, row_id: str | None, count: int) -> None:
    """Move the position forward (never back: the CLI and the daemon may both be sending)."""
    now = _now()
    _update(
        con,
        "UPDATE cloud_sync SET synced_id = CASE WHEN ? > synced_rowid THEN ? ELSE synced_id END, "
        "synced_rowid = MAX(synced_rowid, ?), rows_sent = rows_sent + ?, last_sync_at = ?, "
        "last_attempt_at = ?, last_error = NULL WHERE id = 1",
        (rowid, row_id, rowid, count, now, now),
    )


def unsynced_rows(con: sqlite3.Connection, state: SyncState) -> int:
    row = con.execute(
        "SELECT COUNT(*) FROM requests WHERE rowid > ?", (_position(con, state),)
    ).fetchone()
    return int(row[0])


def _position(con: sqlite3.Connection, state: SyncState) -> int:
    """The rowid to continue after. A rowid is not an alias of a declared key, so VACUUM may
    renumber rows: the id recorded beside it finds the row again, or (not found) the sync
    starts over and the server skips what it has."""
    if state.synced_rowid == 0 or state.synced_id is None:
        return state.synced_rowid
    at = con.execute("SELECT id FROM requests WHERE rowid = ?", (state.synced_rowid,)).fetchone()
    if at is not None and at[0] == state.synced_id:
        return state.synced_rowid
    moved = con.execute("SELECT rowid FROM requests WHERE id = ?", (state.synced_id,)).fetchone()
    return int(moved[0]) if moved is not None else 0


def wire_row(values: dict[str, Any], settings: CloudSettings, workspace_id: str) -> dict[str, Any]:
    """One row as sent, after `[cloud] privacy` and `hash_projects`."""
    row = dict(values)
    row["stream"] = bool(row["stream"])
    row["tokens_complete"] = bool(row["tokens_complete"])
    if settings.privacy == "minimal":
        for column in MINIMAL_DROPS:
            row[column] = None
    if settings.hash_projects:
        row["project"] = hash_project(row["project"], workspace_id)
    return row


def hash_project(project: str, workspace_id: str) -> str:
    """Salted with the workspace, so every machine of a team hashes a project alike."""
    digest = hashlib.sha256(f"{workspace_id}:{project}".encode()).hexdigest()
    return f"h:{digest[:20]}"


@dataclass(slots=True)
class DrainResult:
    state: str  # ACTIVE (caught up), DEGRADED, PAUSED, NOT-CONFIGURED
    rows_sent: int = 0
    rows_stored: int = 0
    error: str | None = None
    rows_resent: int = 0  # re-priced rows whose new price was sent again


def drain(
    con: sqlite3.Connection,
    credentials: Credentials,
    settings: CloudSettings,
    max_batches: int | None = None,
) -> DrainResult:
    """Send batches in order until the queue is empty, the server refuses, or max_batches."""
    result = DrainResult(ACTIVE)
    state = read_state(con)
    if state.paused_reason:
        return DrainResult(PAUSED, error=state.paused_reason)
    if state.sync_target != credentials.sync_target:
        set_target(con, credentials.sync_target)
        state = read_state(con)
    position = _position(con, state)
    columns = ", ".join(WIRE_COLUMNS)
    batches = 0
    while max_batches is None or batches < max_batches:
        found = con.execute(
            f"SELECT rowid, {columns} FROM requests WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (position, settings.batch_size),
        ).fetchall()
        if not found:
            break  # caught up; nothing written, so an idle meter never touches the ledger
        rows = [
            wire_row(
                dict(zip(WIRE_COLUMNS, row[1:], strict=True)), settings, credentials.workspace_id
            )
            for row in found
        ]
        body = {
            "workspace_id": credentials.workspace_id,
            "machine_id": credentials.machine_id,
            "rows": rows,
        }
        try:
            status, answer = request_json(
                "POST", f"{credentials.server_url}/v1/requests/batch", body, token=credentials.token
            )
        except TransportError as error:
            _record_failure(con, f"server unreachable: {error}")
            return DrainResult(DEGRADED, result.rows_sent, result.rows_stored, str(error))
        if status == 200:
            position = int(found[-1][0])
            _record_sent(con, position, str(found[-1][1]), len(found))
            result.rows_sent += len(found)
            result.rows_stored += int(answer.get("stored", 0))
            batches += 1
            continue
        message = f"HTTP {status}: {answer.get('error', answer)}"
        if status in (401, 403):
            reason = ("unauthorised" if status == 401 else "forbidden") + f" ({message})"
            pause(con, reason)
            return DrainResult(PAUSED, result.rows_sent, result.rows_stored, reason)
        _record_failure(con, message)
        return DrainResult(DEGRADED, result.rows_sent, result.rows_stored, message)
    if max_batches is None or batches < max_batches:
        return _resend(con, credentials, settings, position, result)
    return result


RESEND_COLUMNS = ("id", "requested_at", "cost_nanousd", "price_source")


def rows_to_resend(con: sqlite3.Connection) -> int:
    return int(con.execute("SELECT COUNT(*) FROM cloud_resend").fetchone()[0])


def _resend(
    con: sqlite3.Connection,
    credentials: Credentials,
    settings: CloudSettings,
    position: int,
    result: DrainResult,
) -> DrainResult:
    """Rows re-priced here after the server took them: send their new price, which replaces
    the server's copy of this machine's figure (by id; sent twice, it is set twice to the same
    value). Only rows the server has confirmed (at or before the position) go this way; the
    others carry their new price in the normal flow. A queue entry is removed only if no
    re-price bumped its version meanwhile."""
    while True:
        found = con.execute(
            "SELECT q.id, q.version, r.requested_at, r.cost_nanousd, r.price_source "
            "FROM cloud_resend q JOIN requests r ON r.id = q.id WHERE r.rowid <= ? LIMIT ?",
            (position, settings.batch_size),
        ).fetchall()
        if not found:
            # Entries for rows deleted since (or never confirmed as sent) are dropped.
            _update(
                con,
                "DELETE FROM cloud_resend WHERE id NOT IN (SELECT id FROM requests)",
            )
            return result
        body = {
            "workspace_id": credentials.workspace_id,
            "machine_id": credentials.machine_id,
            "rows": [
                {
                    "id": row[0],
                    "requested_at": row[2],
                    "cost_nanousd": row[3],
                    "price_source": row[4],
                }
                for row in found
            ],
        }
        try:
            status, answer = request_json(
                "POST",
                f"{credentials.server_url}/v1/requests/machine-prices",
                body,
                token=credentials.token,
            )
        except TransportError as error:
            _record_failure(con, f"server unreachable: {error}")
            return DrainResult(DEGRADED, result.rows_sent, result.rows_stored, str(error))
        if status != 200:
            message = f"HTTP {status} resending re-priced rows: {answer.get('error', answer)}"
            if status in (401, 403):
                reason = ("unauthorised" if status == 401 else "forbidden") + f" ({message})"
                pause(con, reason)
                return DrainResult(PAUSED, result.rows_sent, result.rows_stored, reason)
            _record_failure(con, message)
            return DrainResult(DEGRADED, result.rows_sent, result.rows_stored, message)
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                "DELETE FROM cloud_resend WHERE id = ? AND version = ?",
                [(row[0], row[1]) for row in found],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        result.rows_resent += len(found)


def status(paths: Paths, con: sqlite3.Connection, settings: CloudSettings) -> dict[str, Any]:
    """What `cloud status` shows (docs/cli.md)."""
    try:
        credentials = load_credentials(paths)
        problem = None
    except CredentialsError as error:
        credentials, problem = None, str(error)
    state = read_state(con)
    if credentials is None:
        label = NOT_CONFIGURED
    elif state.paused_reason:
        label = PAUSED
    elif state.last_error:
        label = DEGRADED
    else:
        label = ACTIVE
    same_target = credentials is not None and state.sync_target == credentials.sync_target
    return {
        "state": label,
        "server": credentials.server_url if credentials else None,
        "workspace": credentials.workspace if credentials else None,
        "machine": credentials.machine_name if credentials else None,
        "machine_id": credentials.machine_id if credentials else None,
        "user": credentials.user if credentials else None,
        "last_sync_at": state.last_sync_at if same_target else None,
        "last_attempt_at": state.last_attempt_at if same_target else None,
        "unsynced_rows": unsynced_rows(con, state)
        if same_target
        else int(con.execute("SELECT COUNT(*) FROM requests").fetchone()[0]),
        "rows_sent": state.rows_sent,
        "rows_to_resend": rows_to_resend(con),
        "pause_reason": state.paused_reason,
        "last_error": problem or state.last_error,
        "privacy": settings.privacy,
        "hash_projects": settings.hash_projects,
        "daemon_running": paths.daemon_state.exists(),
    }


class SyncLoop:
    """The daemon's sync thread: a drain every `sync_interval_seconds`, exponential back-off
    (with jitter, up to `max_backoff_seconds`) after a failure. It reads the credentials and
    the pause each time, so `cloud connect`, `pause` and `resume` need no daemon restart."""

    def __init__(
        self,
        paths: Paths,
        settings: CloudSettings,
        after_sync: Callable[[sqlite3.Connection, Credentials | None], None] | None = None,
    ) -> None:
        self._paths = paths
        self._settings = settings
        # Called after each drain that caught up (and when not paired): the team budgets'
        # fetch (budgets/team.py), so their figures include every row just sent.
        self._after_sync = after_sync
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloud-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Never holds up the daemon's exit for long: a batch cut here is sent again next time
        (the server keeps each row once)."""
        self._stop.set()
        self._thread.join(timeout)

    def _after(self, con: sqlite3.Connection, credentials: Credentials | None) -> None:
        if self._after_sync is None:
            return
        try:
            self._after_sync(con, credentials)
        except Exception:
            log.exception("cloud sync: the step after the sync failed")

    def _run(self) -> None:
        con = connect(self._paths.ledger)
        failures = 0
        last_problem: str | None = None
        try:
            while not self._stop.is_set():
                wait = self._settings.sync_interval_seconds
                try:
                    credentials = load_credentials(self._paths)
                    if credentials is None:
                        self._after(con, None)
                    else:
                        result = drain(con, credentials, self._settings)
                        if result.state == DEGRADED:
                            failures += 1
                            wait = min(
                                self._settings.max_backoff_seconds,
                                self._settings.sync_interval_seconds * 2 ** min(failures, 20),
                            ) * random.uniform(0.8, 1.0)
                        else:
                            failures = 0
                        if result.state == ACTIVE:
                            self._after(con, credentials)
                        if result.error != last_problem:
                            if result.error:
                                log.warning("cloud sync %s: %s", result.state, result.error)
                            else:
                                log.info("cloud sync active again")
                            last_problem = result.error
                except (CredentialsError, sqlite3.Error) as error:
                    log.warning("cloud sync: %s", error)
                    failures += 1
                except Exception:
                    log.exception("cloud sync failed")
                    failures += 1
                self._stop.wait(wait)
        finally:
            con.close()
