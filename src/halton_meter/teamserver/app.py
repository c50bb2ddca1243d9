"""The team server's HTTP API and pages (FastAPI over a psycopg connection pool).

Three kinds of caller: machines (a machine token: ingest, whoami, disconnect), admins (an admin
token as `Authorization: Bearer`, or the cookie the login page sets: rollups, export, machines,
approvals), and anyone (health, asking for a pairing code, polling with its secret). The
rollup endpoints have the paths and shape of the local API (`/v1/stats`, `/v1/projects`,
`/v1/projects/{slug}/stats`), so the local dashboard can be pointed at a team server.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from halton_meter import __version__
from halton_meter.api.security import SECURITY_HEADERS
from halton_meter.api.views import CSV_FIELDS
from halton_meter.dashboard import mount_dashboard
from halton_meter.teamserver import pages, pairing, rollups
from halton_meter.teamserver.ingest import Batch, PartitionCache, parse_timestamp, store_batch
from halton_meter.teamserver.schema import LATEST_VERSION, migrate
from halton_meter.teamserver.settings import ServerSettings
from halton_meter.timewindow import TimeParseError, parse_moment

ADMIN_COOKIE = "halton_admin"
DASHBOARD_TOKEN_HEADER = "x-halton-token"  # what the dashboard's script sends
BYTES_PER_ROW = 4096  # a generous ceiling for one row's JSON


class ApiError(HTTPException):
    """An error answered as {"error": message, ...details}."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(status, message)
        self.details = details


def create_app(settings: ServerSettings) -> FastAPI:
    pool = ConnectionPool(
        settings.dsn,
        min_size=1,
        max_size=settings.pool_size,
        open=False,
        name="halton-meter",
        kwargs={"autocommit": True},  # transactions are explicit (`with con.transaction()`)
    )
    partitions = PartitionCache()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        pool.open(wait=True, timeout=30)
        with pool.connection() as con:
            migrate(con)
        yield
        pool.close()

    app = FastAPI(title="Halton Meter team server", version=__version__, lifespan=lifespan)

    @contextmanager
    def connection() -> Iterator[psycopg.Connection[Any]]:
        with pool.connection() as con:
            yield con

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.detail, **error.details}, status_code=error.status_code)

    # --- helpers --------------------------------------------------------------------------

    def bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def machine_of(request: Request) -> pairing.MachineIdentity:
        token = bearer(request)
        if token is None:
            raise ApiError(401, "missing machine token (Authorization: Bearer ...)")
        with connection() as con:
            machine = pairing.machine_for_token(con, token)
        if machine is None:
            raise ApiError(401, "unknown machine token; pair with `halton-meter cloud connect`")
        if machine.status == "revoked":
            raise ApiError(401, "this machine's token was revoked; pair again to resume")
        if machine.status != "active":
            raise ApiError(403, f"machine is {machine.status}")
        return machine

    def is_admin(request: Request) -> bool:
        """An admin token as a bearer, as the dashboard's `X-Halton-Token`, or the login cookie.
        (Headers cannot be forged by another site's page; the cookie is SameSite=Strict.)"""
        token = (
            bearer(request)
            or request.headers.get(DASHBOARD_TOKEN_HEADER, "").strip()
            or request.cookies.get(ADMIN_COOKIE)
        )
        if not token:
            return False
        with connection() as con:
            return pairing.is_admin_token(con, token)

    def require_admin(request: Request) -> None:
        if not is_admin(request):
            raise ApiError(401, "admin token required (Authorization: Bearer hma_..., or log in)")

    def same_origin_form(request: Request) -> None:
        """Forms change state with a cookie: refuse them from another site's page."""
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise ApiError(403, "cross-origin form refused")

    def workspace_id(name: str) -> str:
        with connection() as con:
            row = con.execute("SELECT id FROM workspaces WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise ApiError(404, f"no workspace {name!r}")
        return str(row[0])

    def since_day(text: str | None) -> date | None:
        if text is None or text == "all":
            return None
        try:
            return parse_moment(text).date()
        except TimeParseError as error:
            raise ApiError(400, str(error)) from None

    # --- machines -------------------------------------------------------------------------

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "schema": LATEST_VERSION}

    @app.post("/v1/pairing")
    async def request_pairing(request: Request) -> dict[str, Any]:
        body = await _json_body(request, 4096)
        fields = ("machine_uid", "machine_name", "user")
        if not isinstance(body, dict) or any(
            not isinstance(body.get(key), str) or not 0 < len(body[key]) <= 200 for key in fields
        ):
            raise ApiError(422, "expected {machine_uid, machine_name, user} as short strings")
        workspace = body.get("workspace", "default")
        if not isinstance(workspace, str) or not 0 < len(workspace) <= 100:
            raise ApiError(422, "workspace must be a short string")

        def create() -> pairing.PairingRequest:
            with connection() as con:
                return pairing.request_pairing(
                    con,
                    machine_uid=body["machine_uid"],
                    machine_name=body["machine_name"],
                    user_name=body["user"],
                    workspace=workspace,
                )

        created = await run_in_threadpool(create)
        return {
            "code": created.code,
            "poll_secret": created.poll_secret,
            "expires_at": created.expires_at.isoformat(),
            "approve_url": f"{settings.base_url()}/approve?code={created.code}",
        }

    @app.post("/v1/pairing/{code}/poll")
    async def poll_pairing(code: str, request: Request) -> dict[str, Any]:
        body = await _json_body(request, 4096)
        if not isinstance(body, dict) or not isinstance(body.get("poll_secret"), str):
            raise ApiError(422, "expected {poll_secret}")

        def check() -> dict[str, Any]:
            with connection() as con:
                return pairing.poll(con, code, body["poll_secret"])

        answer = await run_in_threadpool(check)
        if answer["status"] == "unknown":
            raise ApiError(404, "no such pairing code for this secret")
        return answer

    @app.get("/v1/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        machine = machine_of(request)
        return {
            "workspace_id": machine.workspace_id,
            "workspace": machine.workspace,
            "machine_id": machine.machine_id,
            "machine_name": machine.name,
            "user": machine.user_name,
            "status": machine.status,
        }

    @app.post("/v1/machine/disconnect")
    def disconnect(request: Request) -> dict[str, Any]:
        machine = machine_of(request)
        with connection() as con:
            return pairing.revoke(con, machine.machine_id)

    @app.post("/v1/requests/batch")
    async def ingest(request: Request) -> dict[str, Any]:
        machine = await run_in_threadpool(machine_of, request)
        limit = settings.max_batch_rows
        body = await _json_body(request, limit * BYTES_PER_ROW)
        if isinstance(body, dict) and isinstance(body.get("rows"), list):
            if len(body["rows"]) > limit:
                raise ApiError(413, f"batch of {len(body['rows'])} rows; at most {limit} a batch")
            if not body["rows"]:
                raise ApiError(422, "a batch needs at least one row")
        try:
            batch = Batch.model_validate(body)
        except ValidationError as error:
            problems = [
                {
                    "where": ".".join(str(part) for part in problem["loc"]),
                    "problem": problem["msg"],
                }
                for problem in error.errors()[:20]
            ]
            raise ApiError(422, "invalid batch; nothing was stored", problems=problems) from None
        if batch.workspace_id != machine.workspace_id:
            raise ApiError(403, "this token belongs to another workspace; nothing was stored")
        if batch.machine_id != machine.machine_id:
            raise ApiError(403, "this token belongs to another machine; nothing was stored")

        def store() -> int:
            with connection() as con:
                return store_batch(
                    con, machine.workspace_id, machine.machine_id, batch.rows, partitions
                )

        stored = await run_in_threadpool(store)
        return {
            "received": len(batch.rows),
            "stored": stored,
            "duplicates": len(batch.rows) - stored,
        }

    # --- rollups (the local API's paths and shape) ---------------------------------------
    # `since`/`until` are whole UTC days (the rollups are daily); `machine` (a machine id from
    # /v1/team/status) narrows any of them to one machine.

    def machine_id(text: str | None) -> str | None:
        if text is None or text == "":
            return None
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise ApiError(400, f"machine: {text!r} is not a machine id") from None

    @app.get("/v1/team/status")
    def team_status(
        request: Request, workspace: str = "default", machine: str | None = None
    ) -> dict[str, Any]:
        """What the dashboard polls (the daemon's /v1/daemon/status, team-wide)."""
        require_admin(request)
        with connection() as con:
            found = rollups.team_status(con, workspace_id(workspace), machine_id(machine))
        return {"workspace": workspace, **found}

    @app.get("/v1/stats")
    def team_stats(
        request: Request,
        since: str | None = None,
        until: str | None = None,
        workspace: str = "default",
        machine: str | None = None,
    ) -> dict[str, Any]:
        require_admin(request)
        start, end, only = since_day(since), since_day(until), machine_id(machine)
        with connection() as con:
            found = rollups.stats(con, workspace_id(workspace), start, end, machine=only)
        return {"workspace": workspace, **found}

    @app.get("/v1/projects")
    def team_projects(
        request: Request,
        since: str | None = "all",
        workspace: str = "default",
        machine: str | None = None,
    ) -> list[dict[str, Any]]:
        require_admin(request)
        only = machine_id(machine)
        with connection() as con:
            return rollups.projects(con, workspace_id(workspace), since_day(since), machine=only)

    # `{slug:path}`: a slug may hold "/" (sent as %2F); the suffixed routes come first.
    @app.get("/v1/projects/{slug:path}/stats")
    def team_project_stats(
        request: Request,
        slug: str,
        since: str | None = None,
        until: str | None = None,
        workspace: str = "default",
        machine: str | None = None,
    ) -> dict[str, Any]:
        require_admin(request)
        start, end, only = since_day(since), since_day(until), machine_id(machine)
        with connection() as con:
            found = rollups.stats(
                con, workspace_id(workspace), start, end, project=slug, machine=only
            )
        return {"workspace": workspace, "project": slug, **found}

    @app.get("/v1/projects/{slug:path}/requests")
    def team_project_requests(
        request: Request,
        slug: str,
        limit: int = 50,
        cursor: str | None = None,
        provider: str | None = None,
        workspace: str = "default",
        machine: str | None = None,
    ) -> dict[str, Any]:
        """The local API's page ({items, next_cursor, total}); each item also names its
        machine and user and carries the machine's own cost beside the server's."""
        require_admin(request)
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit must be between 1 and 1000")
        after, only = _parse_cursor(cursor), machine_id(machine)
        with connection() as con:
            space = workspace_id(workspace)
            rows = rollups.recent_requests(con, space, slug, limit + 1, after, provider, only)
            total = rollups.request_total(con, space, slug, provider, only)
        more, rows = len(rows) > limit, rows[:limit]
        next_cursor = f"{rows[-1]['requested_at']}|{rows[-1]['id']}" if more else None
        return {"project": slug, "items": rows, "next_cursor": next_cursor, "total": total}

    @app.get("/v1/projects/{slug:path}/requests.csv")
    def team_project_requests_csv(
        request: Request,
        slug: str,
        provider: str | None = None,
        workspace: str = "default",
        machine: str | None = None,
    ) -> StreamingResponse:
        """Every request of the project, newest first (the local CSV's columns + machine, user),
        read a page at a time so a big export never sits in memory."""
        require_admin(request)
        space, only = workspace_id(workspace), machine_id(machine)

        def lines() -> Iterator[str]:
            out = io.StringIO()
            fields = [*CSV_FIELDS, "machine", "user", "machine_cost_usd"]
            writer = csv.DictWriter(out, fields, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            after: tuple[Any, str] | None = None
            while True:
                with connection() as con:
                    rows = rollups.recent_requests(con, space, slug, 1000, after, provider, only)
                for row in rows:
                    writer.writerow(row)
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                if len(rows) < 1000:
                    return
                after = (parse_timestamp(rows[-1]["requested_at"]), rows[-1]["id"])

        filename = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in slug)
        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}-requests.csv"'},
        )

    @app.get("/v1/projects/{slug:path}")
    def team_project(
        request: Request, slug: str, workspace: str = "default", machine: str | None = None
    ) -> dict[str, Any]:
        require_admin(request)
        only = machine_id(machine)
        with connection() as con:
            found = rollups.projects(con, workspace_id(workspace), None, only=slug, machine=only)
        if not found:
            raise ApiError(404, f"no project {slug!r}")
        return found[0]

    @app.get("/v1/export.csv")
    def export_csv(
        request: Request,
        group_by: str = "day,project,machine,user,provider,model",
        since: str | None = "30d",
        workspace: str = "default",
    ) -> Response:
        require_admin(request)
        dims = [d for d in group_by.split(",") if d]
        unknown = [d for d in dims if d not in rollups.DIMENSIONS]
        if unknown:
            raise ApiError(
                400, f"unknown group_by {unknown} (known: {', '.join(rollups.DIMENSIONS)})"
            )
        with connection() as con:
            rows = rollups.grouped(con, workspace_id(workspace), dims, since_day(since))
        return Response(
            rollups.to_csv(rows, dims),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="halton-team.csv"'},
        )

    # --- admin ----------------------------------------------------------------------------

    @app.get("/v1/machines")
    def machines(request: Request) -> dict[str, Any]:
        require_admin(request)
        with connection() as con:
            return {
                "machines": pairing.list_machines(con),
                "pending": [_jsonable(p) for p in pairing.pending_pairings(con)],
            }

    @app.post("/v1/pairings/{code}/approve")
    def approve_api(request: Request, code: str) -> dict[str, Any]:
        require_admin(request)
        with connection() as con:
            try:
                return pairing.approve(con, code)
            except pairing.PairingError as error:
                raise ApiError(409, str(error)) from None

    @app.post("/v1/machines/{machine}/revoke")
    def revoke_api(request: Request, machine: str) -> dict[str, Any]:
        require_admin(request)
        with connection() as con:
            try:
                return pairing.revoke(con, machine)
            except pairing.PairingError as error:
                raise ApiError(404, str(error)) from None

    # --- pages ----------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(next: str = "/") -> str:
        return pages.login(next)

    @app.post("/login")
    async def login(request: Request) -> Response:
        same_origin_form(request)
        form = await _form(request)
        token, next = form.get("token", ""), form.get("next", "/")

        def check() -> bool:
            with connection() as con:
                return pairing.is_admin_token(con, token.strip())

        ok = await run_in_threadpool(check)
        if ok:
            target = next if next.startswith("/") and not next.startswith("//") else "/"
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(ADMIN_COOKIE, token.strip(), httponly=True, samesite="strict")
            return response
        return HTMLResponse(pages.login(next, "That is not an admin token."), status_code=401)

    @app.get("/", response_class=HTMLResponse)
    def team_page(request: Request, since: str = "30d", workspace: str = "default") -> Response:
        if not is_admin(request):
            return RedirectResponse("/login?next=/", status_code=303)
        start = since_day(since)
        with connection() as con:
            found = rollups.stats(con, workspace_id(workspace), start)
        return HTMLResponse(pages.team(workspace, since, found))

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request, message: str = "") -> Response:
        if not is_admin(request):
            return RedirectResponse("/login?next=/admin", status_code=303)
        with connection() as con:
            return HTMLResponse(
                pages.admin(pairing.list_machines(con), pairing.pending_pairings(con), message)
            )

    @app.get("/approve", response_class=HTMLResponse)
    def approve_page(request: Request, code: str = "") -> Response:
        if not is_admin(request):
            return RedirectResponse(f"/login?next=/approve?code={code}", status_code=303)
        with connection() as con:
            pending = [
                p
                for p in pairing.pending_pairings(con)
                if p["code"] == pairing.normalise_code(code)
            ]
        return HTMLResponse(pages.approve(code, pending[0] if pending else None))

    @app.post("/admin/approve")
    async def approve_form(request: Request) -> Response:
        await run_in_threadpool(require_admin, request)
        same_origin_form(request)
        code = (await _form(request)).get("code", "")
        message = await run_in_threadpool(approve_code, code)
        return RedirectResponse(f"/admin?message={_quote(message)}", status_code=303)

    def approve_code(code: str) -> str:
        with connection() as con:
            try:
                done = pairing.approve(con, code)
                return f"Approved {done['machine_name']} ({done['code']})."
            except pairing.PairingError as error:
                return str(error)

    @app.post("/admin/revoke")
    async def revoke_form(request: Request) -> Response:
        await run_in_threadpool(require_admin, request)
        same_origin_form(request)
        machine = (await _form(request)).get("machine", "")
        message = await run_in_threadpool(revoke_machine, machine)
        return RedirectResponse(f"/admin?message={_quote(message)}", status_code=303)

    def revoke_machine(machine: str) -> str:
        with connection() as con:
            try:
                done = pairing.revoke(con, machine)
                return f"Revoked {done['machine_name']}."
            except pairing.PairingError as error:
                return str(error)

    @app.get("/dashboard", include_in_schema=False)
    def dashboard_slash() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=307)

    # The local dashboard's own files, reading this server's rollups (dashboard/__init__.py).
    # The files hold no data; every figure they show needs an admin token or the login cookie.
    mount_dashboard(app, "/dashboard", "team", SECURITY_HEADERS)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process (`server run` set the settings)."""
    from halton_meter.teamserver.settings import settings_from_environment

    return create_app(settings_from_environment())


async def _json_body(request: Request, max_bytes: int) -> Any:
    """The request's JSON, refusing oversized bodies before reading them whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"body of {declared} bytes; at most {max_bytes}")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > max_bytes:
            raise ApiError(413, f"body larger than {max_bytes} bytes")
    try:
        return json.loads(received)
    except ValueError as error:
        raise ApiError(400, f"body is not JSON: {error}") from None


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (no multipart dependency for three fields)."""
    from urllib.parse import parse_qs

    body = await request.body()
    if len(body) > 16384:
        raise ApiError(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _parse_cursor(cursor: str | None) -> tuple[Any, str] | None:
    if not cursor:
        return None
    moment, _, row_id = cursor.partition("|")
    try:
        return parse_timestamp(moment), row_id
    except ValueError:
        raise ApiError(400, "bad cursor; pass back next_cursor as given") from None


def _jsonable(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in item.items()}


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text)
