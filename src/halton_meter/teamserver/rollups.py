"""Team rollups: every figure comes from `daily_rollups` (one row per workspace, UTC day,
machine, project, provider and model) or a coarser table of the same sums (schema.py,
ROLLUP_TABLES; `by_branch` from `daily_branch_rollups`), so a 30-day report reads thousands of
rows, not the millions in the ledger. Windows are whole UTC days.

Money is integer nano-USD in the database; responses give the integer, the exact decimal
string (`cost_usd`) and, for the dashboard contract, integer millicents (`cost_minor_units`,
1 USD = 100,000, rounded half to even), each for the server's price and the machine's.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from halton_meter.api.contract import money, request_item, subscription_value
from halton_meter.money import minor_units, usd_string
from halton_meter.teamserver.schema import ROLLUP_MEASURES

Connection = psycopg.Connection[Any]

DIMENSIONS = {
    "day": "r.day",
    "provider": "r.provider",
    "model": "r.model",
    "project": "r.project",
    "machine": "r.machine_id",
    "user": "m.user_name",
    # Only in daily_branch_rollups (no provider or model there): the client's git branch.
    "branch": "r.branch",
}
BRANCH_TABLE_DIMENSIONS = ("day", "project", "machine", "user", "branch")
_SELECT_SUMS = ", ".join(f"sum(r.{name})" for name in ROLLUP_MEASURES)
# The groupings /v1/stats returns, by name, in DIMENSIONS' order.
STATS_GROUPS: dict[str, tuple[str, ...]] = {
    "summary": (),
    "by_day": ("day",),
    "by_day_by_provider": ("day", "provider"),
    "by_provider": ("provider",),
    "by_model": ("provider", "model"),
    "by_project": ("project",),
    "by_machine": ("machine",),
    "by_user": ("user",),
    "by_branch": ("branch",),
}
# The groups each rollup table answers that a finer one would answer with more rows read.
_OWN_TABLE = {"by_project": "daily_project_rollups", "by_branch": "daily_branch_rollups"}


# As in the local API, spend over time is a plain sum: 0, not null, on a wholly unpriced day.
_SPEND_OVER_TIME = ("by_day", "by_day_by_provider")


def _sums(values: dict[str, Any]) -> dict[str, Any]:
    # sum(bigint) is numeric in PostgreSQL (a Decimal here): exact, made int again.
    sums: dict[str, Any] = {name: int(values.get(name) or 0) for name in ROLLUP_MEASURES}
    sums["latency_ms_sum"] = float(values.get("latency_ms_sum") or 0)
    return sums


def _cache_hit_rate(sums: dict[str, Any]) -> float:
    prompt = sums["input_tokens"] + sums["cache_read_tokens"] + sums["cache_write_tokens"]
    return round(sums["cache_read_tokens"] / prompt, 4) if prompt else 0.0


def measures(values: dict[str, Any]) -> dict[str, Any]:
    """The figures of one group. A cost is null only when every request of the group is
    unpriced (then `unpriced` is true); partly unpriced groups count them in
    `unpriced_requests`. The machines' own figures ride beside the server's."""
    sums = _sums(values)
    every_unpriced = sums["requests"] > 0 and sums["unpriced_requests"] == sums["requests"]
    machine_unpriced = (
        sums["requests"] > 0 and sums["machine_unpriced_requests"] == sums["requests"]
    )
    return {
        "requests": sums["requests"],
        "errors": sums["errors"],
        "input_tokens": sums["input_tokens"],
        "cache_read_tokens": sums["cache_read_tokens"],
        "cache_write_tokens": sums["cache_write_tokens"],
        "output_tokens": sums["output_tokens"],
        "reasoning_tokens": sums["reasoning_tokens"],
        **money(None if every_unpriced else sums["cost_nanousd"]),
        "unpriced_requests": sums["unpriced_requests"],
        "unpriced": sums["unpriced_requests"] > 0,
        **money(None if machine_unpriced else sums["machine_cost_nanousd"], "machine_"),
        "machine_unpriced_requests": sums["machine_unpriced_requests"],
        "avg_latency_ms": round(sums["latency_ms_sum"] / sums["latency_count"], 1)
        if sums["latency_count"]
        else None,
        "cache_hit_rate": _cache_hit_rate(sums),
        **subscription_value(sums["subscription_requests"], sums["subscription_value_nanousd"]),
    }


def _summary(values: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """The local API's summary names (`total_*`), plus the team's counts."""
    sums = _sums(values)
    return {
        "total_requests": sums["requests"],
        "total_errors": sums["errors"],
        "total_input_tokens": sums["input_tokens"],
        "total_output_tokens": sums["output_tokens"],
        "total_thinking_tokens": sums["reasoning_tokens"],
        "total_cache_read_tokens": sums["cache_read_tokens"],
        "total_cache_write_tokens": sums["cache_write_tokens"],
        **money(sums["cost_nanousd"], "total_"),
        "unpriced_requests": sums["unpriced_requests"],
        **money(sums["machine_cost_nanousd"], "total_machine_"),
        "machine_unpriced_requests": sums["machine_unpriced_requests"],
        **subscription_value(sums["subscription_requests"], sums["subscription_value_nanousd"]),
        "cache_hit_rate": _cache_hit_rate(sums),
        "avg_latency_ms": round(sums["latency_ms_sum"] / sums["latency_count"], 1)
        if sums["latency_count"]
        else None,
        **counts,
    }


def _where(
    workspace_id: str,
    since: date | None,
    until: date | None,
    project: str | None,
    machine: str | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = ["r.workspace_id = %s"]
    params: list[Any] = [workspace_id]
    if machine is not None:
        clauses.append("r.machine_id = %s")
        params.append(machine)
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
    machine: str | None = None,
) -> dict[str, Any]:
    """The local API's /v1/stats shape (summary, by_day with every day of the window, by day
    and provider, by provider, by model) plus by project, machine and user, from GROUPING SETS
    over the smallest rollup tables that hold them (schema.py, ROLLUP_TABLES)."""
    where, params = _where(workspace_id, since, until, project, machine)
    groups: dict[str, list[dict[str, Any]]] = {group: [] for group in STATS_GROUPS}
    summary_sums: dict[str, Any] = {}
    last_request_at: datetime | None = None
    if project is None:
        # Team-wide: all but by_project and by_branch from the table without projects
        # (thousands of rows), those two from their own tables (no providers and models).
        wanted = {g: dims for g, dims in STATS_GROUPS.items() if g not in _OWN_TABLE}
        found = _grouping_sets(con, "daily_machine_rollups", wanted, where, params)
        found += _grouping_sets(
            con, "daily_project_rollups", {"by_project": STATS_GROUPS["by_project"]}, where, params
        )
    else:
        wanted = {g: dims for g, dims in STATS_GROUPS.items() if g != "by_branch"}
        found = _grouping_sets(con, "daily_rollups", wanted, where, params)
    found += _grouping_sets(
        con, "daily_branch_rollups", {"by_branch": STATS_GROUPS["by_branch"]}, where, params
    )
    for group, keys, sums, last in found:
        if group == "summary":
            summary_sums, last_request_at = sums, last
            continue
        item: dict[str, Any] = {}
        for dim in STATS_GROUPS[group]:
            value = keys[dim]
            if dim == "day":
                item["date"] = value.isoformat()
            elif dim == "machine":
                item["machine_id"] = str(value)
            else:
                item[dim] = value
        item.update(measures(sums))
        if group in _SPEND_OVER_TIME:
            item.update(money(item["cost_nanousd"] or 0))
        groups[group].append(item)
    names_by_id = {
        str(machine_id): name
        for machine_id, name in con.execute(
            "SELECT id, name FROM machines WHERE workspace_id = %s", (workspace_id,)
        ).fetchall()
    }
    for item in groups["by_machine"]:
        item["machine"] = names_by_id.get(item["machine_id"])
    for group in STATS_GROUPS:
        if group not in ("summary", "by_day"):
            groups[group].sort(
                key=lambda i: (
                    -(i["cost_nanousd"] or 0),
                    -i["requests"],
                    *(
                        str(i.get(k))
                        for k in ("provider", "model", "project", "machine_id", "user", "branch")
                    ),
                )
            )
    groups["by_day_by_provider"].sort(key=lambda i: (i["date"], i["provider"]))
    counts = {
        "active_projects": len(groups["by_project"]),
        "models_in_use": len(groups["by_model"]),
        "machines": len(groups["by_machine"]),
        "users": len(groups["by_user"]),
        "last_request_at": _ledger_time(last_request_at) if last_request_at else None,
    }
    return {
        "window": {"since": _midnight(since), "until": _midnight(until)},
        "summary": _summary(summary_sums, counts),
        "by_day": _every_day(groups["by_day"], since, until),
        **{group: groups[group] for group in STATS_GROUPS if group not in ("summary", "by_day")},
    }


def _grouping_sets(
    con: Connection,
    table: str,
    wanted: dict[str, tuple[str, ...]],
    where: str,
    params: list[Any],
) -> list[tuple[str, dict[str, Any], dict[str, Any], datetime | None]]:
    """One scan of a rollup table (GROUPING SETS): (group, its keys, sums, last request) for
    each group's rows."""
    names = [d for d in DIMENSIONS if any(d in dims for dims in wanted.values())]
    if not names:  # the summary alone
        names = ["provider"]
    columns = [DIMENSIONS[name] for name in names]
    sets = ", ".join("(" + ", ".join(DIMENSIONS[d] for d in dims) + ")" for dims in wanted.values())
    join = " JOIN machines m ON m.id = r.machine_id" if "user" in names else ""
    sql = (
        f"SELECT GROUPING({', '.join(columns)}), {', '.join(columns)}, {_SELECT_SUMS}, "
        f"max(r.last_request_at) FROM {table} r{join}{where} GROUP BY GROUPING SETS ({sets})"
    )
    # Which grouping a result row belongs to: a bit is 1 for a dimension NOT grouped.
    by_mask = {
        sum(1 << (len(names) - 1 - names.index(d)) for d in names if d not in dims): group
        for group, dims in wanted.items()
    }
    result = []
    for row in con.execute(sql, params).fetchall():
        keys = dict(zip(names, row[1 : 1 + len(names)], strict=True))
        sums = dict(zip(ROLLUP_MEASURES, row[1 + len(names) : -1], strict=True))
        result.append((by_mask[row[0]], keys, sums, row[-1]))
    return result


def _today() -> date:
    return datetime.now(UTC).date()


def _midnight(day: date | None) -> str | None:
    """A window's day as the local API gives its bounds (a ledger timestamp)."""
    return _ledger_time(datetime(day.year, day.month, day.day, tzinfo=UTC)) if day else None


def _first_request(con: Connection, workspace_id: str, project: str, machine: str | None) -> str:
    """A project's first request time (its `created_at`), from the (workspace, project, time)
    index: one short index read per project, however big the ledger."""
    sql = "SELECT min(requested_at) FROM ledger WHERE workspace_id = %s AND project = %s"
    params: list[Any] = [workspace_id, project]
    if machine is not None:
        sql += " AND machine_id = %s"
        params.append(machine)
    found = con.execute(sql, params).fetchone()
    return _ledger_time(found[0]) if found and found[0] else ""


def _every_day(
    items: list[dict[str, Any]], since: date | None, until: date | None
) -> list[dict[str, Any]]:
    """Every day of the window, zeros where nothing happened, so charts have no gaps."""
    by_date = {item["date"]: item for item in items}
    if not by_date and since is None:
        return []
    first = since or date.fromisoformat(min(by_date))
    last = (until - timedelta(days=1)) if until else _today()
    if by_date:
        last = max(last, date.fromisoformat(max(by_date)))
    days: list[dict[str, Any]] = []
    day = first
    while day <= last and len(days) < 3660:
        text = day.isoformat()
        days.append(by_date.get(text) or {"date": text, **measures({})})
        day += timedelta(days=1)
    return days


def projects(
    con: Connection,
    workspace_id: str,
    since: date | None,
    only: str | None = None,
    machine: str | None = None,
) -> list[dict[str, Any]]:
    """The local API's /v1/projects entries ({id, name, slug, created_at, stats}) with the
    team's `machines` count; busiest first."""
    where, params = _where(workspace_id, since, None, only, machine)
    this_month = _today().replace(day=1)
    previous_month = (this_month - timedelta(days=1)).replace(day=1)
    sql = (
        "SELECT r.project, r.provider, r.model, sum(r.requests), sum(r.cost_nanousd), "
        "sum(r.unpriced_requests), "
        "COALESCE(sum(r.requests) FILTER (WHERE r.day >= %s), 0), "
        "COALESCE(sum(r.cost_nanousd) FILTER (WHERE r.day >= %s), 0), "
        "COALESCE(sum(r.cost_nanousd) FILTER (WHERE r.day >= %s AND r.day < %s), 0), "
        "min(r.day), max(r.last_request_at), "
        "sum(r.subscription_requests), sum(r.subscription_value_nanousd) "
        f"FROM daily_rollups r{where} GROUP BY 1, 2, 3"
    )
    month_params = [this_month, this_month, previous_month, this_month]
    rows_by_project: dict[str, list[tuple[Any, ...]]] = {}
    for row in con.execute(sql, [*month_params, *params]).fetchall():
        rows_by_project.setdefault(row[0], []).append(row)
    machines = dict(
        con.execute(
            f"SELECT r.project, count(DISTINCT r.machine_id) FROM daily_rollups r{where} "
            "GROUP BY 1",
            params,
        ).fetchall()
    )
    result: list[dict[str, Any]] = []
    for slug, rows in rows_by_project.items():
        busiest = max(rows, key=lambda r: (r[3], r[2]))
        dearest = max(rows, key=lambda r: (r[4], r[3], r[2]))
        all_cost = sum(int(r[4]) for r in rows)
        month_cost = sum(int(r[7]) for r in rows)
        previous_cost = sum(int(r[8]) for r in rows)
        last = max(r[10] for r in rows)
        result.append(
            {
                "id": slug,
                "name": slug,
                "slug": slug,
                "created_at": _first_request(con, workspace_id, slug, machine),
                "archived_at": None,
                "machines": int(machines.get(slug, 0)),
                "stats": {
                    "requests_this_month": sum(int(r[6]) for r in rows),
                    "cost_usd_this_month": usd_string(month_cost),
                    "cost_usd_this_month_minor_units": minor_units(month_cost),
                    "previous_month_cost_usd_minor_units": minor_units(previous_cost),
                    "previous_month_cost_usd": usd_string(previous_cost),
                    "all_time_cost_usd_minor_units": minor_units(all_cost),
                    "all_time_cost_usd": usd_string(all_cost),
                    "all_time_cost_nanousd": all_cost,
                    "all_time_requests": sum(int(r[3]) for r in rows),
                    "unpriced_requests": sum(int(r[5]) for r in rows),
                    "last_active_at": _ledger_time(last) if last else None,
                    "primary_model": busiest[2],
                    "primary_provider": busiest[1],
                    "top_model": dearest[2] if dearest[4] else None,
                    "top_provider": dearest[1] if dearest[4] else None,
                    # All time, apart from money spent (the cost figures above).
                    **subscription_value(
                        sum(int(r[11]) for r in rows), sum(int(r[12]) for r in rows)
                    ),
                },
            }
        )
    result.sort(key=lambda p: (-p["stats"]["all_time_requests"], p["slug"]))
    return result


def grouped(
    con: Connection,
    workspace_id: str,
    group_by: list[str],
    since: date | None,
    until: date | None = None,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of the CSV export: one per combination of the chosen dimensions. By branch, from
    daily_branch_rollups, which has no provider or model (the route refuses those with it)."""
    where, params = _where(workspace_id, since, until, project)
    table = "daily_branch_rollups" if "branch" in group_by else "daily_rollups"
    keys = [DIMENSIONS[name] for name in group_by]
    select = ", ".join([*keys, _SELECT_SUMS]) if keys else _SELECT_SUMS
    group = f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
    sql = f"SELECT {select} FROM {table} r JOIN machines m ON m.id = r.machine_id{where}{group}"
    result = []
    for row in con.execute(sql, params).fetchall():
        item: dict[str, Any] = {}
        for name, value in zip(group_by, row[: len(keys)], strict=True):
            item[name] = value.isoformat() if isinstance(value, date) else str(value)
        sums = dict(zip(ROLLUP_MEASURES, row[len(keys) :], strict=True))
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
    "billing",
)


def recent_requests(
    con: Connection,
    workspace_id: str,
    project: str,
    limit: int,
    cursor: tuple[datetime, str] | None = None,
    provider: str | None = None,
    machine: str | None = None,
) -> list[dict[str, Any]]:
    """A project's rows, newest first, each in the local API's request shape plus the machine
    it came from and the machine's own figure. The cursor is the last row's (requested_at,
    id), so pages stay stable while rows arrive (new rows are newer than any cursor)."""
    clauses = ["l.workspace_id = %s", "l.project = %s"]
    params: list[Any] = [workspace_id, project]
    if cursor is not None:
        clauses.append("(l.requested_at, l.id) < (%s, %s)")
        params.extend(cursor)
    if provider is not None:
        clauses.append("l.provider = %s")
        params.append(provider)
    if machine is not None:
        clauses.append("l.machine_id = %s")
        params.append(machine)
    columns = ", ".join(f"l.{name}" for name in REQUEST_COLUMNS)
    sql = (
        f"SELECT {columns}, m.name, m.user_name FROM ledger l "
        "JOIN machines m ON m.id = l.machine_id "
        f"WHERE {' AND '.join(clauses)} ORDER BY l.requested_at DESC, l.id DESC LIMIT %s"
    )
    result = []
    for row in con.execute(sql, [*params, limit]).fetchall():
        raw = dict(zip(REQUEST_COLUMNS, row[:-2], strict=True))
        moment = raw["requested_at"]
        raw["requested_at"] = _ledger_time(moment)
        item = request_item(raw)
        item.update(
            machine=row[-2],
            user=row[-1],
            service_tier=raw["service_tier"],
            **money(raw["machine_cost_nanousd"], "machine_"),
            machine_price_source=raw["machine_price_source"],
        )
        result.append(item)
    return result


def request_total(
    con: Connection,
    workspace_id: str,
    project: str,
    provider: str | None = None,
    machine: str | None = None,
) -> int:
    """How many requests the project has (the `total` of a requests page), from the rollups."""
    where, params = _where(workspace_id, None, None, project, machine)
    if provider is not None:
        where += " AND r.provider = %s"
        params.append(provider)
    row = con.execute(f"SELECT COALESCE(sum(r.requests), 0) FROM daily_rollups r{where}", params)
    return int(row.fetchone()[0])  # type: ignore[index]


def team_status(con: Connection, workspace_id: str, machine: str | None = None) -> dict[str, Any]:
    """What the dashboard polls: the newest row and the last hour's count (as the daemon's
    /v1/daemon/status), plus the workspace's machines for its filter."""
    # Both from indexes: the hour's rows by (workspace, time), the newest from the rollups.
    where, params = "l.workspace_id = %s", [workspace_id]
    if machine is not None:
        where += " AND l.machine_id = %s"
        params.append(machine)
    last_hour = con.execute(
        f"SELECT count(*) FROM ledger l WHERE {where} "
        "AND l.requested_at >= now() - interval '1 hour'",
        params,
    ).fetchone()
    where_r, params_r = _where(workspace_id, None, None, None, machine)
    recent = " AND r.day >= (now() AT TIME ZONE 'UTC')::date - 1"
    sql = "SELECT max(r.last_request_at) FROM daily_rollups r"
    found = con.execute(sql + where_r + recent, params_r).fetchone()
    if found is None or found[0] is None:
        found = con.execute(sql + where_r, params_r).fetchone()
    last = found[0] if found else None
    machines = [
        {"machine_id": str(machine_id), "name": name, "user": user, "status": status}
        for machine_id, name, user, status in con.execute(
            "SELECT id, name, user_name, status FROM machines WHERE workspace_id = %s "
            "ORDER BY name, id",
            (workspace_id,),
        ).fetchall()
    ]
    return {
        "last_seen_at": _ledger_time(last) if last else None,
        "request_count_last_hour": int(last_hour[0]) if last_hour else 0,
        "machines": machines,
    }


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
