"""Ingest over HTTP: a paired machine sends a batch of its ledger rows; the batch is checked
whole (size, shape, the token's workspace and machine) before any row is stored, and stored
once however often it is resent (teamserver/ingest.py)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from halton_meter.teamserver.ingest import (
    Batch,
    MachinePrices,
    replace_machine_prices,
    store_batch,
)
from halton_meter.teamserver.pairing import MachineIdentity
from halton_meter.teamserver.routes.budgets import evaluate_and_alert
from halton_meter.teamserver.routes.deps import ApiError, Machine, Server, TeamServer, json_body

BYTES_PER_ROW = 4096  # a generous ceiling for one row's JSON
MAX_PROBLEMS = 20  # validation problems named in a refusal

router = APIRouter()
Shape = TypeVar("Shape", bound=BaseModel)


async def _checked(  # noqa: UP047 (tools here still parse with Python 3.11)
    request: Request, machine: MachineIdentity, server: TeamServer, model: type[Shape]
) -> Shape:
    """The body, whole: size, shape, and the token's own workspace and machine."""
    limit = server.settings.max_batch_rows
    body = await json_body(request, limit * BYTES_PER_ROW)
    if isinstance(body, dict) and isinstance(body.get("rows"), list):
        if len(body["rows"]) > limit:
            raise ApiError(413, f"batch of {len(body['rows'])} rows; at most {limit} a batch")
        if not body["rows"]:
            raise ApiError(422, "a batch needs at least one row")
    try:
        batch = model.model_validate(body)
    except ValidationError as error:
        problems = [
            {
                "where": ".".join(str(part) for part in problem["loc"]),
                "problem": problem["msg"],
            }
            for problem in error.errors()[:MAX_PROBLEMS]
        ]
        raise ApiError(422, "invalid batch; nothing was stored", problems=problems) from None
    if batch.workspace_id != machine.workspace_id:  # type: ignore[attr-defined]
        raise ApiError(403, "this token belongs to another workspace; nothing was stored")
    if batch.machine_id != machine.machine_id:  # type: ignore[attr-defined]
        raise ApiError(403, "this token belongs to another machine; nothing was stored")
    return batch


@router.post("/v1/requests/batch")
async def ingest(
    request: Request, machine: Machine, server: Server, after: BackgroundTasks
) -> dict[str, Any]:
    batch = await _checked(request, machine, server, Batch)

    def store() -> int:
        with server.connection() as con:
            overrides = server.prices.get(con, machine.workspace_id)
            return store_batch(
                con,
                machine.workspace_id,
                machine.machine_id,
                batch.rows,
                server.partitions,
                overrides,
            )

    stored = await run_in_threadpool(store)
    if stored:  # the team's budgets on the new totals, after the answer (their alerts fire)
        after.add_task(evaluate_and_alert, server, machine.workspace_id)
    return {
        "received": len(batch.rows),
        "stored": stored,
        "duplicates": len(batch.rows) - stored,
    }


@router.post("/v1/requests/machine-prices")
async def machine_prices(request: Request, machine: Machine, server: Server) -> dict[str, Any]:
    """Rows the machine re-priced after sending them: their new price replaces the server's
    copy of the machine's figure (by id; the server's own price is unchanged)."""
    batch = await _checked(request, machine, server, MachinePrices)

    def replace() -> int:
        with server.connection() as con:
            return replace_machine_prices(con, machine.workspace_id, machine.machine_id, batch.rows)

    updated = await run_in_threadpool(replace)
    return {"received": len(batch.rows), "updated": updated}
