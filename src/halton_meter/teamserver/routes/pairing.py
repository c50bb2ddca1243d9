"""Pairing over HTTP: a machine asks for a code and polls with its secret (no token yet), then
uses its machine token (whoami, disconnect); an admin lists, approves and revokes machines.
The rules themselves are in teamserver/pairing.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from halton_meter.teamserver import pairing
from halton_meter.teamserver.routes.deps import (
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


# --- the admin's side -----------------------------------------------------------------------

admin = APIRouter(dependencies=[Depends(require_admin)])


@admin.get("/v1/machines")
def machines(server: Server) -> dict[str, Any]:
    with server.connection() as con:
        return {
            "machines": pairing.list_machines(con),
            "pending": [_jsonable(p) for p in pairing.pending_pairings(con)],
        }


@admin.post("/v1/pairings/{code}/approve")
def approve(code: str, server: Server) -> dict[str, Any]:
    with server.connection() as con:
        try:
            return pairing.approve(con, code)
        except pairing.PairingError as error:
            raise ApiError(409, str(error)) from None


@admin.post("/v1/machines/{machine}/revoke")
def revoke(machine: str, server: Server) -> dict[str, Any]:
    with server.connection() as con:
        try:
            return pairing.revoke(con, machine)
        except pairing.PairingError as error:
            raise ApiError(404, str(error)) from None


router.include_router(admin)


def _jsonable(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in item.items()}
