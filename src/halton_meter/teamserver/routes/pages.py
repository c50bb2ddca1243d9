"""The admin's pages over HTTP: log in (the cookie), the team overview, the machines page and
its approve/revoke forms, the approve link a pairing machine shows. The HTML itself is made in
teamserver/pages.py; a page without an admin sends the browser to the login page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from halton_meter.teamserver import pages, pairing, rollups
from halton_meter.teamserver.routes.deps import (
    ADMIN_COOKIE,
    IsAdmin,
    Server,
    form,
    require_admin,
    same_origin_form,
    since_day,
)

Connection = psycopg.Connection[Any]

router = APIRouter()

# State-changing forms: an admin, and a form from this server's own pages.
AdminForm = [Depends(require_admin), Depends(same_origin_form)]


@router.get("/login", response_class=HTMLResponse)
def login_page(next: str = "/") -> str:
    return pages.login(next)


@router.post("/login", dependencies=[Depends(same_origin_form)])
async def login(request: Request, server: Server) -> Response:
    fields = await form(request)
    token, next = fields.get("token", ""), fields.get("next", "/")

    def check() -> bool:
        with server.connection() as con:
            return pairing.is_admin_token(con, token.strip())

    if await run_in_threadpool(check):
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(ADMIN_COOKIE, token.strip(), httponly=True, samesite="strict")
        return response
    return HTMLResponse(pages.login(next, "That is not an admin token."), status_code=401)


@router.get("/", response_class=HTMLResponse)
def team_page(
    admin: IsAdmin, server: Server, since: str = "30d", workspace: str = "default"
) -> Response:
    if not admin:
        return RedirectResponse("/login?next=/", status_code=303)
    start = since_day(since)
    with server.connection() as con:
        found = rollups.stats(con, server.workspace_id(workspace), start)
    return HTMLResponse(pages.team(workspace, since, found))


@router.get("/admin", response_class=HTMLResponse)
def admin_page(admin: IsAdmin, server: Server, message: str = "") -> Response:
    if not admin:
        return RedirectResponse("/login?next=/admin", status_code=303)
    with server.connection() as con:
        return HTMLResponse(
            pages.admin(pairing.list_machines(con), pairing.pending_pairings(con), message)
        )


@router.get("/approve", response_class=HTMLResponse)
def approve_page(admin: IsAdmin, server: Server, code: str = "") -> Response:
    if not admin:
        return RedirectResponse(f"/login?next=/approve?code={code}", status_code=303)
    with server.connection() as con:
        pending = [
            p for p in pairing.pending_pairings(con) if p["code"] == pairing.normalise_code(code)
        ]
    return HTMLResponse(pages.approve(code, pending[0] if pending else None))


@router.post("/admin/approve", dependencies=AdminForm)
async def approve_form(request: Request, server: Server) -> Response:
    def approve(con: Connection, code: str) -> str:
        done = pairing.approve(con, code)
        return f"Approved {done['machine_name']} ({done['code']})."

    return await _admin_action(request, server, "code", approve)


@router.post("/admin/revoke", dependencies=AdminForm)
async def revoke_form(request: Request, server: Server) -> Response:
    def revoke(con: Connection, machine: str) -> str:
        return f"Revoked {pairing.revoke(con, machine)['machine_name']}."

    return await _admin_action(request, server, "machine", revoke)


async def _admin_action(
    request: Request, server: Server, field: str, act: Callable[[Connection, str], str]
) -> Response:
    """Run a form's action on its one field, then show the admin page with what happened."""
    value = (await form(request)).get(field, "")

    def run() -> str:
        with server.connection() as con:
            try:
                return act(con, value)
            except pairing.PairingError as error:
                return str(error)

    message = await run_in_threadpool(run)
    return RedirectResponse(f"/admin?message={quote(message)}", status_code=303)


@router.get("/dashboard", include_in_schema=False)
def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("/dashboard/", status_code=307)
