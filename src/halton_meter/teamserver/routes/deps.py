"""What every router of the team server shares: the connection pool, the error answer, who is
calling (a machine token; an account's token or cookie, a viewer or an admin, of one workspace
or all) and the parsing of common parameters.

The routers reach the pool through `request.app.state` (FastAPI's `Depends`), so they are plain
module-level `APIRouter`s and app.py only has to build one `TeamServer` and include them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

import psycopg
from fastapi import Depends, HTTPException, Request
from psycopg_pool import ConnectionPool

from halton_meter.teamserver import accounts, pairing
from halton_meter.teamserver.ingest import PartitionCache
from halton_meter.teamserver.prices import PriceCache
from halton_meter.teamserver.settings import ServerSettings
from halton_meter.timewindow import TimeParseError, parse_moment

ADMIN_COOKIE = "halton_admin"
DASHBOARD_TOKEN_HEADER = "x-halton-token"  # what the dashboard's script sends
MAX_FORM_BYTES = 16384


class ApiError(HTTPException):
    """An error answered as {"error": message, ...details} (app.py installs the handler)."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(status, message)
        self.details = details


@dataclass
class TeamServer:
    """One per worker process: its settings, its PostgreSQL pool, the partitions it has seen,
    the workspaces' prices it has parsed."""

    settings: ServerSettings
    pool: ConnectionPool[Any]
    partitions: PartitionCache = field(default_factory=PartitionCache)
    prices: PriceCache = field(default_factory=PriceCache)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as con:
            yield con

    def workspace_id(self, name: str) -> str:
        with self.connection() as con:
            row = con.execute("SELECT id FROM workspaces WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise ApiError(404, f"no workspace {name!r}")
        return str(row[0])


def team_server(request: Request) -> TeamServer:
    server: TeamServer = request.app.state.team_server
    return server


Server = Annotated[TeamServer, Depends(team_server)]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def machine_of(request: Request, server: Server) -> pairing.MachineIdentity:
    """The calling machine, from its bearer token; 401/403 unless it is active."""
    token = bearer(request)
    if token is None:
        raise ApiError(401, "missing machine token (Authorization: Bearer ...)")
    with server.connection() as con:
        machine = pairing.machine_for_token(con, token)
    if machine is None:
        raise ApiError(401, "unknown machine token; pair with `halton-meter cloud connect`")
    if machine.status == "revoked":
        raise ApiError(401, "this machine's token was revoked; pair again to resume")
    if machine.status != "active":
        raise ApiError(403, f"machine is {machine.status}")
    return machine


Machine = Annotated[pairing.MachineIdentity, Depends(machine_of)]


def account_of(request: Request, server: Server) -> accounts.Account | None:
    """The calling account: its token as a bearer, as the dashboard's `X-Halton-Token`, or
    the login cookie. (Headers cannot be forged by another site's page; the cookie is
    SameSite=Strict.)"""
    token = (
        bearer(request)
        or request.headers.get(DASHBOARD_TOKEN_HEADER, "").strip()
        or request.cookies.get(ADMIN_COOKIE)
    )
    if not token:
        return None
    with server.connection() as con:
        return accounts.account_for_token(con, token)


CallerAccount = Annotated[accounts.Account | None, Depends(account_of)]


def require_reader(account: CallerAccount) -> accounts.Account:
    """A viewer or an admin."""
    if account is None:
        raise ApiError(401, "access token required (Authorization: Bearer hmv_/hma_..., or log in)")
    return account


def require_admin(account: CallerAccount) -> accounts.Account:
    """An admin: approving, revoking, accounts and prices."""
    found = require_reader(account)
    if not found.is_admin:
        raise ApiError(403, f"{found.name} is a viewer; this needs an admin account")
    return found


Reader = Annotated[accounts.Account, Depends(require_reader)]
Admin = Annotated[accounts.Account, Depends(require_admin)]


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str


def _workspace(server: TeamServer, account: accounts.Account, name: str | None) -> Workspace:
    """`?workspace=`, by default the account's own (else `default`); another workspace than
    the account's is refused (403)."""
    chosen = name or account.workspace or "default"
    found = Workspace(server.workspace_id(chosen), chosen)
    if not account.reaches(found.id):
        raise ApiError(403, f"{account.name} has no access to workspace {chosen!r}")
    return found


def read_workspace(account: Reader, server: Server, workspace: str | None = None) -> Workspace:
    return _workspace(server, account, workspace)


def admin_workspace(account: Admin, server: Server, workspace: str | None = None) -> Workspace:
    return _workspace(server, account, workspace)


ReadSpace = Annotated[Workspace, Depends(read_workspace)]
AdminSpace = Annotated[Workspace, Depends(admin_workspace)]


def same_origin_form(request: Request) -> None:
    """Forms change state with a cookie: refuse them from another site's page."""
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise ApiError(403, "cross-origin form refused")


def since_day(text: str | None) -> date | None:
    """A `since`/`until` parameter as a whole UTC day; None for absent or "all"."""
    if text is None or text == "all":
        return None
    try:
        return parse_moment(text).date()
    except TimeParseError as error:
        raise ApiError(400, str(error)) from None


def since_moment(text: str | None) -> datetime | None:
    """A `since` as a moment (`30d`, a date, an ISO time); None for absent or "all"."""
    if text is None or text == "all":
        return None
    try:
        return parse_moment(text)
    except TimeParseError as error:
        raise ApiError(400, str(error)) from None


async def json_body(request: Request, max_bytes: int) -> Any:
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


async def form(request: Request) -> dict[str, str]:
    """A small urlencoded form (no multipart dependency for three fields)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
