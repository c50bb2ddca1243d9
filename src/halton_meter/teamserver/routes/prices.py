"""The team's own prices over HTTP: any account of a workspace reads them; only an admin sets
them (the body is the TOML of `[[pricing.overrides]]` tables, as in a machine's config.toml)
or re-prices stored rows: `POST /v1/reprice` answers the change per model and writes nothing
unless `apply=true` (look first, then confirm, as `halton-meter reprice` does)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from halton_meter.teamserver import prices, reprice
from halton_meter.teamserver.routes.deps import (
    Admin,
    AdminSpace,
    ApiError,
    ReadSpace,
    Server,
    since_moment,
)

MAX_PRICES_BYTES = 256 * 1024

router = APIRouter()


@router.get("/v1/prices")
def get_prices(server: Server, space: ReadSpace) -> dict[str, Any]:
    with server.connection() as con:
        return {"workspace": space.name, **prices.prices_info(con, space.id)}


@router.put("/v1/prices")
async def put_prices(
    request: Request, server: Server, space: AdminSpace, account: Admin
) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_PRICES_BYTES:
        raise ApiError(413, f"at most {MAX_PRICES_BYTES} bytes of prices")

    def store() -> int:
        with server.connection() as con:
            try:
                return prices.set_prices(
                    con, space.id, body.decode("utf-8", "replace"), account.name
                )
            except prices.PricesError as error:
                raise ApiError(422, str(error)) from None

    entries = await run_in_threadpool(store)
    return {
        "workspace": space.name,
        "entries": entries,
        "note": "new rows are priced with these; POST /v1/reprice re-prices stored rows",
    }


@router.post("/v1/reprice")
def post_reprice(
    server: Server,
    space: AdminSpace,
    since: str = "all",
    project: str | None = None,
    apply: bool = False,
) -> dict[str, Any]:
    start = since_moment(since)
    with server.connection() as con:
        overrides = prices.load_prices(con, space.id)
        plan = reprice.plan_reprice(con, space.id, overrides, start, project)
        answer = {"workspace": space.name, **reprice.plan_json(plan, dry_run=not apply)}
        if apply:
            answer["rows_written"] = reprice.apply_reprice(con, space.id, plan)
    return answer
