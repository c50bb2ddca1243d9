"""The API's answers, shaped to the public halton-meter dashboard's contract (docs/api.md).

Money in that contract is integer millicents (`*_minor_units`, 1 USD = 100,000), rounded once
from the exact nano-USD sum; every amount also comes as an exact decimal string (`*_usd`) and
as nano-USD. An unpriced request has null cost, never 0. Plain functions over a connection, so
the part that answers HTTP stays thin.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from halton_meter.api.contract import CSV_FIELDS, money, request_item, subscription_value
from halton_meter.ledger import spans
from halton_meter.ledger.rollup import Span, aggregate, aggregate_many
from halton_meter.money import minor_units, usd_string
from halton_meter.timewindow import ledger_timestamp

MAX_FILLED_DAYS = 3660


class BadRequest(ValueError):
    """A parameter the API cannot use; the message says which and why."""


def _cache_hit_rate(sums: dict[str, Any]) -> float:
    """Share of prompt tokens read from the cache (input + cache read + cache write = prompt)."""
    prompt = sums["input_tokens"] + sums["cache_read_tokens"] + sums["cache_write_tokens"]
    return round(sums["cache_read_tokens"] / prompt, 4) if prompt else 0.0


def _cost(sums: dict[str, Any]) -> int | None:
    """Null only when every request of the group is unpriced; see `unpriced_requests`."""
    return None if sums["unpriced_requests"] == sums["requests"] else int(sums["cost_nanousd"])


def _subscription(sums: dict[str, Any] | None) -> dict[str, Any]:
    if not sums:
        return subscription_value(0, 0)
    return subscription_value(sums["subscription_requests"], sums["subscription_value_nanousd"])


# --- stats ----------------------------------------------------------------------------------


def stats(
    con: sqlite3.Connection, since: str | None, until: str | None, project: str | None
) -> dict[str, Any]:
    """Summary, by day, by day and provider, by provider, by model, for [since, until)."""
    total, days, projects, models, day_providers, providers = aggregate_many(
        con,
        Span(since, until, project),
        [[], ["day"], ["project"], ["provider", "model"], ["day", "provider"], ["provider"]],
    )
    sums = total[0] if total else None
    by_day = {row["day"]: row for row in days}
    where, params = _window_where(since, until, project)
    last = con.execute(f"SELECT MAX(requested_at) FROM requests{where}", params).fetchone()[0]
    summary: dict[str, Any] = {
        "total_requests": sums["requests"] if sums else 0,
        "total_errors": sums["errors"] if sums else 0,
        "total_input_tokens": sums["input_tokens"] if sums else 0,
        "total_output_tokens": sums["output_tokens"] if sums else 0,
        "total_thinking_tokens": sums["reasoning_tokens"] if sums else 0,
        "total_cache_read_tokens": sums["cache_read_tokens"] if sums else 0,
        "total_cache_write_tokens": sums["cache_write_tokens"] if sums else 0,
        **money(int(sums["cost_nanousd"]) if sums else 0, "total_"),
        "unpriced_requests": sums["unpriced_requests"] if sums else 0,
        # Money spent is `total_cost_*` (calls not billed by a subscription); what the
        # subscription's calls would have cost at API prices is apart, never added to it.
        **_subscription(sums),
        "cache_hit_rate": _cache_hit_rate(sums) if sums else 0.0,
        "avg_latency_ms": round(sums["latency_ms_sum"] / sums["latency_count"], 1)
        if sums and sums["latency_count"]
        else None,
        "active_projects": len(projects),
        "models_in_use": len(models),
        "last_request_at": last,
    }
    return {
        "window": {"since": since, "until": until},
        "summary": summary,
        "by_day": [
            {
                "date": day,
                "requests": row["requests"] if row else 0,
                "errors": row["errors"] if row else 0,
                **money(int(row["cost_nanousd"]) if row else 0),
                "unpriced_requests": row["unpriced_requests"] if row else 0,
                "cache_hit_rate": _cache_hit_rate(row) if row else 0.0,
            }
            for day, row in _fill_days(by_day, since, until)
        ],
        "by_day_by_provider": [
            {"date": row["day"], "provider": row["provider"], "requests": row["requests"]}
            | money(int(row["cost_nanousd"]))
            for row in day_providers
        ],
        "by_provider": [
            {"provider": row["provider"], "requests": row["requests"]}
            | money(_cost(row))
            | {"unpriced_requests": row["unpriced_requests"]}
            | _subscription(row)
            for row in providers
        ],
        "by_model": sorted(
            (
                {
                    "provider": row["provider"],
                    "model": row["model"],
                    "requests": row["requests"],
                    "input_tokens": row["input_tokens"],
                    "output_tokens": row["output_tokens"],
                    "cache_read_tokens": row["cache_read_tokens"],
                    "cache_write_tokens": row["cache_write_tokens"],
                    **money(_cost(row)),
                    "unpriced_requests": row["unpriced_requests"],
                    "unpriced": row["unpriced_requests"] > 0,
                    **_subscription(row),
                }
                for row in models
            ),
            key=lambda item: (-(item["cost_nanousd"] or 0), -item["requests"], item["model"]),
        ),
    }


def _fill_days(
    by_day: dict[str, dict[str, Any]], since: str | None, until: str | None
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Every day of the window, with None for days without requests, so charts have no gaps."""
    if not by_day and since is None:
        return
    first = date.fromisoformat(since[:10]) if since else date.fromisoformat(min(by_day))
    last = date.fromisoformat(until[:10]) if until else datetime.now(UTC).date()
    if by_day:
        last = max(last, date.fromisoformat(max(by_day)))
    if until and until[10:] in ("", "T00:00:00.000Z"):
        last -= timedelta(days=1)
    if (last - first).days > MAX_FILLED_DAYS:
        first = last - timedelta(days=MAX_FILLED_DAYS)
    day = first
    while day <= last:
        text = day.isoformat()
        yield text, by_day.get(text)
        day += timedelta(days=1)


def _window_where(
    since: str | None, until: str | None, project: str | None
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if project is not None:
        clauses.append("project = ?")
        params.append(project)
    if since is not None:
        clauses.append("requested_at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("requested_at < ?")
        params.append(until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


# --- projects -------------------------------------------------------------------------------


def _month_starts(now: datetime) -> tuple[str, str]:
    this_month = now.date().replace(day=1)
    previous = (this_month - timedelta(days=1)).replace(day=1)
    return this_month.isoformat(), previous.isoformat()


def projects(con: sqlite3.Connection, only: str | None = None) -> list[dict[str, Any]]:
    """Every project seen in the ledger (projects are the `project` column), busiest first."""
    this_month, previous_month = _month_starts(datetime.now(UTC))
    every = aggregate(con, Span(project=only), ["project", "provider", "model"])
    current = {r["project"]: r for r in aggregate(con, Span(this_month, None, only), ["project"])}
    previous = {
        r["project"]: r for r in aggregate(con, Span(previous_month, this_month, only), ["project"])
    }
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in every:
        grouped.setdefault(row["project"], []).append(row)
    result = []
    for slug, rows in grouped.items():
        # Two queries: SQLite answers a lone MIN or MAX from the index, both at once by a scan.
        first = _one(con, "SELECT MIN(requested_at) FROM requests WHERE project = ?", slug)
        last = _one(con, "SELECT MAX(requested_at) FROM requests WHERE project = ?", slug)
        busiest = max(rows, key=lambda r: (r["requests"], r["model"]))
        dearest = max(rows, key=lambda r: (r["cost_nanousd"], r["requests"], r["model"]))
        month = current.get(slug)
        before = previous.get(slug)
        all_cost = sum(int(r["cost_nanousd"]) for r in rows)
        result.append(
            {
                "id": slug,
                "name": slug,
                "slug": slug,
                "created_at": first,
                "archived_at": None,
                "stats": {
                    "requests_this_month": month["requests"] if month else 0,
                    "cost_usd_this_month": usd_string(int(month["cost_nanousd"]) if month else 0),
                    "cost_usd_this_month_minor_units": minor_units(
                        int(month["cost_nanousd"]) if month else 0
                    ),
                    "previous_month_cost_usd_minor_units": minor_units(
                        int(before["cost_nanousd"]) if before else 0
                    ),
                    "previous_month_cost_usd": usd_string(
                        int(before["cost_nanousd"]) if before else 0
                    ),
                    "all_time_cost_usd_minor_units": minor_units(all_cost),
                    "all_time_cost_usd": usd_string(all_cost),
                    "all_time_requests": sum(r["requests"] for r in rows),
                    "unpriced_requests": sum(r["unpriced_requests"] for r in rows),
                    "last_active_at": last,
                    "primary_model": busiest["model"],
                    "primary_provider": busiest["provider"],
                    "top_model": dearest["model"] if dearest["cost_nanousd"] else None,
                    "top_provider": dearest["provider"] if dearest["cost_nanousd"] else None,
                    # All time, apart from money spent (the cost figures above).
                    **subscription_value(
                        sum(r["subscription_requests"] for r in rows),
                        sum(r["subscription_value_nanousd"] for r in rows),
                    ),
                },
            }
        )
    result.sort(key=lambda p: (-p["stats"]["all_time_requests"], p["slug"]))
    return result


def _one(con: sqlite3.Connection, sql: str, *params: Any) -> Any:
    return con.execute(sql, params).fetchone()[0]


# --- requests -------------------------------------------------------------------------------

REQUEST_COLUMNS = (
    "id",
    "requested_at",
    "project",
    "provider",
    "api",
    "model",
    "model_requested",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_nanousd",
    "price_source",
    "latency_ms",
    "ttft_ms",
    "tokens_complete",
    "status",
    "error_class",
    "http_status",
    "stream",
    "billing",
)


def encode_cursor(requested_at: str, row_id: str) -> str:
    raw = json.dumps([requested_at, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        requested_at, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadRequest("cursor: not a cursor this API gave out") from None
    if not isinstance(requested_at, str) or not isinstance(row_id, str):
        raise BadRequest("cursor: not a cursor this API gave out")
    return requested_at, row_id


def request_page(
    con: sqlite3.Connection,
    project: str,
    limit: int,
    cursor: str | None,
    provider: str | None,
) -> dict[str, Any]:
    """Newest first, keyed on (requested_at, id): a page after a cursor never repeats or skips
    a row that existed when the first page was read, however many rows arrive meanwhile."""
    clauses, params = ["project = ?"], [project]
    if provider:
        clauses.append("provider = ?")
        params.append(provider)
    if cursor:
        clauses.append("(requested_at, id) < (?, ?)")
        params.extend(decode_cursor(cursor))
    sql = (
        f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE {' AND '.join(clauses)} "
        "ORDER BY requested_at DESC, id DESC LIMIT ?"
    )
    rows = [
        dict(zip(REQUEST_COLUMNS, raw, strict=True))
        for raw in con.execute(sql, [*params, limit + 1])
    ]
    more = len(rows) > limit
    rows = rows[:limit]
    total_sql = "SELECT COALESCE(SUM(requests), 0) FROM daily_rollup WHERE project = ?"
    total_params = [project]
    if provider:
        total_sql += " AND provider = ?"
        total_params.append(provider)
    total = int(con.execute(total_sql, total_params).fetchone()[0])
    last = rows[-1] if rows else None
    return {
        "items": [request_item(row) for row in rows],
        "next_cursor": encode_cursor(last["requested_at"], last["id"]) if more and last else None,
        "total": total,
    }


def requests_csv(con: sqlite3.Connection, project: str, provider: str | None) -> Iterator[str]:
    """Every request of the project, newest first, a chunk of lines at a time."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    sql = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE project = ?"
    params = [project]
    if provider:
        sql += " AND provider = ?"
        params.append(provider)
    cursor = con.execute(sql + " ORDER BY requested_at DESC, id DESC", params)
    while True:
        batch = cursor.fetchmany(1000)
        for raw in batch:
            writer.writerow(request_item(dict(zip(REQUEST_COLUMNS, raw, strict=True))))
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if not batch:
            return


def daemon_status(con: sqlite3.Connection, now: datetime) -> dict[str, Any]:
    last = con.execute("SELECT MAX(requested_at) FROM requests").fetchone()[0]
    hour_ago = ledger_timestamp(now - timedelta(hours=1))
    count = con.execute(
        "SELECT COUNT(*) FROM requests WHERE requested_at >= ?", (hour_ago,)
    ).fetchone()[0]
    return {"last_seen_at": last, "request_count_last_hour": int(count)}


def unmetered(con: sqlite3.Connection, since: str | None, until: str | None) -> dict[str, Any]:
    """The window's unmetered spans: per host (`holes`) and per connection (`spans`)."""
    gaps = spans.holes(con, since, until)
    return {
        "since": since,
        "until": until,
        "complete": not gaps,
        "holes": [hole.as_json() for hole in gaps],
        "spans": spans.spans(con, since, until),
    }
