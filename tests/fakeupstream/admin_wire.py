"""The providers' organisation usage and cost reports, in their exact shapes (docs/reconcile.md).

Anthropic: `GET /v1/organizations/usage_report/messages` and `/v1/organizations/cost_report`
(`x-api-key` admin key, `anthropic-version`); OpenAI: `GET /v1/organization/usage/completions`
and `/v1/organization/costs` (`Authorization: Bearer` admin key). Daily buckets from the
requested start to end (empty buckets included, as the providers return them), grouped as asked,
paginated by `limit` (or the dataset's smaller `page_size`) with `has_more` / `next_page`.

What the reports contain is set by the test with `POST /__fake/admin-reports` (a JSON dataset,
see `FakeUpstreamControl.set_admin_reports`); it lives in this module, one per fake process.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from .reply import Call, Reply

ANTHROPIC_USAGE = "/v1/organizations/usage_report/messages"
ANTHROPIC_COST = "/v1/organizations/cost_report"
OPENAI_USAGE = "/v1/organization/usage/completions"
OPENAI_COST = "/v1/organization/costs"
PATHS = (ANTHROPIC_USAGE, ANTHROPIC_COST, OPENAI_USAGE, OPENAI_COST)

_DATASET: dict[str, Any] = {}
_LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}
_WIDTH = {"1d": timedelta(days=1), "1h": timedelta(hours=1), "1m": timedelta(minutes=1)}
_ANTHROPIC_GROUPS = {"model", "workspace_id", "api_key_id", "service_tier", "context_window"}
# Query parameters each endpoint takes (the providers' docs); anything else is refused (400),
# so a filter the real report does not take (the cost reports have no key filter) shows up.
_ANTHROPIC_USAGE_PARAMS = {
    "starting_at", "ending_at", "bucket_width", "group_by[]", "limit", "page",
    "workspace_ids[]", "api_key_ids[]", "models[]", "service_tiers[]", "context_window[]",
}  # fmt: skip
_ANTHROPIC_COST_PARAMS = {"starting_at", "ending_at", "bucket_width", "group_by[]", "limit", "page"}
_OPENAI_USAGE_PARAMS = {
    "start_time", "end_time", "bucket_width", "group_by", "limit", "page",
    "project_ids", "user_ids", "api_key_ids", "models", "batch",
}  # fmt: skip
_OPENAI_COST_PARAMS = {
    "start_time", "end_time", "bucket_width", "group_by", "limit", "page", "project_ids"
}  # fmt: skip


def _unknown(query: dict[str, list[str]], allowed: set[str]) -> list[str]:
    """Parameters not in `allowed` (OpenAI's arrays may also be sent as `name[]`)."""
    return sorted(name for name in query if name not in allowed and name[:-2] not in allowed)


def _values(query: dict[str, list[str]], name: str) -> set[str]:
    """An array parameter, sent as `name[]=a&name[]=b` or `name=a&name=b`."""
    return set(query.get(name, [])) | set(query.get(name + "[]", []))


def _kept(rows: list[dict[str, Any]], filters: dict[str, set[str]]) -> list[dict[str, Any]]:
    """Rows whose field is among the values asked for, for every filter given (a row without
    the field is the default workspace / no project: kept only when nothing is asked)."""
    return [
        row
        for row in rows
        if all(not wanted or row.get(field) in wanted for field, wanted in filters.items())
    ]


def set_dataset(data: Any) -> int:
    """Replace what the reports contain; returns the number of usage rows."""
    _DATASET.clear()
    if isinstance(data, dict):
        _DATASET.update(data)
    return sum(len(_DATASET.get(p, {}).get("usage", [])) for p in ("anthropic", "openai"))


def _json(status: int, body: Any) -> Reply:
    return Reply(
        status=status,
        headers=[("content-type", "application/json")],
        body=json.dumps(body).encode(),
    )


def _anthropic_error(status: int, kind: str, message: str) -> Reply:
    return _json(status, {"type": "error", "error": {"type": kind, "message": message}})


def _openai_error(status: int, message: str, code: str | None = None) -> Reply:
    return _json(
        status,
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        },
    )


def _query(call: Call) -> dict[str, list[str]]:
    """Repeated parameters (`group_by[]=a&group_by[]=b`) kept; the server's dict keeps one."""
    return parse_qs(call.query_string, keep_blank_values=True)


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _buckets(start: datetime, end: datetime, width: str) -> list[datetime]:
    starts, moment = [], start
    while moment < end:
        starts.append(moment)
        moment += _WIDTH[width]
    return starts


def _page(
    starts: list[datetime], query: dict[str, list[str]], limits: tuple[int, int], provider: str
) -> Any:
    """The slice of bucket starts this page covers and the next page token (or an error)."""
    default, maximum = limits
    limit_text = query.get("limit", [str(default)])[0]
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= maximum:
        return f"limit must be between 1 and {maximum} for this bucket_width"
    size = min(int(limit_text), int(_DATASET.get(provider, {}).get("page_size", 10**6)))
    offset = 0
    token = query.get("page", [None])[0]
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.removeprefix("page_")).decode())
        except ValueError:
            return "invalid page token"
    chosen = starts[offset : offset + size]
    following = offset + size
    if following < len(starts):
        return chosen, "page_" + base64.urlsafe_b64encode(str(following).encode()).decode()
    return chosen, None


# --- Anthropic ------------------------------------------------------------------------------


def _anthropic_auth(call: Call) -> Reply | None:
    key = call.headers.get("x-api-key", "")
    if not call.headers.get("anthropic-version"):
        return _anthropic_error(400, "invalid_request_error", "anthropic-version header required")
    if not key.startswith("sk-ant-admin"):
        return _anthropic_error(401, "authentication_error", "invalid x-api-key")
    if key not in _DATASET.get("keys", {}).get("anthropic", []):
        return _anthropic_error(
            403, "permission_error", "This API key does not have permission to read usage"
        )
    return None


def _rfc3339(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_report(call: Call) -> Reply:
    refused = _anthropic_auth(call)
    if refused:
        return refused
    query = _query(call)
    cost = call.path == ANTHROPIC_COST
    unknown = [
        name
        for name in query
        if name not in (_ANTHROPIC_COST_PARAMS if cost else _ANTHROPIC_USAGE_PARAMS)
    ]
    if unknown:
        return _anthropic_error(400, "invalid_request_error", f"unexpected {unknown}")
    width = query.get("bucket_width", ["1d"])[0]
    if width not in (("1d",) if cost else _LIMITS):
        return _anthropic_error(400, "invalid_request_error", f"bad bucket_width {width!r}")
    start = _rfc3339(query.get("starting_at", [""])[0])
    if start is None:
        return _anthropic_error(400, "invalid_request_error", "starting_at: RFC 3339 required")
    end_text = query.get("ending_at", [""])[0]
    end = _rfc3339(end_text) if end_text else start + _WIDTH[width] * _LIMITS[width][0]
    if end is None or end <= start:
        return _anthropic_error(400, "invalid_request_error", "ending_at must follow starting_at")
    groups = set(query.get("group_by[]", []))
    allowed = {"workspace_id", "description"} if cost else _ANTHROPIC_GROUPS
    if groups - allowed:
        return _anthropic_error(400, "invalid_request_error", f"bad group_by {groups - allowed}")
    paged = _page(_buckets(_day(start), end, width), query, _LIMITS[width], "anthropic")
    if isinstance(paged, str):
        return _anthropic_error(400, "invalid_request_error", paged)
    starts, token = paged
    rows = _DATASET.get("anthropic", {}).get("cost" if cost else "usage", [])
    rows = _kept(
        rows,
        {
            "workspace_id": set(query.get("workspace_ids[]", [])),
            "api_key_id": set(query.get("api_key_ids[]", [])),
            "model": set(query.get("models[]", [])),
        },
    )
    data = []
    for moment in starts:
        day = moment.strftime("%Y-%m-%d")
        mine = [row for row in rows if row.get("day") == day]
        results = _anthropic_costs(mine, groups) if cost else _anthropic_usage(mine, groups)
        following = moment + _WIDTH[width]
        data.append(
            {"starting_at": _stamp(moment), "ending_at": _stamp(following), "results": results}
        )
    return _json(200, {"data": data, "has_more": token is not None, "next_page": token})


def _anthropic_usage(rows: list[dict[str, Any]], groups: set[str]) -> list[dict[str, Any]]:
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = tuple(
            row.get(name) if name in groups else None
            for name in ("model", "workspace_id", "api_key_id")
        )
        entry = merged.setdefault(
            key,
            {
                "uncached_input_tokens": 0,
                "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
                "server_tool_use": {"web_search_requests": 0},
                "api_key_id": key[2],
                "workspace_id": key[1],
                "model": key[0],
                "service_tier": None,
                "context_window": None,
            },
        )
        entry["uncached_input_tokens"] += row.get("uncached_input_tokens", 0)
        entry["cache_read_input_tokens"] += row.get("cache_read_input_tokens", 0)
        entry["output_tokens"] += row.get("output_tokens", 0)
        for name in ("ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens"):
            entry["cache_creation"][name] += row.get("cache_creation", {}).get(name, 0)
        searches = row.get("server_tool_use", {}).get("web_search_requests", 0)
        entry["server_tool_use"]["web_search_requests"] += searches
    return list(merged.values())


def _anthropic_costs(rows: list[dict[str, Any]], groups: set[str]) -> list[dict[str, Any]]:
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        split = "description" in groups
        by_workspace = "workspace_id" in groups
        key = (
            (row.get("model"), row.get("token_type"), row.get("cost_type")) if split else None,
            row.get("workspace_id") if by_workspace else None,
        )
        entry = merged.setdefault(
            key,
            {
                "currency": "USD",
                "amount": Decimal(0),
                "workspace_id": key[1],
                "description": row.get("description") if split else None,
                "cost_type": row.get("cost_type", "tokens") if split else None,
                "context_window": "0-200k" if split and row.get("model") else None,
                "model": row.get("model") if split else None,
                "service_tier": "standard" if split and row.get("model") else None,
                "token_type": row.get("token_type") if split else None,
            },
        )
        entry["amount"] += Decimal(str(row["amount"]))
    for entry in merged.values():
        entry["amount"] = f"{entry['amount']:f}"  # a decimal string in cents
    return list(merged.values())


# --- OpenAI ---------------------------------------------------------------------------------


def _openai_auth(call: Call) -> Reply | None:
    header = call.headers.get("authorization", "")
    key = header.removeprefix("Bearer ").strip()
    if not key.startswith("sk-admin-"):
        return _openai_error(
            401,
            "You have insufficient permissions for this operation. Missing scopes: "
            "api.usage.read. Check that you have the correct role in your organization, "
            "and if you're using a restricted API key, that it has the necessary scopes.",
        )
    if key not in _DATASET.get("keys", {}).get("openai", []):
        return _openai_error(403, "This admin key cannot read usage: missing api.usage.read")
    return None


def openai_report(call: Call) -> Reply:
    refused = _openai_auth(call)
    if refused:
        return refused
    query = _query(call)
    cost = call.path == OPENAI_COST
    unknown = _unknown(query, _OPENAI_COST_PARAMS if cost else _OPENAI_USAGE_PARAMS)
    if unknown:
        return _openai_error(400, f"Unrecognized request argument supplied: {unknown[0]}")
    width = query.get("bucket_width", ["1d"])[0]
    if width not in (("1d",) if cost else _LIMITS):
        return _openai_error(400, f"Invalid bucket_width {width!r}")
    start_text = query.get("start_time", [""])[0]
    if not start_text.isdigit():
        return _openai_error(400, "start_time (Unix seconds) is required")
    start = datetime.fromtimestamp(int(start_text), tz=UTC)
    end_text = query.get("end_time", [""])[0]
    end = (
        datetime.fromtimestamp(int(end_text), tz=UTC)
        if end_text.isdigit()
        else start + _WIDTH[width] * 7
    )
    groups = _values(query, "group_by")
    allowed = (
        {"project_id", "line_item"}
        if cost
        else {"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"}
    )
    if groups - allowed:
        return _openai_error(400, f"Invalid group_by {sorted(groups - allowed)}")
    limits = (7, 180) if cost else _LIMITS[width]
    paged = _page(_buckets(_day(start), end, width), query, limits, "openai")
    if isinstance(paged, str):
        return _openai_error(400, paged)
    starts, token = paged
    rows = _DATASET.get("openai", {}).get("cost" if cost else "usage", [])
    rows = _kept(
        rows,
        {
            "project_id": _values(query, "project_ids"),
            "api_key_id": _values(query, "api_key_ids"),
            "model": _values(query, "models"),
        },
    )
    data = []
    for moment in starts:
        day = moment.strftime("%Y-%m-%d")
        mine = [row for row in rows if row.get("day") == day]
        results = _openai_costs(mine, groups) if cost else _openai_usage(mine, groups)
        data.append(
            {
                "object": "bucket",
                "start_time": int(moment.timestamp()),
                "end_time": int((moment + _WIDTH[width]).timestamp()),
                "results": results,
            }
        )
    return _json(
        200, {"object": "page", "data": data, "has_more": token is not None, "next_page": token}
    )


def _openai_usage(rows: list[dict[str, Any]], groups: set[str]) -> list[dict[str, Any]]:
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = tuple(
            row.get(name) if name in groups else None
            for name in ("model", "project_id", "api_key_id")
        )
        entry = merged.setdefault(
            key,
            {
                "object": "organization.usage.completions.result",
                "input_tokens": 0,
                "output_tokens": 0,
                "input_cached_tokens": 0,
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "num_model_requests": 0,
                "project_id": key[1],
                "user_id": None,
                "api_key_id": key[2],
                "model": key[0],
                "batch": None,
                "service_tier": None,
            },
        )
        for name in ("input_tokens", "output_tokens", "input_cached_tokens", "num_model_requests"):
            entry[name] += row.get(name, 0)
    return list(merged.values())


def _openai_costs(rows: list[dict[str, Any]], groups: set[str]) -> list[dict[str, Any]]:
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = (
            row.get("line_item") if "line_item" in groups else None,
            row.get("project_id") if "project_id" in groups else None,
        )
        entry = merged.setdefault(
            key,
            {
                "object": "organization.costs.result",
                "amount": {"value": Decimal(0), "currency": "usd"},
                "line_item": key[0],
                "project_id": key[1],
            },
        )
        entry["amount"]["value"] += Decimal(str(row["value"]))
    for entry in merged.values():
        entry["amount"]["value"] = float(entry["amount"]["value"])  # a JSON number, as OpenAI's
    return list(merged.values())


ROUTES: dict[str, Callable[[Call], Reply]] = {
    ANTHROPIC_USAGE: anthropic_report,
    ANTHROPIC_COST: anthropic_report,
    OPENAI_USAGE: openai_report,
    OPENAI_COST: openai_report,
}
