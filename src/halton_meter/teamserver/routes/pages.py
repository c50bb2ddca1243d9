"""The pages over HTTP: log in (the cookie), the team overview (any account), the admin page
(machines, pending codes, accounts: admins only) and its forms, the approve link a pairing
machine shows. The HTML itself is made in teamserver/pages.py; a page without an account sends
the browser to the login page; a viewer on an admin's page is told it needs an admin."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from halton_meter.teamserver import accounts, budgets, pages, pairing, rollups
from halton_meter.teamserver.accounts import Account
from halton_meter.teamserver.routes.deps import (
    ADMIN_COOKIE,
    Admin,
    CallerAccount,
    Server,
    form,
    read_workspace,
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
            return accounts.account_for_token(con, token.strip()) is not None

    if await run_in_threadpool(check):
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(ADMIN_COOKIE, token.strip(), httponly=True, samesite="strict")
        return response
    return HTMLResponse(pages.login(next, "That is not an account's token."), status_code=401)


@router.get("/", response_class=HTMLResponse)
def team_page(
    account: CallerAccount, server: Server, since: str = "30d", workspace: str | None = None
) -> Response:
    if account is None:
        return RedirectResponse("/login?next=/", status_code=303)
    space = read_workspace(account, server, workspace)
    start = since_day(since)
    with server.connection() as con:
        found = rollups.stats(con, space.id, start)
    return HTMLResponse(pages.team(space.name, since, found, account))


@router.get("/admin", response_class=HTMLResponse)
def admin_page(account: CallerAccount, server: Server, message: str = "") -> Response:
    if account is None:
        return RedirectResponse("/login?next=/admin", status_code=303)
    if not account.is_admin:
        return HTMLResponse(pages.not_an_admin(account), status_code=403)
    return HTMLResponse(_admin_html(server, account, message))


def _budgets(
    server: Server, con: Connection, account: Account
) -> tuple[list[dict[str, Any]], list[Any]]:
    """The team budgets of the workspaces the account reaches, as `GET /v1/budgets` has them."""
    now = time.time()
    spaces = (
        [account.workspace_id]
        if account.workspace_id
        else [str(row[0]) for row in con.execute("SELECT DISTINCT workspace_id FROM team_budgets")]
    )
    views: list[dict[str, Any]] = []
    fired: list[Any] = []
    for space in spaces:
        found = budgets.evaluate(con, space, now)
        budgets.AlertSender(server.settings.dsn).send(found)  # crossings this evaluation made
        views += [evaluation.to_json(now) for evaluation in found]
        fired += budgets.alerts_of(con, space)
    return views, fired


def _admin_html(server: Server, account: Account, message: str, new_token: str = "") -> str:
    with server.connection() as con:
        return pages.admin(
            pairing.list_machines(con, account.workspace_id),
            pairing.pending_pairings(con, account.workspace),
            accounts.list_accounts(con, account.workspace_id),
            account,
            message,
            new_token,
            _budgets(server, con, account),
        )


@router.get("/approve", response_class=HTMLResponse)
def approve_page(account: CallerAccount, server: Server, code: str = "") -> Response:
    if account is None:
        return RedirectResponse(f"/login?next=/approve?code={code}", status_code=303)
    if not account.is_admin:
        return HTMLResponse(pages.not_an_admin(account), status_code=403)
    with server.connection() as con:
        pending = [
            p
            for p in pairing.pending_pairings(con, account.workspace)
            if p["code"] == pairing.normalise_code(code)
        ]
    return HTMLResponse(pages.approve(code, pending[0] if pending else None))


@router.post("/admin/approve", dependencies=AdminForm)
async def approve_form(request: Request, server: Server, account: Admin) -> Response:
    def approve(con: Connection, code: str) -> str:
        done = pairing.approve(con, code, account.workspace)
        return f"Approved {done['machine_name']} ({done['code']})."

    return await _admin_action(request, server, "code", approve)


@router.post("/admin/revoke", dependencies=AdminForm)
async def revoke_form(request: Request, server: Server, account: Admin) -> Response:
    def revoke(con: Connection, machine: str) -> str:
        return f"Revoked {pairing.revoke(con, machine, account.workspace_id)['machine_name']}."

    return await _admin_action(request, server, "machine", revoke)


@router.post("/admin/accounts/remove", dependencies=AdminForm)
async def remove_account_form(request: Request, server: Server, account: Admin) -> Response:
    def remove(con: Connection, which: str) -> str:
        return (
            f"Removed account {accounts.remove_account(con, which, account.workspace_id)['name']}."
        )

    return await _admin_action(request, server, "account", remove)


@router.post("/admin/accounts/add", dependencies=AdminForm)
async def add_account_form(request: Request, server: Server, account: Admin) -> Response:
    """The new account's token is shown on this one page (never put in a URL)."""
    fields = await form(request)
    workspace = account.workspace or (fields.get("workspace") or None)

    def add() -> tuple[str, str]:
        with server.connection() as con:
            try:
                made, token = accounts.create_account(
                    con, fields.get("name", ""), fields.get("role", ""), workspace
                )
            except accounts.AccountError as error:
                return str(error), ""
        where = f"workspace {workspace}" if workspace else "every workspace"
        return f"Added {made.role} {made.name} ({where}); its token is shown once:", token

    message, token = await run_in_threadpool(add)
    html = await run_in_threadpool(_admin_html, server, account, message, token)
    return HTMLResponse(html, headers={"cache-control": "no-store"})


async def _admin_action(
    request: Request, server: Server, field: str, act: Callable[[Connection, str], str]
) -> Response:
    """Run a form's action on its one field, then show the admin page with what happened."""
    value = (await form(request)).get(field, "")

    def run() -> str:
        with server.connection() as con:
            try:
                return act(con, value)
            except (pairing.PairingError, accounts.AccountError) as error:
                return str(error)

    message = await run_in_threadpool(run)
    return RedirectResponse(f"/admin?message={quote(message)}", status_code=303)


@router.get("/dashboard", include_in_schema=False)
def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("/dashboard/", status_code=307)
