"""One ledger row: what the meter records for one LLM call. Never bodies, keys or headers."""

from __future__ import annotations

import operator
import secrets
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime


def new_request_id(now_ms: int | None = None) -> str:
    """Time-ordered id: 12 hex digits of milliseconds, then 12 random hex digits."""
    ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return f"{ms:012x}{secrets.token_hex(6)}"


def utc_iso_ms(epoch_seconds: float) -> str:
    """UTC timestamp with milliseconds, fixed width so text order is time order."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class LedgerRow:
    id: str
    requested_at: str
    provider: str
    api: str
    host: str
    model: str | None
    model_requested: str | None
    stream: bool
    input_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    cache_write_1h_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    web_search_requests: int | None
    http_status: int | None
    status: str
    error_class: str | None
    provider_error_code: str | None
    latency_ms: float | None
    ttft_ms: float | None
    tokens_complete: bool
    response_id: str | None
    service_tier: str | None
    user_agent: str | None
    project: str
    cost_nanousd: int | None
    price_source: str | None
    provider_cost_usd: str | None
    raw_usage: str | None
    # Migration 2: who made the call (attribution/).
    attribution: str | None = None
    attribution_detail: str | None = None
    client_process: str | None = None
    # Migration 5: the wire format that carried the call (providers/registry.py); rows written
    # before it get one derived from host and api (`providers.backfill_wire`).
    wire: str | None = None
    # Migration 8: where a cloud ran the call (providers.base.Route): the family of the model a
    # cloud resells (anthropic on Bedrock), its region and the cloud's own project (Vertex).
    model_family: str | None = None
    cloud_region: str | None = None
    cloud_project: str | None = None

    def values(self) -> tuple[object, ...]:
        """Column values SQLite can always store: text is made valid UTF-8 (a client may send a
        Latin-1 User-Agent or a lone surrogate in a model name) and integers that do not fit
        64 bits become NULL, so one odd call can never stop the writer."""
        return tuple(_storable(value) for value in _ROW_VALUES(self))


_INT64_MAX = 2**63 - 1


def _storable(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT64_MAX:
        return None
    return value


ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
# Ten times faster than dataclasses.astuple, which deep-copies.
_ROW_VALUES = operator.attrgetter(*ROW_COLUMNS)
INSERT_SQL = (
    f"INSERT OR IGNORE INTO requests ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
