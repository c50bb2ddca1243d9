"""The team server's HTTP API and pages (FastAPI over a psycopg connection pool).

Three kinds of caller: machines (a machine token: ingest, whoami, disconnect), admins (an admin
token as `Authorization: Bearer`, or the cookie the login page sets: rollups, export, machines,
approvals), and anyone (health, asking for a pairing code, polling with its secret). Each kind
of work has its router in routes/; this module builds the pool they share and assembles them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool

from halton_meter import __version__
from halton_meter.api.security import SECURITY_HEADERS
from halton_meter.dashboard import mount_dashboard
from halton_meter.teamserver.routes import budgets, ingest, pages, pairing, prices, reports
from halton_meter.teamserver.routes.deps import ApiError, TeamServer
from halton_meter.teamserver.schema import LATEST_VERSION, migrate
from halton_meter.teamserver.settings import ServerSettings, settings_from_environment


def create_app(settings: ServerSettings) -> FastAPI:
    pool: ConnectionPool[Any] = ConnectionPool(
        settings.dsn,
        min_size=1,
        max_size=settings.pool_size,
        open=False,
        name="halton-meter",
        kwargs={"autocommit": True},  # transactions are explicit (`with con.transaction()`)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=30)
        with pool.connection() as con:
            migrate(con)
        yield
        pool.close()

    app = FastAPI(title="Halton Meter team server", version=__version__, lifespan=lifespan)
    app.state.team_server = TeamServer(settings, pool)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.detail, **error.details}, status_code=error.status_code)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "schema": LATEST_VERSION}

    for router in (
        pairing.router,
        ingest.router,
        reports.router,
        prices.router,
        budgets.router,
        pages.router,
    ):
        app.include_router(router)
    # The local dashboard's own files, reading this server's rollups (dashboard/__init__.py).
    # The files hold no data; every figure they show needs an admin token or the login cookie.
    mount_dashboard(app, "/dashboard", "team", SECURITY_HEADERS)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process (`server run` set the settings)."""
    return create_app(settings_from_environment())
