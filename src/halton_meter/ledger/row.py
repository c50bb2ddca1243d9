"""One ledger row: what the meter records for one LLM call. Never bodies or keys; of the
headers only the rate-limit/quota families (kept beside the row, in `quota_observations`)."""

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
    # Migration 6: how the call was paid for: api | subscription | unknown (providers'
    # BILLING_KINDS). A subscription row's cost is its API-equivalent value, never money spent.
    billing: str = "unknown"
    # Migration 6, stored in `quota_observations` (not a `requests` column): the opaque account
    # label and the response's rate-limit/quota header families (compact JSON).
    quota_account: str | None = None
    quota_headers: str | None = None
    # Migration 8: where a cloud ran the call (providers.base.Route): the family of the model a
    # cloud resells (anthropic on Bedrock), its region and the cloud's own project (Vertex).
    model_family: str | None = None
    cloud_region: str | None = None
    cloud_project: str | None = None
    # Migration 13: the branch and HEAD commit of the client's git work tree (attribution/).
    git_branch: str | None = None
    git_commit: str | None = None

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


# Fields kept in `quota_observations` beside the row rather than in `requests`.
SIDE_FIELDS = ("quota_account", "quota_headers")
ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow) if f.name not in SIDE_FIELDS)
# Ten times faster than dataclasses.astuple, which deep-copies.
_ROW_VALUES = operator.attrgetter(*ROW_COLUMNS)
INSERT_SQL = (
    f"INSERT OR IGNORE INTO requests ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
INSERT_QUOTA_SQL = (
    "INSERT OR IGNORE INTO quota_observations (request_id, observed_at, provider, account, "
    "headers) VALUES (?, ?, ?, ?, ?)"
)


def quota_values(row: LedgerRow) -> tuple[object, ...] | None:
    """The row's `quota_observations` entry, or None when its response had no quota headers."""
    if row.quota_headers is None or row.quota_account is None:
        return None
    return tuple(
        _storable(v)
        for v in (row.id, row.requested_at, row.provider, row.quota_account, row.quota_headers)
    )
