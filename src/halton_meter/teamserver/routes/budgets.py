"""Team budgets over HTTP: any account of a workspace reads them (with the team's spend, the
state and the alerts fired); only an admin adds, edits or removes one. A paired machine fetches
the budgets that cover it, with the team's spent figure, on each sync
(`GET /v1/machine/budgets`)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from halton_meter.teamserver import budgets
from halton_meter.teamserver.routes.deps import (
    Admin,
    AdminSpace,
    ApiError,
    Machine,
    ReadSpace,
    Server,
    TeamServer,
    json_body,
)

MAX_BUDGET_BYTES = 16384

router = APIRouter()


def evaluate_and_alert(server: TeamServer, workspace_id: str) -> list[budgets.Evaluation]:
    """The workspace's budgets on the totals now; new crossings are delivered (once)."""
    with server.connection() as con:
        found = budgets.evaluate(con, workspace_id)
    budgets.AlertSender(server.settings.dsn).send(found)
    return found


@router.get("/v1/budgets")
def list_budgets(server: Server, space: ReadSpace) -> dict[str, Any]:
    now = time.time()
    found = evaluate_and_alert(server, space.id)
    with server.connection() as con:
        fired = budgets.alerts_of(con, space.id)
    return {
        "workspace": space.name,
        "budgets": [evaluation.to_json(now) for evaluation in found],
        "alerts": fired,
    }


async def _table(request: Request) -> dict[str, Any]:
    body = await json_body(request, MAX_BUDGET_BYTES)
    if not isinstance(body, dict):
        raise ApiError(422, "expected a JSON object: the keys of a [[budgets]] table")
    return body


@router.post("/v1/budgets", status_code=201)
async def add_budget(
    request: Request, server: Server, space: AdminSpace, account: Admin
) -> dict[str, Any]:
    table = await _table(request)

    def store() -> dict[str, Any]:
        try:
            team = budgets.parse_team_budget(space.id, space.name, table, account.name)
            with server.connection() as con:
                budgets.save_budget(con, team, create=True)
        except budgets.TeamBudgetError as error:
            status = 409 if str(error).startswith("name: workspace") else 422
            raise ApiError(status, str(error)) from None
        return team.to_json()

    made = await run_in_threadpool(store)
    await run_in_threadpool(evaluate_and_alert, server, space.id)
    return made


@router.patch("/v1/budgets/{name}")
async def edit_budget(
    name: str, request: Request, server: Server, space: AdminSpace, account: Admin
) -> dict[str, Any]:
    changes = await _table(request)

    def store() -> dict[str, Any]:
        try:
            with server.connection() as con:
                return budgets.edit_budget(con, space.id, name, changes, account.name).to_json()
        except LookupError:
            raise ApiError(404, f"workspace {space.name} has no budget {name!r}") from None
        except budgets.TeamBudgetError as error:
            raise ApiError(422, str(error)) from None

    edited = await run_in_threadpool(store)
    await run_in_threadpool(evaluate_and_alert, server, space.id)
    return edited


@router.delete("/v1/budgets/{name}")
def remove_budget(name: str, server: Server, space: AdminSpace, account: Admin) -> dict[str, Any]:
    with server.connection() as con:
        if not budgets.remove_budget(con, space.id, name):
            raise ApiError(404, f"workspace {space.name} has no budget {name!r}")
    return {"workspace": space.name, "removed": name}


@router.get("/v1/machine/budgets")
def machine_budgets(machine: Machine, server: Server) -> dict[str, Any]:
    now = time.time()
    found = evaluate_and_alert(server, machine.workspace_id)
    return {
        "workspace": machine.workspace,
        "server_time": now,
        "budgets": budgets.for_machine(found, machine.name, machine.machine_id, now),
    }
