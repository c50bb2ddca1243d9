"""The FastAPI application: contract endpoints, /metrics, reprice, and the dashboard's files.

Every endpoint that touches SQLite is a plain `def`, so FastAPI runs it in its thread pool and
the API's event loop (itself on its own thread, see thread.py) never waits on the disk.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from halton_meter import __version__
from halton_meter.api import metrics, views
from halton_meter.api.contract import csv_attachment
from halton_meter.api.security import Guard
from halton_meter.bodies.store import BodyStore
from halton_meter.bodies.view import call_view
from halton_meter.budgets.spent import project_forecasts
from halton_meter.dashboard import mount_dashboard
from halton_meter.ledger.db import connect
from halton_meter.ledger.queries import Window
from halton_meter.ledger.quota import quota_view, view_json, warnings
from halton_meter.money import minor_units, usd_string
from halton_meter.reconcile import run as reconcile_run
from halton_meter.timewindow import TimeParseError, ledger_timestamp, parse_moment

MAX_PAGE = 500


@dataclass(slots=True)
class ApiSettings:
    ledger: Path
    port: int
    token: str
    cors_origins: tuple[str, ...] = ()
    price_overrides: Sequence[Any] = ()
    writer: metrics.WriterLike | None = None
    lag: metrics.LedgerLag | None = None
    edge_status: Callable[[], dict[str, Any] | None] = field(default=lambda: None)
    started_at: float = field(default_factory=time.time)
    behind_edge: bool = False
    quota_warn_at: float = 0.8  # [quota] warn_at
    # The daemon's budgets, live (budgets/tracker.py); None: read from the ledger instead.
    budgets: Callable[[], dict[str, Any]] | None = None


class _Readers:
    """One read connection per worker thread: opened once, never migrates (the daemon did)."""

    def __init__(self, ledger: Path) -> None:
        self._ledger = ledger
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self._ledger, timeout=10, isolation_level=None)
            con.execute("PRAGMA busy_timeout=10000")
            self._local.con = con
        return con


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


class ErrorBody(BaseModel):
    """What a refused request gets back."""

    error: str | None = None
    detail: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "Not found"}}
BAD_PARAMETER: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A parameter the API cannot read"}
}
# A slug no project can have (a newline, …) matches no route.
NO_SUCH_PATH: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such project path"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or wrong X-Halton-Token"},
    403: {"model": ErrorBody, "description": "Cross-origin request or foreign Host"},
}


class RepriceRequest(BaseModel):
    since: str = Field(description="Rows since 30m, 1h, 7d, a date or an ISO timestamp.")
    project: str | None = Field(default=None, description="Only this project.")
    dry_run: bool = Field(default=True, description="Only show what would change.")


def _moment(text: str | None, name: str) -> str | None:
    if text is None or text == "":
        return None
    try:
        return ledger_timestamp(parse_moment(text))
    except TimeParseError as error:
        raise HTTPException(400, f"{name}: {error}") from None


SinceQuery = Annotated[
    str | None,
    Query(description="Start: a date (2026-11-01), 30d, 12h or an ISO timestamp. Default: all."),
]
UntilQuery = Annotated[str | None, Query(description="End (exclusive), same forms as since.")]
SelfTestQuery = Annotated[
    bool,
    Query(
        description="Also count the self-test's rows (`init`'s free call, provider "
        "`halton-meter`), left out by default."
    ),
]


def create_app(settings: ApiSettings) -> Guard:
    app = FastAPI(
        # Swagger UI and ReDoc load from a CDN: the dashboard needs no network, so they are off.
        docs_url=None,
        redoc_url=None,
        title="Halton Meter",
        version=__version__,
        description="Loopback API of the local LLM spend meter. Money: integer millicents "
        "(`*_minor_units`, 1 USD = 100,000) plus exact decimal strings (`*_usd`).",
    )
    readers = _Readers(settings.ledger)

    @app.exception_handler(views.BadRequest)
    def bad_request(_: Any, error: views.BadRequest) -> JSONResponse:
        return JSONResponse({"error": "bad_request", "detail": str(error)}, status_code=400)

    @app.get("/health", tags=["daemon"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/v1/daemon/status", tags=["daemon"])
    def daemon_status() -> dict[str, Any]:
        answer = views.daemon_status(readers.get(), datetime.now(UTC))
        answer.update(
            version=__version__,
            started_at=settings.started_at,
            behind_edge=settings.behind_edge,
            ledger_pending_rows=settings.writer.pending() if settings.writer else None,
            # Is the ledger being written; if not, why and how many rows wait or were lost
            # (what `status` and `doctor` report on a full disk).
            ledger_writer=settings.writer.health() if settings.writer else None,
        )
        return answer

    @app.get("/v1/stats", tags=["stats"], responses=BAD_PARAMETER)
    def stats(
        since: SinceQuery = None, until: UntilQuery = None, include_self_test: SelfTestQuery = False
    ) -> dict[str, Any]:
        return views.stats(
            readers.get(),
            _moment(since, "since"),
            _moment(until, "until"),
            project=None,
            include_self_test=include_self_test,
        )

    @app.get("/v1/unmetered", tags=["stats"], responses=BAD_PARAMETER)
    def unmetered(since: SinceQuery = None, until: UntilQuery = None) -> dict[str, Any]:
        """LLM traffic the edge passed through unmetered (the daemon was away) in [since,
        until): per host, and each connection. `complete` is false when there was any."""
        return views.unmetered(readers.get(), _moment(since, "since"), _moment(until, "until"))

    @app.get("/v1/reconcile", tags=["stats"])
    def reconciled() -> dict[str, Any]:
        """The last comparison with the providers' own usage and cost reports (`halton-meter
        reconcile` or `[reconcile]`): per provider the verdicts, the cost difference, and a
        line for display; `checked_at` null when never run."""
        state = reconcile_run.load(settings.ledger.parent) or {}
        return {
            "checked_at": state.get("checked_at"),
            "providers": state.get("providers") or {},
            "line": reconcile_run.status_line(state),
        }

    @app.get("/v1/projects", tags=["projects"])
    def projects(include_self_test: SelfTestQuery = False) -> list[dict[str, Any]]:
        return views.projects(readers.get(), include_self_test=include_self_test)

    @app.get(
        "/v1/projects/{slug:path}/stats",
        tags=["projects"],
        responses={**BAD_PARAMETER, **NO_SUCH_PATH},
    )
    def project_stats(
        slug: str,
        since: SinceQuery = None,
        until: UntilQuery = None,
        include_self_test: SelfTestQuery = False,
    ) -> dict[str, Any]:
        return views.stats(
            readers.get(),
            _moment(since, "since"),
            _moment(until, "until"),
            project=slug,
            include_self_test=include_self_test,
        )

    @app.get(
        "/v1/projects/{slug:path}/requests",
        tags=["projects"],
        responses={**BAD_PARAMETER, **NO_SUCH_PATH},
    )
    def project_requests(
        slug: str,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        provider: str | None = None,
        include_self_test: SelfTestQuery = False,
    ) -> dict[str, Any]:
        return views.request_page(
            readers.get(), slug, limit, cursor, provider, include_self_test=include_self_test
        )

    @app.get(
        "/v1/projects/{slug:path}/requests.csv",
        tags=["projects"],
        response_class=CsvResponse,
        # The error is JSON even here (`model=` would document it as text/csv).
        responses={
            404: {
                "description": "No such project path",
                "content": {"application/json": {"schema": ErrorBody.model_json_schema()}},
            }
        },
    )
    def project_requests_csv(
        slug: str, provider: str | None = None, include_self_test: SelfTestQuery = False
    ) -> CsvResponse:
        con = sqlite3.connect(settings.ledger, timeout=10, isolation_level=None)

        def lines() -> Iterator[str]:
            try:
                yield from views.requests_csv(con, slug, provider, include_self_test)
            finally:
                con.close()

        return CsvResponse(
            lines(), media_type="text/csv; charset=utf-8", headers=csv_attachment(slug)
        )

    @app.get(
        "/v1/projects/{slug:path}",
        tags=["projects"],
        responses={404: {"model": ErrorBody, "description": "No calls for that project"}},
    )
    def project(slug: str, include_self_test: SelfTestQuery = False) -> dict[str, Any]:
        found = views.projects(readers.get(), only=slug, include_self_test=include_self_test)
        if not found:
            raise HTTPException(404, f"no requests recorded for project {slug!r}")
        return found[0]

    bodies = BodyStore(settings.ledger.parent / "bodies.sqlite")

    @app.get("/v1/requests/{call_id}", tags=["requests"], responses=NOT_FOUND)
    def one_request(call_id: str) -> dict[str, Any]:
        """One call's numbers and whether its body was captured (the body itself is not here)."""
        found = call_view(readers.get(), bodies, call_id, with_body=False)
        if found is None:
            raise HTTPException(404, f"no call {call_id!r} in the ledger")
        return found

    @app.get("/v1/requests/{call_id}/body", tags=["requests"], responses={**NOT_FOUND, **REFUSED})
    def request_body(call_id: str) -> dict[str, Any]:
        """The captured conversation (opt-in projects only). Sensitive: needs the token and is
        never served to another origin (api/security.py)."""
        found = call_view(readers.get(), bodies, call_id, with_body=True)
        if found is None or "body" not in found:
            raise HTTPException(404, f"no captured body for call {call_id!r}")
        return found

    @app.get("/v1/budgets", tags=["budgets"])
    def budgets() -> dict[str, Any]:
        """Each budget's window, spend, thresholds reached, blocking state and forecast, and
        any alert that could not be delivered (docs/api.md)."""
        found = (
            settings.budgets()
            if settings.budgets is not None
            else {"known": False, "budgets": [], "alert_failures": []}
        )
        return {**found, "projects": project_forecasts(readers.get(), time.time())}

    @app.get("/v1/quota", tags=["quota"])
    def quota() -> dict[str, Any]:
        """Quota windows per account: utilisation, reset, trend, shares (docs/api.md)."""
        accounts = quota_view(readers.get(), warn_at=settings.quota_warn_at)
        return {
            "warn_at": settings.quota_warn_at,
            "accounts": [view_json(view) for view in accounts],
            "warnings": [
                {"account": account.account, "window": window.name}
                for account, window in warnings(accounts)
            ],
        }

    @app.get("/metrics", tags=["daemon"], response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        text = metrics.render(
            readers.get(),
            settings.writer,
            settings.lag,
            settings.edge_status,
            settings.quota_warn_at,
            reconcile_run.load(settings.ledger.parent),
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/reprice", tags=["pricing"], responses={**BAD_PARAMETER, **REFUSED})
    def reprice(request: Annotated[RepriceRequest, Body()]) -> dict[str, Any]:
        """Recompute past costs with today's catalogue and overrides (needs the token)."""
        from halton_meter.reprice import apply_reprice, plan_reprice  # loads the catalogue

        since = _moment(request.since, "since")
        window = Window(since=since, project=request.project)
        con = connect(settings.ledger)
        try:
            plan = plan_reprice(con, window, settings.price_overrides)
            written = 0 if request.dry_run else apply_reprice(con, plan)
        finally:
            con.close()
        return {
            "since": since,
            "project": request.project,
            "dry_run": request.dry_run,
            "rows_changed": len(plan.updates),
            "rows_written": written,
            "models": [
                {
                    "provider": change.provider,
                    "model": change.model,
                    "rows": change.rows,
                    "changed": change.changed,
                    "old_cost_usd_minor_units": minor_units(change.old_nanousd),
                    "old_cost_usd": usd_string(change.old_nanousd),
                    "new_cost_usd_minor_units": minor_units(change.new_nanousd),
                    "new_cost_usd": usd_string(change.new_nanousd),
                    "old_unpriced": change.old_unpriced,
                    "new_unpriced": change.new_unpriced,
                    "new_price_sources": sorted(change.new_sources),
                }
                for change in sorted(plan.changes.values(), key=lambda c: (c.provider, c.model))
            ],
        }

    mount_dashboard(app, "", "local")
    return Guard(app, port=settings.port, token=settings.token, cors_origins=settings.cors_origins)
