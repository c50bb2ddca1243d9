"""Reports over HTTP, for any account (a viewer or an admin of the workspace asked for): the
team's rollups (teamserver/rollups.py) at the local API's paths and in its shape (`/v1/stats`,
`/v1/projects`, `/v1/projects/{slug}/stats`, ...), so the
local dashboard can be pointed at a team server, plus the CSV exports.

`since`/`until` are whole UTC days (the rollups are daily); `machine` (a machine id from
/v1/team/status) narrows any of them to one machine.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from halton_meter.api.contract import CSV_FIELDS, csv_attachment
from halton_meter.teamserver import rollups
from halton_meter.teamserver.ingest import parse_timestamp
from halton_meter.teamserver.routes.deps import (
    ApiError,
    ReadSpace,
    Server,
    require_reader,
    since_day,
)

CSV_PAGE_ROWS = 1000  # rows read a query at a time while a CSV streams
MAX_PAGE = 1000

router = APIRouter(dependencies=[Depends(require_reader)])


def machine_id(text: str | None) -> str | None:
    if text is None or text == "":
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ApiError(400, f"machine: {text!r} is not a machine id") from None


@router.get("/v1/team/status")
def team_status(server: Server, space: ReadSpace, machine: str | None = None) -> dict[str, Any]:
    """What the dashboard polls (the daemon's /v1/daemon/status, team-wide)."""
    with server.connection() as con:
        found = rollups.team_status(con, space.id, machine_id(machine))
    return {"workspace": space.name, **found}


@router.get("/v1/stats")
def team_stats(
    server: Server,
    space: ReadSpace,
    since: str | None = None,
    until: str | None = None,
    machine: str | None = None,
) -> dict[str, Any]:
    start, end, only = since_day(since), since_day(until), machine_id(machine)
    with server.connection() as con:
        found = rollups.stats(con, space.id, start, end, machine=only)
    return {"workspace": space.name, **found}


@router.get("/v1/projects")
def team_projects(
    server: Server,
    space: ReadSpace,
    since: str | None = "all",
    machine: str | None = None,
) -> list[dict[str, Any]]:
    only = machine_id(machine)
    with server.connection() as con:
        return rollups.projects(con, space.id, since_day(since), machine=only)


# `{slug:path}`: a slug may hold "/" (sent as %2F); the suffixed routes come first.
@router.get("/v1/projects/{slug:path}/stats")
def team_project_stats(
    server: Server,
    space: ReadSpace,
    slug: str,
    since: str | None = None,
    until: str | None = None,
    machine: str | None = None,
) -> dict[str, Any]:
    start, end, only = since_day(since), since_day(until), machine_id(machine)
    with server.connection() as con:
        found = rollups.stats(con, space.id, start, end, project=slug, machine=only)
    return {"workspace": space.name, "project": slug, **found}


@router.get("/v1/projects/{slug:path}/requests")
def team_project_requests(
    server: Server,
    space: ReadSpace,
    slug: str,
    limit: int = 50,
    cursor: str | None = None,
    provider: str | None = None,
    machine: str | None = None,
) -> dict[str, Any]:
    """The local API's page ({items, next_cursor, total}); each item also names its
    machine and user and carries the machine's own cost beside the server's."""
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, f"limit must be between 1 and {MAX_PAGE}")
    after, only = _parse_cursor(cursor), machine_id(machine)
    with server.connection() as con:
        rows = rollups.recent_requests(con, space.id, slug, limit + 1, after, provider, only)
        total = rollups.request_total(con, space.id, slug, provider, only)
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = f"{rows[-1]['requested_at']}|{rows[-1]['id']}" if more else None
    return {"project": slug, "items": rows, "next_cursor": next_cursor, "total": total}


@router.get("/v1/projects/{slug:path}/requests.csv")
def team_project_requests_csv(
    server: Server,
    space: ReadSpace,
    slug: str,
    provider: str | None = None,
    machine: str | None = None,
) -> StreamingResponse:
    """Every request of the project, newest first (the local CSV's columns + machine, user),
    read a page at a time so a big export never sits in memory."""
    only = machine_id(machine)

    def lines() -> Iterator[str]:
        out = io.StringIO()
        fields = [*CSV_FIELDS, "machine", "user", "machine_cost_usd"]
        writer = csv.DictWriter(out, fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        after: tuple[Any, str] | None = None
        while True:
            with server.connection() as con:
                rows = rollups.recent_requests(
                    con, space.id, slug, CSV_PAGE_ROWS, after, provider, only
                )
            for row in rows:
                writer.writerow(row)
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(rows) < CSV_PAGE_ROWS:
                return
            after = (parse_timestamp(rows[-1]["requested_at"]), rows[-1]["id"])

    return StreamingResponse(
        lines(), media_type="text/csv; charset=utf-8", headers=csv_attachment(slug)
    )


@router.get("/v1/projects/{slug:path}")
def team_project(
    server: Server, slug: str, space: ReadSpace, machine: str | None = None
) -> dict[str, Any]:
    only = machine_id(machine)
    with server.connection() as con:
        found = rollups.projects(con, space.id, None, only=slug, machine=only)
    if not found:
        raise ApiError(404, f"no project {slug!r}")
    return found[0]


@router.get("/v1/export.csv")
def export_csv(
    server: Server,
    space: ReadSpace,
    group_by: str = "day,project,machine,user,provider,model",
    since: str | None = "30d",
) -> Response:
    dims = [d for d in group_by.split(",") if d]
    unknown = [d for d in dims if d not in rollups.DIMENSIONS]
    if unknown:
        raise ApiError(400, f"unknown group_by {unknown} (known: {', '.join(rollups.DIMENSIONS)})")
    if "branch" in dims and (other := set(dims) - set(rollups.BRANCH_TABLE_DIMENSIONS)):
        known = ", ".join(rollups.BRANCH_TABLE_DIMENSIONS)
        raise ApiError(400, f"group_by branch goes with {known} only, not {sorted(other)}")
    with server.connection() as con:
        rows = rollups.grouped(con, space.id, dims, since_day(since))
    return Response(
        rollups.to_csv(rows, dims),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="halton-team.csv"'},
    )


def _parse_cursor(cursor: str | None) -> tuple[Any, str] | None:
    if not cursor:
        return None
    moment, _, row_id = cursor.partition("|")
    try:
        return parse_timestamp(moment), row_id
    except ValueError:
        raise ApiError(400, "bad cursor; pass back next_cursor as given") from None
