"""Numbered, additive-only migrations recorded in `_migrations`.

A shipped entry is never edited or renumbered; new columns are nullable or have a constant
default, so an older release keeps reading and writing a ledger that a newer one migrated.
"""

from __future__ import annotations

import sqlite3
import time

from halton_meter.providers.registry import backfill_wire_sql

# Migration 3: one row per (UTC day, project, provider, api, model) with the sums every report
# needs, kept by triggers so any writer (this release, an older one, a reprice, a rename) keeps it
# exact. The dashboard and `report` read it instead of scanning a million requests.
ROLLUP_KEY = ("day", "project", "provider", "api", "model")
ROLLUP_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "unpriced_requests",
    "unpriced_prompt_tokens",
    "unpriced_output_tokens",
    "latency_ms_sum",
    "latency_count",
)


def rollup_values(row: str) -> list[str]:
    """SQL expressions for one requests row (`NEW` or `OLD`), in key-then-sums order."""
    unpriced = f"{row}.cost_nanousd IS NULL"
    prompt = (
        f"COALESCE({row}.input_tokens, 0) + COALESCE({row}.cache_read_tokens, 0) "
        f"+ COALESCE({row}.cache_write_tokens, 0)"
    )
    return [
        f"substr({row}.requested_at, 1, 10)",
        f"{row}.project",
        f"{row}.provider",
        f"{row}.api",
        f"COALESCE({row}.model, {row}.model_requested, '(unknown)')",
        "1",
        f"{row}.status != 'ok'",
        f"COALESCE({row}.input_tokens, 0)",
        f"COALESCE({row}.cache_read_tokens, 0)",
        f"COALESCE({row}.cache_write_tokens, 0)",
        f"COALESCE({row}.output_tokens, 0)",
        f"COALESCE({row}.reasoning_tokens, 0)",
        f"COALESCE({row}.cost_nanousd, 0)",
        f"{unpriced}",
        f"CASE WHEN {unpriced} THEN {prompt} ELSE 0 END",
        f"CASE WHEN {unpriced} THEN COALESCE({row}.output_tokens, 0) ELSE 0 END",
        f"COALESCE({row}.latency_ms, 0)",
        f"{row}.latency_ms IS NOT NULL",
    ]


def _rollup_upsert(row: str, sign: str) -> str:
    columns = ", ".join((*ROLLUP_KEY, *ROLLUP_SUMS))
    values = rollup_values(row)
    keys, sums = values[: len(ROLLUP_KEY)], values[len(ROLLUP_KEY) :]
    selected = ", ".join([*keys, *(f"{sign}({value})" for value in sums)])
    update = ", ".join(f"{name} = {name} + excluded.{name}" for name in ROLLUP_SUMS)
    return (
        f"INSERT INTO daily_rollup ({columns}) SELECT {selected} WHERE true "
        f"ON CONFLICT ({', '.join(ROLLUP_KEY)}) DO UPDATE SET {update};"
    )


def _backfill() -> str:
    values = rollup_values("r")
    keys, sums = values[: len(ROLLUP_KEY)], values[len(ROLLUP_KEY) :]
    columns = ", ".join((*ROLLUP_KEY, *ROLLUP_SUMS))
    selected = ", ".join([*keys, *(f"SUM({value})" for value in sums)])
    return (
        f"INSERT INTO daily_rollup ({columns}) SELECT {selected} FROM requests AS r "
        "GROUP BY 1, 2, 3, 4, 5"
    )


_ROLLUP_UPDATE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS daily_rollup_update AFTER UPDATE ON requests BEGIN "
    + _rollup_upsert("OLD", "-")
    + " "
    + _rollup_upsert("NEW", "+")
    + " END"
)

DAILY_ROLLUP_MIGRATION = [
    "CREATE TABLE IF NOT EXISTS daily_rollup ("
    + ", ".join(f"{name} TEXT NOT NULL" for name in ROLLUP_KEY)
    + ", "
    + ", ".join(
        f"{name} {'REAL' if name == 'latency_ms_sum' else 'INTEGER'} NOT NULL DEFAULT 0"
        for name in ROLLUP_SUMS
    )
    + f", PRIMARY KEY ({', '.join(ROLLUP_KEY)})) WITHOUT ROWID",
    _backfill(),
    "CREATE TRIGGER IF NOT EXISTS daily_rollup_insert AFTER INSERT ON requests BEGIN "
    + _rollup_upsert("NEW", "+")
    + " END",
    "CREATE TRIGGER IF NOT EXISTS daily_rollup_delete AFTER DELETE ON requests BEGIN "
    + _rollup_upsert("OLD", "-")
    + " END",
    # A reprice or a project rename moves a row's sums from its old key to its new one.
    _ROLLUP_UPDATE_TRIGGER,
    # The report's p95 latency reads only this index, not the table.
    "CREATE INDEX IF NOT EXISTS requests_time_latency ON requests (requested_at, latency_ms)",
    # The API's request list pages by (requested_at, id) within a project and provider.
    "CREATE INDEX IF NOT EXISTS requests_project_provider_time "
    "ON requests (project, provider, requested_at)",
]

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "create_requests",
        [
            """CREATE TABLE IF NOT EXISTS requests (
                id TEXT PRIMARY KEY,
                requested_at TEXT NOT NULL,
                provider TEXT NOT NULL,
                api TEXT NOT NULL,
                host TEXT NOT NULL,
                model TEXT,
                model_requested TEXT,
                stream INTEGER NOT NULL DEFAULT 0,
                input_tokens INTEGER,
                cache_read_tokens INTEGER,
                cache_write_tokens INTEGER,
                cache_write_1h_tokens INTEGER,
                output_tokens INTEGER,
                reasoning_tokens INTEGER,
                web_search_requests INTEGER,
                http_status INTEGER,
                status TEXT NOT NULL,
                error_class TEXT,
                provider_error_code TEXT,
                latency_ms REAL,
                ttft_ms REAL,
                tokens_complete INTEGER NOT NULL DEFAULT 0,
                response_id TEXT,
                service_tier TEXT,
                user_agent TEXT,
                project TEXT NOT NULL DEFAULT 'misc',
                cost_nanousd INTEGER,
                price_source TEXT,
                provider_cost_usd TEXT,
                raw_usage TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS requests_requested_at ON requests (requested_at)",
            "CREATE INDEX IF NOT EXISTS requests_project_time ON requests (project, requested_at)",
        ],
    ),
    (
        2,
        "attribution",
        [
            # The layer that decided the project (docs/architecture.md, "Attribution").
            "ALTER TABLE requests ADD COLUMN attribution TEXT",
            # JSON: what that layer saw (pid, process, cwd, …), for `halton-meter why`.
            "ALTER TABLE requests ADD COLUMN attribution_detail TEXT",
            # The client's process name: claude, codex, node, python, …
            "ALTER TABLE requests ADD COLUMN client_process TEXT",
            # `projects rename/merge`: new rows of `name` are recorded under `target`.
            """CREATE TABLE IF NOT EXISTS project_aliases (
                name TEXT PRIMARY KEY,
                target TEXT NOT NULL,
                created_at TEXT NOT NULL
            )""",
        ],
    ),
    (3, "daily_rollup", DAILY_ROLLUP_MIGRATION),
    (
        4,
        "cloud_sync_state",
        [
            # The team-server sync's position in `requests` (its implicit rowid grows in commit
            # order, so rows after `synced_rowid` are the queue), its pause and last outcome,
            # and this ledger's stable machine identity for pairing.
            """CREATE TABLE IF NOT EXISTS cloud_sync (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                machine_uid TEXT NOT NULL,
                sync_target TEXT,
                synced_rowid INTEGER NOT NULL DEFAULT 0,
                synced_id TEXT,
                rows_sent INTEGER NOT NULL DEFAULT 0,
                last_sync_at TEXT,
                last_attempt_at TEXT,
                last_error TEXT,
                paused_reason TEXT
            )""",
            "INSERT OR IGNORE INTO cloud_sync (id, machine_uid) "
            "VALUES (1, lower(hex(randomblob(16))))",
        ],
    ),
    (
        5,
        "wire",
        [
            # The wire format that carried the call, so `reprice` and the team server price a
            # row by the same rule as capture (a Code Assist endpoint is unpriced wherever it
            # is). Older rows: derived from host and api (providers/registry.py, the backfill
            # rule). The backfill changes no summed column or key, so the rollup's update
            # trigger, which would move every row's sums out and back, is off meanwhile.
            "ALTER TABLE requests ADD COLUMN wire TEXT",
            "DROP TRIGGER IF EXISTS daily_rollup_update",
            f"UPDATE requests SET wire = {backfill_wire_sql()} WHERE wire IS NULL",
            _ROLLUP_UPDATE_TRIGGER,
        ],
    ),
    (
        11,
        "cloud_resend",
        [
            # Rows `reprice` changed while the machine is paired: the sync sends their new
            # price again, so the team server's copy of the machine's figure follows. `version`
            # grows with each re-price, so a row re-priced while its resend is in flight is
            # sent once more rather than dropped.
            """CREATE TABLE IF NOT EXISTS cloud_resend (
                id TEXT PRIMARY KEY,
                version INTEGER NOT NULL DEFAULT 1
            )""",
        ],
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def migrate(con: sqlite3.Connection) -> list[int]:
    """Apply pending migrations; safe when several processes start at once.

    BEGIN IMMEDIATE takes the write lock before reading what is applied, so exactly one starter
    applies each migration and the others find nothing to do. Returns the ids applied here.
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS _migrations("
        "id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    applied_now: list[int] = []
    con.execute("BEGIN IMMEDIATE")
    try:
        applied = {row[0] for row in con.execute("SELECT id FROM _migrations")}
        for number, name, statements in MIGRATIONS:
            if number in applied:
                continue
            for statement in statements:  # one execute() each: executescript() would COMMIT
                con.execute(statement)
            con.execute(
                "INSERT INTO _migrations (id, name, applied_at) VALUES (?, ?, ?)",
                (number, name, time.time()),
            )
            applied_now.append(number)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return applied_now


def schema_version(con: sqlite3.Connection) -> int:
    """The highest migration applied, which may be newer than this release knows."""
    row = con.execute("SELECT MAX(id) FROM _migrations").fetchone()
    return int(row[0] or 0)
