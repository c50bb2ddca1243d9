"""The team server's PostgreSQL schema: numbered, additive-only migrations in `_migrations`.

The ledger is partitioned by month of `requested_at` (old months can be detached or dropped
whole, and a 30-day query touches at most two partitions); partitions are created on demand by
ingest, and a DEFAULT partition catches anything else so an insert never fails for want of
one. Rollups by day are kept up to date in the same transaction as each insert
(`daily_rollups`), so a team report never scans the raw rows.
"""

from __future__ import annotations

from datetime import date

import psycopg

from halton_meter.providers.registry import backfill_wire_sql

# The summed columns of `daily_rollups`: what ingest adds to and every rollup reads.
ROLLUP_MEASURES = (
    "requests",
    "errors",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "unpriced_requests",
    "machine_cost_nanousd",
    "machine_unpriced_requests",
    "latency_ms_sum",
    "latency_count",
    # Migration 4: `cost_nanousd` and `machine_cost_nanousd` are money spent (rows not billed by
    # a subscription); a subscription's calls are counted, and valued at API prices, apart.
    "subscription_requests",
    "subscription_value_nanousd",
)

# Every table of daily sums, by its key after workspace_id. `daily_rollups` has every
# dimension; the two coarser ones hold the same sums with fewer rows, so a team-wide report
# reads far fewer rows than `daily_rollups` has (200 projects x 20 machines x 6 models x 30
# days). Every key holds the machine: a batch only ever writes its own machine's rollup rows,
# so machines sending at once never wait on one another's row locks. Ingest, the server's
# `reprice` and a machine's resent prices change all three in one transaction.
ROLLUP_TABLES: dict[str, tuple[str, ...]] = {
    "daily_rollups": ("day", "machine_id", "project", "provider", "model"),
    "daily_machine_rollups": ("day", "machine_id", "provider", "model"),
    "daily_project_rollups": ("day", "machine_id", "project"),
    # Migration 7: by the client's git branch (the machine's `git_branch`; '(none)' outside a
    # repository and for rows from machines that do not send it), for `by_branch`.
    "daily_branch_rollups": ("day", "machine_id", "project", "branch"),
}
NO_BRANCH = "(none)"  # the machine's `report --by branch` name for rows without one


def coarser_rollup_statements(table: str, known: dict[str, str] | None = None) -> list[str]:
    """Create a coarser rollup table and fill it from daily_rollups (rows it has are kept).
    `known`: SQL values for keys daily_rollups does not have (the same for every row then)."""
    keys = ROLLUP_TABLES[table]
    known = known or {}
    sources = ", ".join(known.get(key, key) for key in keys)
    grouped = ", ".join(key for key in keys if key not in known)
    types = {"day": "date", "machine_id": "uuid"}
    columns = ",\n".join(
        [f"{key} {types.get(key, 'text')} NOT NULL" for key in keys]
        + [
            f"{name} {'double precision' if name == 'latency_ms_sum' else 'bigint'} NOT NULL"
            for name in ROLLUP_MEASURES
        ]
    )
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (workspace_id uuid NOT NULL, {columns}, "
        f"last_request_at timestamptz NOT NULL, PRIMARY KEY (workspace_id, {', '.join(keys)}))",
        f"INSERT INTO {table} (workspace_id, {', '.join(keys)}, {', '.join(ROLLUP_MEASURES)}, "
        f"last_request_at) SELECT workspace_id, {sources}, "
        f"{', '.join(f'sum({m})' for m in ROLLUP_MEASURES)}, max(last_request_at) "
        f"FROM daily_rollups GROUP BY workspace_id, {grouped} ON CONFLICT DO NOTHING",
    ]


MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "workspaces_machines_pairing",
        [
            """CREATE TABLE IF NOT EXISTS workspaces (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                name text NOT NULL UNIQUE,
                created_at timestamptz NOT NULL DEFAULT now()
            )""",
            "INSERT INTO workspaces (name) VALUES ('default') ON CONFLICT DO NOTHING",
            """CREATE TABLE IF NOT EXISTS machines (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                workspace_id uuid NOT NULL REFERENCES workspaces(id),
                machine_uid text NOT NULL,
                name text NOT NULL,
                user_name text NOT NULL,
                token_hash text UNIQUE,
                status text NOT NULL DEFAULT 'active',
                paired_at timestamptz NOT NULL DEFAULT now(),
                revoked_at timestamptz,
                last_seen_at timestamptz,
                UNIQUE (workspace_id, machine_uid)
            )""",
            """CREATE TABLE IF NOT EXISTS pairings (
                code text PRIMARY KEY,
                poll_secret_hash text NOT NULL,
                workspace text NOT NULL,
                machine_uid text NOT NULL,
                machine_name text NOT NULL,
                user_name text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz NOT NULL,
                approved_at timestamptz,
                claimed_at timestamptz,
                machine_id uuid REFERENCES machines(id)
            )""",
            """CREATE TABLE IF NOT EXISTS admin_tokens (
                token_hash text PRIMARY KEY,
                label text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now()
            )""",
        ],
    ),
    (
        2,
        "ledger_partitioned_and_daily_rollups",
        [
            """CREATE TABLE IF NOT EXISTS ledger (
                workspace_id uuid NOT NULL,
                machine_id uuid NOT NULL,
                id text NOT NULL,
                requested_at timestamptz NOT NULL,
                provider text NOT NULL,
                api text NOT NULL,
                host text,
                model text,
                model_requested text,
                stream boolean NOT NULL,
                input_tokens bigint,
                cache_read_tokens bigint,
                cache_write_tokens bigint,
                cache_write_1h_tokens bigint,
                output_tokens bigint,
                reasoning_tokens bigint,
                web_search_requests bigint,
                http_status integer,
                status text NOT NULL,
                error_class text,
                provider_error_code text,
                latency_ms double precision,
                ttft_ms double precision,
                tokens_complete boolean NOT NULL,
                response_id text,
                service_tier text,
                user_agent text,
                project text NOT NULL,
                provider_cost_usd text,
                attribution text,
                client_process text,
                machine_cost_nanousd bigint,
                machine_price_source text,
                cost_nanousd bigint,
                price_source text,
                received_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (workspace_id, machine_id, id, requested_at)
            ) PARTITION BY RANGE (requested_at)""",
            "CREATE TABLE IF NOT EXISTS ledger_default PARTITION OF ledger DEFAULT",
            """CREATE INDEX IF NOT EXISTS ledger_workspace_time
                ON ledger (workspace_id, requested_at)""",
            """CREATE INDEX IF NOT EXISTS ledger_workspace_project_time
                ON ledger (workspace_id, project, requested_at)""",
            """CREATE TABLE IF NOT EXISTS daily_rollups (
                workspace_id uuid NOT NULL,
                day date NOT NULL,
                machine_id uuid NOT NULL,
                project text NOT NULL,
                provider text NOT NULL,
                model text NOT NULL,
                requests bigint NOT NULL,
                errors bigint NOT NULL,
                input_tokens bigint NOT NULL,
                cache_read_tokens bigint NOT NULL,
                cache_write_tokens bigint NOT NULL,
                output_tokens bigint NOT NULL,
                reasoning_tokens bigint NOT NULL,
                cost_nanousd bigint NOT NULL,
                unpriced_requests bigint NOT NULL,
                machine_cost_nanousd bigint NOT NULL,
                machine_unpriced_requests bigint NOT NULL,
                latency_ms_sum double precision NOT NULL,
                latency_count bigint NOT NULL,
                last_request_at timestamptz NOT NULL,
                PRIMARY KEY (workspace_id, day, machine_id, project, provider, model)
            )""",
            """CREATE INDEX IF NOT EXISTS daily_rollups_project
                ON daily_rollups (workspace_id, project, day)""",
        ],
    ),
    (
        3,
        "ledger_wire",
        [
            # The wire format that carried each call (the machine's ledger migration 5), so
            # the server prices a row by the same rule as the machine. Rows already stored,
            # and rows from machines that do not send it, get the backfill rule's.
            "ALTER TABLE ledger ADD COLUMN IF NOT EXISTS wire text",
            f"UPDATE ledger SET wire = {backfill_wire_sql()} WHERE wire IS NULL",
        ],
    ),
    (
        4,
        "ledger_billing",
        [
            # How each call was paid for (the machine's ledger migration 6): api, subscription
            # or unknown. Rows already stored: unknown, except Code Assist's (a subscription).
            "ALTER TABLE ledger ADD COLUMN IF NOT EXISTS billing text NOT NULL DEFAULT 'unknown'",
            "UPDATE ledger SET billing = 'subscription' WHERE wire = 'gemini-code-assist'",
            "ALTER TABLE daily_rollups "
            "ADD COLUMN IF NOT EXISTS subscription_requests bigint NOT NULL DEFAULT 0, "
            "ADD COLUMN IF NOT EXISTS subscription_value_nanousd bigint NOT NULL DEFAULT 0",
            # Those rows were stored unpriced, so only their count moves; the money sums stay.
            """UPDATE daily_rollups AS d SET subscription_requests = s.n FROM (
                SELECT workspace_id, (requested_at AT TIME ZONE 'UTC')::date AS day,
                    machine_id, project, provider,
                    COALESCE(model, model_requested, '(unknown)') AS model, count(*) AS n
                FROM ledger WHERE billing = 'subscription' GROUP BY 1, 2, 3, 4, 5, 6
            ) AS s WHERE d.workspace_id = s.workspace_id AND d.day = s.day
                AND d.machine_id = s.machine_id AND d.project = s.project
                AND d.provider = s.provider AND d.model = s.model""",
        ],
    ),
    (
        5,
        "roles_and_workspace_prices",
        [
            # Accounts: each row of admin_tokens is one account's token, an admin or a viewer,
            # of one workspace or (NULL) of every workspace. The tokens made before roles were
            # admins of every workspace, as they always were.
            "ALTER TABLE admin_tokens ADD COLUMN IF NOT EXISTS id bigint "
            "GENERATED BY DEFAULT AS IDENTITY",
            "ALTER TABLE admin_tokens ADD COLUMN IF NOT EXISTS role text NOT NULL "
            "DEFAULT 'admin' CHECK (role IN ('admin', 'viewer'))",
            "ALTER TABLE admin_tokens ADD COLUMN IF NOT EXISTS workspace_id uuid "
            "REFERENCES workspaces(id)",
            "ALTER TABLE admin_tokens ADD COLUMN IF NOT EXISTS removed_at timestamptz",
            "CREATE UNIQUE INDEX IF NOT EXISTS admin_tokens_id ON admin_tokens (id)",
            # The team's own prices: a workspace's [[pricing.overrides]] as TOML, as loaded.
            """CREATE TABLE IF NOT EXISTS workspace_prices (
                workspace_id uuid PRIMARY KEY REFERENCES workspaces(id),
                overrides_toml text NOT NULL,
                entries integer NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now(),
                updated_by text NOT NULL
            )""",
        ],
    ),
    (
        6,
        "coarser_daily_rollups",
        # Filled from daily_rollups; from then on kept by ingest with it.
        coarser_rollup_statements("daily_machine_rollups")
        + coarser_rollup_statements("daily_project_rollups"),
    ),
    (
        7,
        "git_branch_commit",
        # The client's git branch and HEAD commit (the machine's ledger migration 10), and
        # the day's sums by branch. Rows stored before had none: their sums go to '(none)'.
        [
            "ALTER TABLE ledger ADD COLUMN IF NOT EXISTS git_branch text, "
            "ADD COLUMN IF NOT EXISTS git_commit text",
            *coarser_rollup_statements("daily_branch_rollups", {"branch": f"'{NO_BRANCH}'"}),
        ],
    ),
    (
        8,
        "team_budgets",
        [
            # A workspace's budgets (teamserver/budgets.py): the keys of a machine's
            # [[budgets]] table plus `machine`, as JSON; where their alerts go.
            """CREATE TABLE IF NOT EXISTS team_budgets (
                workspace_id uuid NOT NULL REFERENCES workspaces(id),
                name text NOT NULL,
                definition jsonb NOT NULL,
                webhook_url text,
                webhook_format text NOT NULL DEFAULT 'plain',
                webhook_secret text,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                updated_by text NOT NULL,
                PRIMARY KEY (workspace_id, name)
            )""",
            # Each threshold once per period: the row is the "fired" mark (its INSERT decides
            # who delivers), and it keeps how the delivery went.
            """CREATE TABLE IF NOT EXISTS team_budget_alerts (
                workspace_id uuid NOT NULL REFERENCES workspaces(id),
                budget text NOT NULL,
                window_start timestamptz NOT NULL,
                threshold integer NOT NULL,
                spent_nanousd bigint NOT NULL,
                limit_nanousd bigint NOT NULL,
                fired_at timestamptz NOT NULL DEFAULT now(),
                channel text NOT NULL,
                delivered_at timestamptz,
                attempts integer NOT NULL DEFAULT 0,
                last_problem text,
                PRIMARY KEY (workspace_id, budget, window_start, threshold)
            )""",
        ],
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]
# Serialises migrations when several server processes start at once.
_MIGRATION_LOCK = 74_836_001


def migrate(con: psycopg.Connection[object]) -> list[int]:
    """Apply pending migrations in one transaction each; returns the ids applied here."""
    applied_now: list[int] = []
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        con.execute(
            "CREATE TABLE IF NOT EXISTS _migrations ("
            "id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
        )
        applied = {row[0] for row in con.execute("SELECT id FROM _migrations").fetchall()}  # type: ignore[index]
        for number, name, statements in MIGRATIONS:
            if number in applied:
                continue
            for statement in statements:
                con.execute(statement)
            con.execute(
                "INSERT INTO _migrations (id, name, applied_at) VALUES (%s, %s, now())",
                (number, name),
            )
            applied_now.append(number)
    return applied_now


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"ledger_{month.year:04d}_{month.month:02d}"


def ensure_partitions(con: psycopg.Connection[object], months: set[date]) -> None:
    """Create the monthly partitions these months need, each in its own short transaction.

    A month whose rows already sit in the DEFAULT partition keeps them there (PostgreSQL would
    refuse the new partition); queries read through the parent, so results are the same."""
    existing = {
        row[0]  # type: ignore[index]
        for row in con.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'ledger'"
        ).fetchall()
    }
    for month in sorted(months):
        name = partition_name(month)
        if name in existing:
            continue
        try:
            with con.transaction():
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF ledger "
                    f"FOR VALUES FROM ('{month.isoformat()}T00:00:00Z') "
                    f"TO ('{next_month(month).isoformat()}T00:00:00Z')"
                )
        except (psycopg.errors.CheckViolation, psycopg.errors.DuplicateTable):
            pass  # rows for that month already in DEFAULT, or another process made it
