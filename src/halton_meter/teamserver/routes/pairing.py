"""Pairing over HTTP: a machine asks for a code and polls with its secret (no token yet), then
uses its machine token (whoami, disconnect); an admin lists, approves and revokes machines and
manages accounts. The rules themselves are in teamserver/pairing.py and accounts.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from halton_meter.teamserver import accounts, pairing
from halton_meter.teamserver.routes.deps import (
    Admin,
    ApiError,
    Machine,
    Server,
    json_body,
    require_admin,
)

MAX_PAIRING_BYTES = 4096

router = APIRouter()


# --- the machine's side ---------------------------------------------------------------------


@router.post("/v1/pairing")
async def request_pairing(request: Request, server: Server) -> dict[str, Any]:
    body = await json_body(request, MAX_PAIRING_BYTES)
    fields = ("machine_uid", "machine_name", "user")
    if not isinstance(body, dict) or any(
        not isinstance(body.get(key), str) or not 0 < len(body[key]) <= 200 for key in fields
    ):
        raise ApiError(422, "expected {machine_uid, machine_name, user} as short strings")
    workspace = body.get("workspace", "default")
    if not isinstance(workspace, str) or not 0 < len(workspace) <= 100:
        raise ApiError(422, "workspace must be a short string")

    def create() -> pairing.PairingRequest:
        with server.connection() as con:
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
        "approve_url": f"{server.settings.base_url()}/approve?code={created.code}",
    }


@router.post("/v1/pairing/{code}/poll")
async def poll_pairing(code: str, request: Request, server: Server) -> dict[str, Any]:
    body = await json_body(request, MAX_PAIRING_BYTES)
    if not isinstance(body, dict) or not isinstance(body.get("poll_secret"), str):
        raise ApiError(422, "expected {poll_secret}")

    def check() -> dict[str, Any]:
        with server.connection() as con:
            return pairing.poll(con, code, body["poll_secret"])

    answer = await run_in_threadpool(check)
    if answer["status"] == "unknown":
        raise ApiError(404, "no such pairing code for this secret")
    return answer


@router.get("/v1/whoami")
def whoami(machine: Machine) -> dict[str, Any]:
    return {
        "workspace_id": machine.workspace_id,
        "workspace": machine.workspace,
        "machine_id": machine.machine_id,
        "machine_name": machine.name,
        "user": machine.user_name,
        "status": machine.status,
    }


@router.post("/v1/machine/disconnect")
def disconnect(machine: Machine, server: Server) -> dict[str, Any]:
    with server.connection() as con:
        return pairing.revoke(con, machine.machine_id)


# --- the admin's side (a workspace's admin sees and manages only that workspace) -----------

admin = APIRouter(dependencies=[Depends(require_admin)])


@admin.get("/v1/machines")
def machines(server: Server, account: Admin) -> dict[str, Any]:
    with server.connection() as con:
        return {
            "machines": pairing.list_machines(con, account.workspace_id),
            "pending": [_jsonable(p) for p in pairing.pending_pairings(con, account.workspace)],
        }


@admin.post("/v1/pairings/{code}/approve")
def approve(code: str, server: Server, account: Admin) -> dict[str, Any]:
    with server.connection() as con:
        try:
            return pairing.approve(con, code, account.workspace)
        except pairing.PairingError as error:
            raise ApiError(409, str(error)) from None


@admin.post("/v1/machines/{machine}/revoke")
def revoke(machine: str, server: Server, account: Admin) -> dict[str, Any]:
    with server.connection() as con:
        try:
            return pairing.revoke(con, machine, account.workspace_id)
        except pairing.PairingError as error:
            raise ApiError(404, str(error)) from None


@admin.get("/v1/accounts")
def list_accounts(server: Server, account: Admin) -> dict[str, Any]:
    with server.connection() as con:
        return {"accounts": accounts.list_accounts(con, account.workspace_id)}


@admin.post("/v1/accounts")
async def add_account(request: Request, server: Server, account: Admin) -> dict[str, Any]:
    """{name, role, workspace}: a new account; its token is in this answer only. A
    workspace's admin adds accounts to its own workspace only."""
    body = await json_body(request, MAX_PAIRING_BYTES)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise ApiError(422, "expected {name, role, workspace}")
    role, workspace = body.get("role", accounts.VIEWER), body.get("workspace")
    if not isinstance(role, str) or not (workspace is None or isinstance(workspace, str)):
        raise ApiError(422, "role and workspace must be strings")
    if account.workspace is not None and workspace != account.workspace:
        raise ApiError(403, f"{account.name} manages workspace {account.workspace!r} only")

    def create() -> dict[str, Any]:
        with server.connection() as con:
            try:
                made, token = accounts.create_account(con, body["name"], role, workspace)
            except accounts.AccountError as error:
                raise ApiError(422, str(error)) from None
        return {
            "id": made.id,
            "name": made.name,
            "role": made.role,
            "workspace": workspace,
            "token": token,
        }

    return await run_in_threadpool(create)


@admin.post("/v1/accounts/{name}/remove")
def remove_account(name: str, server: Server, account: Admin) -> dict[str, Any]:
    with server.connection() as con:
        try:
            return accounts.remove_account(con, name, account.workspace_id)
        except accounts.AccountError as error:
            raise ApiError(404, str(error)) from None


router.include_router(admin)


def _jsonable(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in item.items()}
