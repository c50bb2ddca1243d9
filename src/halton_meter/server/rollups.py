"""Team rollups: every figure comes from `daily_rollups` (one row per workspace, UTC day,
machine, project, provider and model), so a 30-day report reads thousands of rows, not the
millions in the ledger. Windows are whole UTC days.

Money is integer nano-USD in the database; responses give the integer, the exact decimal
string (`cost_usd`) and, for the dashboard contract, integer millicents (`cost_minor_units`,
1 USD = 100,000, rounded half to even), each for the server's price and the machine's.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import psycopg

from halton_meter.money import usd_string

Connection = psycopg.Connection[Any]
NANO_PER_MINOR_UNIT = 10_000  # 1 USD = 10^9 nano-USD = 100,000 millicents

DIMENSIONS = {
    "day": "r.day",
    "provider": "r.provider",
    "model": "r.model",
    "project": "r.project",
    "machine": "r.machine_id",
    "user": "m.user_name",
}
_SUMS = (
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
)
_SELECT_SUMS = ", ".join(f"sum(r.{name})" for name in _SUMS)
# The groupings /v1/stats returns, by name, in DIMENSIONS' order.
STATS_GROUPS: dict[str, tuple[str, ...]] = {
    "summary": (),
    "by_day": ("day",),
    "by_day_provider": ("day", "provider"),
    "by_provider": ("provider",),
    "by_model": ("provider", "model"),
    "by_project": ("project",),
    "by_machine": ("machine",),
    "by_user": ("user",),
}


def minor_units(nanousd: int) -> int:
    return int((Decimal(nanousd) / NANO_PER_MINOR_UNIT).quantize(Decimal(1), ROUND_HALF_EVEN))


def measures(values: dict[str, Any]) -> dict[str, Any]:
    """The figures of one group, in the documented shape."""
    # sum(bigint) is numeric in PostgreSQL (a Decimal here): exact, made int again.
    sums: dict[str, Any] = {name: int(values.get(name) or 0) for name in _SUMS}
    sums["latency_ms_sum"] = float(values.get("latency_ms_sum") or 0)
    prompt = sums["input_tokens"] + sums["cache_read_tokens"] + sums["cache_write_tokens"]
    cost, machine_cost = int(sums["cost_nanousd"]), int(sums["machine_cost_nanousd"])
    return {
        "requests": int(sums["requests"]),
        "errors": int(sums["errors"]),
        "input_tokens": int(sums["input_tokens"]),
        "cache_read_tokens": int(sums["cache_read_tokens"]),
        "cache_write_tokens": int(sums["cache_write_tokens"]),
        "output_tokens": int(sums["output_tokens"]),
        "reasoning_tokens": int(sums["reasoning_tokens"]),
        "cost_nanousd": cost,
        "cost_usd": usd_string(cost),
        "cost_minor_units": minor_units(cost),
        "unpriced_requests": int(sums["unpriced_requests"]),
        "machine_cost_nanousd": machine_cost,
        "machine_cost_usd": usd_string(machine_cost),
        "machine_cost_minor_units": minor_units(machine_cost),
        "machine_unpriced_requests": int(sums["machine_unpriced_requests"]),
        "avg_latency_ms": round(sums["latency_ms_sum"] / sums["latency_count"], 1)
        if sums["latency_count"]
        else None,
        "cache_hit_rate": round(sums["cache_read_tokens"] / prompt, 4) if prompt else None,
    }


def _where(
    workspace_id: str, since: date | None, until: date | None, project: str | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = ["r.workspace_id = %s"]
    params: list[Any] = [workspace_id]
    if since is not None:
        clauses.append("r.day >= %s")
        params.append(since)
    if until is not None:
        clauses.append("r.day < %s")
        params.append(until)
    if project is not None:
        clauses.append("r.project = %s")
        params.append(project)
    return " WHERE " + " AND ".join(clauses), params


def stats(
    con: Connection,
    workspace_id: str,
    since: date | None,
    until: date | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """Summary and every STATS_GROUPS grouping, in one scan (GROUPING SETS)."""
    where, params = _where(workspace_id, since, until, project)
    names = list(DIMENSIONS)
    columns = [DIMENSIONS[name] for name in names]
    sets = ", ".join(
        "(" + ", ".join(DIMENSIONS[d] for d in dims) + ")" for dims in STATS_GROUPS.values()
    )
    sql = (
        f"SELECT GROUPING({', '.join(columns)}), {', '.join(columns)}, {_SELECT_SUMS} "
        "FROM daily_rollups r JOIN machines m ON m.id = r.machine_id"
        f"{where} GROUP BY GROUPING SETS ({sets})"
    )
    # Which grouping a result row belongs to: a bit is 1 for a dimension NOT grouped.
    by_mask: dict[int, str] = {}
    for group, dims in STATS_GROUPS.items():
        mask = sum(1 << (len(names) - 1 - names.index(d)) for d in names if d not in dims)
        by_mask[mask] = group
    result: dict[str, Any] = {group: [] for group in STATS_GROUPS}
    result["summary"] = measures({})
    for row in con.execute(sql, params).fetchall():
        group = by_mask[row[0]]
        keys = dict(zip(names, row[1 : 1 + len(names)], strict=True))
        sums = dict(zip(_SUMS, row[1 + len(names) :], strict=True))
        if group == "summary":
            result["summary"] = measures(sums)
            continue
        item: dict[str, Any] = {}
        for dim in STATS_GROUPS[group]:
            value = keys[dim]
            if dim == "day":
                item["day"] = value.isoformat()
            elif dim == "machine":
                item["machine_id"] = str(value)
            else:
                item[dim] = value
        item.update(measures(sums))
        result[group].append(item)
    names_by_id = {
        str(machine_id): name
        for machine_id, name in con.execute(
            "SELECT id, name FROM machines WHERE workspace_id = %s", (workspace_id,)
        ).fetchall()
    }
    for item in result["by_machine"]:
        item["machine"] = names_by_id.get(item["machine_id"])
    for group, dims in STATS_GROUPS.items():
        if group != "summary":
            result[group].sort(key=lambda i, d=dims: tuple(str(i.get(_key(x))) for x in d))
    return result


def _key(dim: str) -> str:
    return "machine_id" if dim == "machine" else dim


def projects(con: Connection, workspace_id: str, since: date | None) -> list[dict[str, Any]]:
    where, params = _where(workspace_id, since, None, None)
    sql = (
        f"SELECT r.project, {_SELECT_SUMS}, max(r.last_request_at), count(DISTINCT r.machine_id) "
        f"FROM daily_rollups r{where} GROUP BY r.project ORDER BY sum(r.cost_nanousd) DESC, "
        "r.project"
    )
    found = []
    for row in con.execute(sql, params).fetchall():
        sums = dict(zip(_SUMS, row[1 : 1 + len(_SUMS)], strict=True))
        last: datetime | None = row[-2]
        found.append(
            {
                "slug": row[0],
                **measures(sums),
                "last_request_at": last.isoformat() if last else None,
                "machines": int(row[-1]),
            }
        )
    return found


def grouped(
    con: Connection,
    workspace_id: str,
    group_by: list[str],
    since: date | None,
    until: date | None = None,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of the CSV export: one per combination of the chosen dimensions."""
    where, params = _where(workspace_id, since, until, project)
    keys = [DIMENSIONS[name] for name in group_by]
    select = ", ".join([*keys, _SELECT_SUMS]) if keys else _SELECT_SUMS
    group = f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
    sql = (
        f"SELECT {select} FROM daily_rollups r JOIN machines m ON m.id = r.machine_id{where}{group}"
    )
    result = []
    for row in con.execute(sql, params).fetchall():
        item: dict[str, Any] = {}
        for name, value in zip(group_by, row[: len(keys)], strict=True):
            item[name] = value.isoformat() if isinstance(value, date) else str(value)
        sums = dict(zip(_SUMS, row[len(keys) :], strict=True))
        if sums["requests"] is None:
            continue
        item.update(measures(sums))
        result.append(item)
    return result


REQUEST_COLUMNS = (
    "id",
    "requested_at",
    "provider",
    "api",
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
    "latency_ms",
    "ttft_ms",
    "tokens_complete",
    "service_tier",
    "project",
    "cost_nanousd",
    "price_source",
    "machine_cost_nanousd",
    "machine_price_source",
)


def recent_requests(
    con: Connection,
    workspace_id: str,
    project: str,
    limit: int,
    cursor: tuple[datetime, str] | None = None,
    provider: str | None = None,
) -> list[dict[str, Any]]:
    """A project's rows, newest first. The cursor is the last row's (requested_at, id), so
    pages stay stable while rows arrive (new rows are newer than any cursor)."""
    clauses = ["l.workspace_id = %s", "l.project = %s"]
    params: list[Any] = [workspace_id, project]
    if cursor is not None:
        clauses.append("(l.requested_at, l.id) < (%s, %s)")
        params.extend(cursor)
    if provider is not None:
        clauses.append("l.provider = %s")
        params.append(provider)
    columns = ", ".join(f"l.{name}" for name in REQUEST_COLUMNS)
    sql = (
        f"SELECT {columns}, m.name FROM ledger l JOIN machines m ON m.id = l.machine_id "
        f"WHERE {' AND '.join(clauses)} ORDER BY l.requested_at DESC, l.id DESC LIMIT %s"
    )
    result = []
    for row in con.execute(sql, [*params, limit]).fetchall():
        item = dict(zip(REQUEST_COLUMNS, row[:-1], strict=True))
        item["requested_at"] = _ledger_time(item["requested_at"])
        item["machine"] = row[-1]
        for name in ("cost", "machine_cost"):
            value = item[f"{name}_nanousd"]
            item[f"{name}_usd"] = usd_string(value)
            item[f"{name}_minor_units"] = None if value is None else minor_units(value)
        result.append(item)
    return result


def _ledger_time(moment: datetime) -> str:
    from halton_meter.timewindow import ledger_timestamp

    return ledger_timestamp(moment)


def to_csv(rows: list[dict[str, Any]], group_by: list[str]) -> str:
    out = io.StringIO()
    names = [*group_by, *measures({})]
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def window_start(days: int, today: date | None = None) -> date:
    """`30d` = today and the 29 days before it."""
    return (today or date.today()) - timedelta(days=days - 1)
