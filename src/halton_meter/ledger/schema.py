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
# The sums as migration 3 created them (its statements are never edited).
ROLLUP_SUMS_V3 = (
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
# Migration 6 splits money by billing: `cost_nanousd` is money spent (rows not billed by a
# subscription), `subscription_value_nanousd` the API-equivalent value of subscription calls.
# The two are never added up.
ROLLUP_SUMS = (*ROLLUP_SUMS_V3, "subscription_requests", "subscription_value_nanousd")
SUBSCRIPTION = "'subscription'"


def rollup_values(row: str, version: int = 6) -> list[str]:
    """SQL expressions for one requests row (`NEW` or `OLD`), in key-then-sums order, as the
    rollup of that migration `version` (3 or 6) sums them."""
    unpriced = f"{row}.cost_nanousd IS NULL"
    prompt = (
        f"COALESCE({row}.input_tokens, 0) + COALESCE({row}.cache_read_tokens, 0) "
        f"+ COALESCE({row}.cache_write_tokens, 0)"
    )
    cost = f"COALESCE({row}.cost_nanousd, 0)"
    subscription = f"{row}.billing = {SUBSCRIPTION}"
    spent = cost if version < 6 else f"CASE WHEN {subscription} THEN 0 ELSE {cost} END"
    values = [
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
        spent,
        f"{unpriced}",
        f"CASE WHEN {unpriced} THEN {prompt} ELSE 0 END",
        f"CASE WHEN {unpriced} THEN COALESCE({row}.output_tokens, 0) ELSE 0 END",
        f"COALESCE({row}.latency_ms, 0)",
        f"{row}.latency_ms IS NOT NULL",
    ]
    if version >= 6:
        values += [f"{subscription}", f"CASE WHEN {subscription} THEN {cost} ELSE 0 END"]
    return values


def _sums(version: int) -> tuple[str, ...]:
    return ROLLUP_SUMS if version >= 6 else ROLLUP_SUMS_V3


def _rollup_upsert(row: str, sign: str, version: int) -> str:
    names = _sums(version)
    columns = ", ".join((*ROLLUP_KEY, *names))
    values = rollup_values(row, version)
    keys, sums = values[: len(ROLLUP_KEY)], values[len(ROLLUP_KEY) :]
    selected = ", ".join([*keys, *(f"{sign}({value})" for value in sums)])
    update = ", ".join(f"{name} = {name} + excluded.{name}" for name in names)
    return (
        f"INSERT INTO daily_rollup ({columns}) SELECT {selected} WHERE true "
        f"ON CONFLICT ({', '.join(ROLLUP_KEY)}) DO UPDATE SET {update};"
    )


def _backfill(version: int, where: str = "") -> str:
    values = rollup_values("r", version)
    keys, sums = values[: len(ROLLUP_KEY)], values[len(ROLLUP_KEY) :]
    columns = ", ".join((*ROLLUP_KEY, *_sums(version)))
    selected = ", ".join([*keys, *(f"SUM({value})" for value in sums)])
    return (
        f"INSERT INTO daily_rollup ({columns}) SELECT {selected} FROM requests AS r{where} "
        "GROUP BY 1, 2, 3, 4, 5"
    )


def _update_trigger(version: int) -> str:
    return (
        "CREATE TRIGGER IF NOT EXISTS daily_rollup_update AFTER UPDATE ON requests BEGIN "
        + _rollup_upsert("OLD", "-", version)
        + " "
        + _rollup_upsert("NEW", "+", version)
        + " END"
    )


def _rollup_triggers(version: int) -> list[str]:
    return [
        "CREATE TRIGGER IF NOT EXISTS daily_rollup_insert AFTER INSERT ON requests BEGIN "
        + _rollup_upsert("NEW", "+", version)
        + " END",
        "CREATE TRIGGER IF NOT EXISTS daily_rollup_delete AFTER DELETE ON requests BEGIN "
        + _rollup_upsert("OLD", "-", version)
        + " END",
        # A reprice or a project rename moves a row's sums from its old key to its new one.
        _update_trigger(version),
    ]


_DROP_ROLLUP_TRIGGERS = [
    f"DROP TRIGGER IF EXISTS daily_rollup_{name}" for name in ("insert", "delete", "update")
]

DAILY_ROLLUP_MIGRATION = [
    "CREATE TABLE IF NOT EXISTS daily_rollup ("
    + ", ".join(f"{name} TEXT NOT NULL" for name in ROLLUP_KEY)
    + ", "
    + ", ".join(
        f"{name} {'REAL' if name == 'latency_ms_sum' else 'INTEGER'} NOT NULL DEFAULT 0"
        for name in ROLLUP_SUMS_V3
    )
    + f", PRIMARY KEY ({', '.join(ROLLUP_KEY)})) WITHOUT ROWID",
    _backfill(3),
    *_rollup_triggers(3),
    # The report's p95 latency reads only this index, not the table.
    "CREATE INDEX IF NOT EXISTS requests_time_latency ON requests (requested_at, latency_ms)",
    # The API's request list pages by (requested_at, id) within a project and provider.
    "CREATE INDEX IF NOT EXISTS requests_project_provider_time "
    "ON requests (project, provider, requested_at)",
]

# Providers that have subscription rows: the only rollup keys migration 6 must rebuild.
_SUBSCRIBED = f"(SELECT DISTINCT provider FROM requests WHERE billing = {SUBSCRIPTION})"

BILLING_MIGRATION = [
    *_DROP_ROLLUP_TRIGGERS,
    # How each call was paid for. Older rows: `unknown` (counted as spent, as before), except
    # Code Assist's, which the ledger can tell by their wire: a Google login's subscription.
    "ALTER TABLE requests ADD COLUMN billing TEXT NOT NULL DEFAULT 'unknown'",
    "UPDATE requests SET billing = 'subscription' WHERE wire = 'gemini-code-assist'",
    "ALTER TABLE daily_rollup ADD COLUMN subscription_requests INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE daily_rollup ADD COLUMN subscription_value_nanousd INTEGER NOT NULL DEFAULT 0",
    f"DELETE FROM daily_rollup WHERE provider IN {_SUBSCRIBED}",
    _backfill(6, f" WHERE r.provider IN {_SUBSCRIBED}"),
    *_rollup_triggers(6),
    # The rate-limit/quota headers of each response that carried them, beside its row rather
    # than in `requests`: only some rows have them (a few hundred bytes each), the quota view
    # reads them by account and time, and the requests table (scanned by reports, read by the
    # sync) stays narrow. `account` is an opaque label (capture/accounts.py), never a token.
    """CREATE TABLE IF NOT EXISTS quota_observations (
        request_id TEXT PRIMARY KEY,
        observed_at TEXT NOT NULL,
        provider TEXT NOT NULL,
        account TEXT NOT NULL,
        headers TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS quota_observations_account_time "
    "ON quota_observations (account, observed_at)",
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
            _update_trigger(3),
        ],
    ),
    (6, "billing_and_quota", BILLING_MIGRATION),
    (
        7,
        "unmetered_spans",
        [
            # LLM connections the edge tunnelled while the daemon was away: no request rows
            # (nothing was read), but the gap is kept and shown (ledger/spans.py). One row per
            # connection, keyed by the edge's id for it, so a spool line stored twice is one.
            """CREATE TABLE IF NOT EXISTS unmetered_spans (
                id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                port INTEGER NOT NULL,
                kind TEXT NOT NULL,
                opened_at TEXT NOT NULL,
                last_at TEXT NOT NULL,
                closed_at TEXT,
                closed_by TEXT,
                bytes_up INTEGER NOT NULL DEFAULT 0,
                bytes_down INTEGER NOT NULL DEFAULT 0,
                recorded_at TEXT NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS unmetered_spans_opened ON unmetered_spans (opened_at)",
        ],
    ),
    (
        8,
        "cloud_facts",
        [
            # Where a cloud (Bedrock, Vertex, Azure) ran the call: the family of the model it
            # resells, its region, and the cloud's project (a Vertex project id, never the
            # project the row is attributed to). NULL for first-party APIs and older rows.
            "ALTER TABLE requests ADD COLUMN model_family TEXT",
            "ALTER TABLE requests ADD COLUMN cloud_region TEXT",
            "ALTER TABLE requests ADD COLUMN cloud_project TEXT",
        ],
    ),
    (
        9,
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
    (
        10,
        "git_branch_commit",
        [
            # The branch and HEAD commit of the client's git work tree, read from `.git` when
            # the row was built (attribution/gitrefs.py); NULL outside a repository and for
            # older rows. `report --by branch|commit` and `pr-cost` read them.
            "ALTER TABLE requests ADD COLUMN git_branch TEXT",
            "ALTER TABLE requests ADD COLUMN git_commit TEXT",
            "CREATE INDEX IF NOT EXISTS requests_git_branch ON requests (git_branch, requested_at)",
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
