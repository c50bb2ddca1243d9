"""`POST /v1/requests/batch`: strict validation, then one transaction that stores each new row
once and adds it to the daily rollups.

Idempotent by row id: the ledger's key is (workspace, machine, id, requested_at) and rows that
are already there are skipped (`ON CONFLICT DO NOTHING`), so a batch sent twice, or two senders
racing with the same batch, store each row once; only rows actually inserted reach the
rollups, in the same statement. A batch is all or nothing: one bad row refuses the batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from halton_meter.pricing import price_row, stored_row_facts
from halton_meter.teamserver.schema import ROLLUP_MEASURES, ensure_partitions, month_start

Text = Annotated[str, StringConstraints(max_length=512)]
Count = Annotated[int, Field(ge=0, le=2**62)]
TIMESTAMP_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"


class WireRow(BaseModel):
    """One ledger row as a machine sends it: metadata only, never bodies or keys."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
    requested_at: Annotated[str, StringConstraints(pattern=TIMESTAMP_RE)]
    provider: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    api: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    host: Text | None = None
    model: Text | None = None
    model_requested: Text | None = None
    stream: bool
    input_tokens: Count | None = None
    cache_read_tokens: Count | None = None
    cache_write_tokens: Count | None = None
    cache_write_1h_tokens: Count | None = None
    output_tokens: Count | None = None
    reasoning_tokens: Count | None = None
    web_search_requests: Count | None = None
    http_status: Annotated[int, Field(ge=0, le=999)] | None = None
    status: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    error_class: Text | None = None
    provider_error_code: Text | None = None
    latency_ms: Annotated[float, Field(ge=0, le=1e9)] | None = None
    ttft_ms: Annotated[float, Field(ge=0, le=1e9)] | None = None
    tokens_complete: bool
    response_id: Text | None = None
    service_tier: Text | None = None
    user_agent: Text | None = None
    project: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    cost_nanousd: Annotated[int, Field(ge=0, le=2**62)] | None = None
    price_source: Text | None = None
    attribution: Annotated[str, StringConstraints(max_length=100)] | None = None
    client_process: Annotated[str, StringConstraints(max_length=200)] | None = None
    provider_cost_usd: (
        Annotated[str, StringConstraints(pattern=r"^\d{1,12}(\.\d{1,18})?$")] | None
    ) = None
    # Sent since ledger migration 5; a row from an older machine has none and gets the one the
    # backfill rule derives from host and api (providers/registry.py).
    wire: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None

    @field_validator("requested_at")
    @classmethod
    def _a_real_moment(cls, value: str) -> str:
        """The pattern lets 2025-06-00 or 2025-02-30 through; refuse them here (422), not
        at storage (a 500). Found by fuzz/ (issue 18)."""
        parse_timestamp(value)  # its ValueError becomes a validation error
        return value


class Batch(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    workspace_id: Annotated[str, StringConstraints(max_length=64)]
    machine_id: Annotated[str, StringConstraints(max_length=64)]
    rows: list[WireRow]


_TEXT = "text[]"
# (column, SQL array type) in the order they are sent to unnest().
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", _TEXT),
    ("requested_at", "timestamptz[]"),
    ("provider", _TEXT),
    ("api", _TEXT),
    ("host", _TEXT),
    ("model", _TEXT),
    ("model_requested", _TEXT),
    ("stream", "boolean[]"),
    ("input_tokens", "bigint[]"),
    ("cache_read_tokens", "bigint[]"),
    ("cache_write_tokens", "bigint[]"),
    ("cache_write_1h_tokens", "bigint[]"),
    ("output_tokens", "bigint[]"),
    ("reasoning_tokens", "bigint[]"),
    ("web_search_requests", "bigint[]"),
    ("http_status", "integer[]"),
    ("status", _TEXT),
    ("error_class", _TEXT),
    ("provider_error_code", _TEXT),
    ("latency_ms", "float8[]"),
    ("ttft_ms", "float8[]"),
    ("tokens_complete", "boolean[]"),
    ("response_id", _TEXT),
    ("service_tier", _TEXT),
    ("user_agent", _TEXT),
    ("project", _TEXT),
    ("provider_cost_usd", _TEXT),
    ("attribution", _TEXT),
    ("client_process", _TEXT),
    ("machine_cost_nanousd", "bigint[]"),
    ("machine_price_source", _TEXT),
    ("cost_nanousd", "bigint[]"),
    ("price_source", _TEXT),
    ("wire", _TEXT),
)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
INGEST_SQL = f"""
WITH inserted AS (
    INSERT INTO ledger (workspace_id, machine_id, {_NAMES})
    SELECT %(workspace)s, %(machine)s, {_NAMES}
    FROM unnest({", ".join(f"%({name})s::{kind}" for name, kind in _COLUMNS)}) AS t({_NAMES})
    ON CONFLICT DO NOTHING
    RETURNING requested_at, project, provider, COALESCE(model, model_requested, '(unknown)') AS m,
        status, latency_ms, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens,
        reasoning_tokens, cost_nanousd, machine_cost_nanousd
), rolled AS (
    INSERT INTO daily_rollups (workspace_id, day, machine_id, project, provider, model,
        {", ".join(ROLLUP_MEASURES)}, last_request_at)
    SELECT %(workspace)s, (requested_at AT TIME ZONE 'UTC')::date, %(machine)s, project,
        provider, m, count(*), count(*) FILTER (WHERE status <> 'ok'),
        COALESCE(sum(input_tokens), 0), COALESCE(sum(cache_read_tokens), 0),
        COALESCE(sum(cache_write_tokens), 0), COALESCE(sum(output_tokens), 0),
        COALESCE(sum(reasoning_tokens), 0), COALESCE(sum(cost_nanousd), 0),
        count(*) FILTER (WHERE cost_nanousd IS NULL), COALESCE(sum(machine_cost_nanousd), 0),
        count(*) FILTER (WHERE machine_cost_nanousd IS NULL), COALESCE(sum(latency_ms), 0),
        count(latency_ms), max(requested_at)
    FROM inserted GROUP BY 2, 4, 5, 6 ORDER BY 2, 4, 5, 6
    ON CONFLICT (workspace_id, day, machine_id, project, provider, model) DO UPDATE SET
        {", ".join(f"{m} = daily_rollups.{m} + EXCLUDED.{m}" for m in ROLLUP_MEASURES)},
        last_request_at = GREATEST(daily_rollups.last_request_at, EXCLUDED.last_request_at)
)
SELECT count(*) FROM inserted
"""


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def columns_for(rows: Sequence[WireRow]) -> dict[str, list[Any]]:
    """Column arrays for unnest(), with the server's own price beside the machine's: the same
    `pricing.price_row` the machine priced it with, with the server's catalogue."""
    arrays: dict[str, list[Any]] = {name: [] for name, _ in _COLUMNS}
    for row in rows:
        values = row.model_dump()
        facts = stored_row_facts(values)
        quote = price_row(facts)
        values["requested_at"] = parse_timestamp(row.requested_at)
        values["wire"] = facts.wire
        values["machine_cost_nanousd"] = values.pop("cost_nanousd")
        values["machine_price_source"] = values.pop("price_source")
        values["cost_nanousd"] = quote.cost_nanousd
        values["price_source"] = quote.price_source
        for name, _ in _COLUMNS:
            arrays[name].append(values[name])
    return arrays


class PartitionCache:
    """Months whose partitions exist, so ingest asks the catalogue once per month."""

    def __init__(self) -> None:
        self.known: set[date] = set()

    def ensure(self, con: psycopg.Connection[Any], moments: list[datetime]) -> None:
        months = {month_start(moment.date()) for moment in moments} - self.known
        if months:
            ensure_partitions(con, months)
            self.known |= months


def store_batch(
    con: psycopg.Connection[Any],
    workspace_id: str,
    machine_id: str,
    rows: Sequence[WireRow],
    partitions: PartitionCache,
) -> int:
    """Store the new rows of a batch; returns how many were new (the rest were already there).
    Retries a deadlock between two senders of overlapping batches."""
    arrays = columns_for(rows)
    partitions.ensure(con, arrays["requested_at"])
    params: dict[str, Any] = {"workspace": workspace_id, "machine": machine_id, **arrays}
    for attempt in range(5):
        try:
            with con.transaction():
                found = con.execute(INGEST_SQL, params).fetchone()
                con.execute(
                    "UPDATE machines SET last_seen_at = now() WHERE id = %s AND "
                    "(last_seen_at IS NULL OR last_seen_at < now() - interval '5 seconds')",
                    (machine_id,),
                )
            return int(found[0]) if found else 0
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == 4:
                raise
    return 0  # pragma: no cover


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
