"""`halton-meter cloud connect|status|whoami|sync|pause|resume|disconnect`: this machine and
a team server. Local reports never depend on any of it."""

from __future__ import annotations

import json
import sqlite3
import sys
from contextlib import closing

import click

from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.cloud import sync
from halton_meter.cloud.credentials import (
    Credentials,
    CredentialsError,
    credentials_path,
    load_credentials,
    remove_credentials,
)
from halton_meter.cloud.http import TransportError, request_json
from halton_meter.cloud.pairing import (
    PairingFailed,
    finish,
    normalise_server_url,
    request_code,
    wait_for_approval,
)
from halton_meter.ledger.db import connect as open_ledger


def _fail(message: str) -> None:
    click.echo(f"halton-meter: {message}", err=True)
    sys.exit(EXIT_FAILURE)


def _credentials(ctx: Context) -> Credentials:
    try:
        credentials = load_credentials(ctx.paths)
    except CredentialsError as error:
        _fail(str(error))
        raise AssertionError from None  # pragma: no cover
    if credentials is None:
        _fail("not connected to a team server; run `halton-meter cloud connect --server URL`")
        raise AssertionError  # pragma: no cover
    return credentials


@click.group()
def cloud() -> None:
    """Pair this machine with a team server and sync its ledger metadata."""


@cloud.command()
@click.option(
    "--server", "server_url", required=True, help="The team server, e.g. https://meter.example.com"
)
@click.option(
    "--workspace",
    help="Workspace to join (default: the one this machine is paired in on that server, else "
    "'default').",
)
@click.option(
    "--name",
    help="This machine's name on the server (default: its name there, else the host name).",
)
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for approval.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def connect(
    ctx: Context,
    server_url: str,
    workspace: str | None,
    name: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Ask for a pairing code, wait until an admin approves it, keep the token (0600).

    Pairing again with the same server (after a revoke) keeps the machine in its workspace
    and under its name unless told otherwise."""
    try:
        url = normalise_server_url(server_url)
        workspace, name = _remembered(ctx, url, workspace, name)
        with closing(connect_ledger(ctx)) as con:
            pending = request_code(url, con, workspace, name)
            click.echo(f"Pairing code: {pending['code']}", err=as_json)
            click.echo(
                f"Approve it at {pending['approve_url']}\n"
                f"  or on the server: halton-meter server approve {pending['code']}\n"
                f"Waiting (the code expires at {pending['expires_at']})...",
                err=as_json,
            )
            answer = wait_for_approval(
                url, pending["code"], pending["poll_secret"], timeout=timeout
            )
            credentials = finish(ctx.paths, con, url, answer)
    except (PairingFailed, TransportError) as error:
        _fail(f"pairing failed: {error}")
        return
    result = {
        "server": credentials.server_url,
        "workspace": credentials.workspace,
        "machine": credentials.machine_name,
        "machine_id": credentials.machine_id,
        "user": credentials.user,
        "credentials": str(credentials_path(ctx.paths)),
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(
            f"Paired: {credentials.machine_name} in workspace {credentials.workspace} on "
            f"{credentials.server_url}. The daemon syncs in the background."
        )


def _remembered(
    ctx: Context, url: str, workspace: str | None, name: str | None
) -> tuple[str, str | None]:
    """The workspace and name to ask for: as given, else those of this machine's pairing with
    the same server (kept in its credentials, revoked or not), else 'default' and the host's."""
    try:
        previous = load_credentials(ctx.paths)
    except CredentialsError:
        previous = None
    if previous is not None and previous.server_url == url:
        return workspace or previous.workspace, name or previous.machine_name
    return workspace or "default", name


def connect_ledger(ctx: Context) -> sqlite3.Connection:
    return open_ledger(ctx.paths.ledger)


@cloud.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """ACTIVE, DEGRADED, PAUSED or NOT-CONFIGURED, with the last sync and what is unsent."""
    from halton_meter.budgets.team import read_team_state

    with closing(connect_ledger(ctx)) as con:
        found = sync.status(ctx.paths, con, ctx.config.cloud)
    # The team server's budgets this machine applies (budgets/team.py), as the daemon wrote them.
    found["team_budgets"] = read_team_state(ctx.paths.home) if found["server"] else []
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(f"Cloud sync: {found['state']}")
    if found["server"]:
        click.echo(f"  server     {found['server']} (workspace {found['workspace']})")
        click.echo(f"  machine    {found['machine']} ({found['user']})")
    click.echo(f"  last sync  {found['last_sync_at'] or 'never'}")
    click.echo(f"  unsynced   {found['unsynced_rows']:,} rows")
    if found["pause_reason"]:
        click.echo(f"  paused     {found['pause_reason']}")
    if found["last_error"]:
        click.echo(f"  last error {found['last_error']}")
    click.echo(
        f"  privacy    {found['privacy']}{', hashed projects' if found['hash_projects'] else ''}"
    )
    for team in found["team_budgets"]:
        click.echo(
            f"  budget     {team['name']} (team): ${team['spent_usd']:,.2f} of "
            f"${team['amount_usd']:,.2f}, {team['state']} - {team['action']}, {team['scope_text']}"
        )


@cloud.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_context
def whoami(ctx: Context, as_json: bool) -> None:
    """Who the server says this machine is (checks the token)."""
    credentials = _credentials(ctx)
    try:
        code, answer = request_json(
            "GET", f"{credentials.server_url}/v1/whoami", token=credentials.token, timeout=15
        )
    except TransportError as error:
        _fail(f"server unreachable: {error}")
        return
    if code != 200:
        _fail(f"HTTP {code}: {answer.get('error')}")
    answer["server"] = credentials.server_url
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        click.echo(
            f"{answer['machine_name']} ({answer['user']}) in workspace {answer['workspace']} "
            f"on {credentials.server_url}"
        )


@cloud.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_context
def sync_now(ctx: Context, as_json: bool) -> None:
    """One drain pass now: send every unsynced row, in order (exit 1 if it stops short)."""
    credentials = _credentials(ctx)
    with closing(connect_ledger(ctx)) as con:
        result = sync.drain(con, credentials, ctx.config.cloud)
        left = sync.unsynced_rows(con, sync.read_state(con))
    payload = {
        "state": result.state,
        "rows_sent": result.rows_sent,
        "rows_stored": result.rows_stored,
        "rows_resent": result.rows_resent,
        "unsynced_rows": left,
        "error": result.error,
    }
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(
            f"{result.state}: sent {result.rows_sent} rows ({result.rows_stored} new on the "
            f"server), {left} unsynced" + (f"; {result.error}" if result.error else "")
        )
    if result.state != sync.ACTIVE:
        sys.exit(EXIT_FAILURE)


@cloud.command("pause")
@pass_context
def pause_cmd(ctx: Context) -> None:
    """Stop sending until `cloud resume` (rows keep queuing in the local ledger)."""
    with closing(connect_ledger(ctx)) as con:
        sync.pause(con, "paused by the user")
    click.echo("Cloud sync paused; rows keep queuing locally.")


@cloud.command("resume")
@pass_context
def resume_cmd(ctx: Context) -> None:
    """Resume after `cloud pause`, or after fixing what paused it (401/403)."""
    with closing(connect_ledger(ctx)) as con:
        sync.resume(con)
    click.echo("Cloud sync resumed.")


@cloud.command()
@pass_context
def disconnect(ctx: Context) -> None:
    """Revoke this machine at the server and remove the credentials; local reports stay."""
    credentials = _credentials(ctx)
    try:
        code, answer = request_json(
            "POST",
            f"{credentials.server_url}/v1/machine/disconnect",
            {},
            token=credentials.token,
            timeout=15,
        )
        revoked = code == 200
        note = "" if revoked else f" (server said HTTP {code}: {answer.get('error')})"
    except TransportError as error:
        revoked, note = False, f" (server unreachable: {error}; revoke it there too)"
    remove_credentials(ctx.paths)
    click.echo(
        ("Revoked at the server and removed" if revoked else "Removed")
        + f" {credentials_path(ctx.paths)}{note}."
    )


COMMANDS = [cloud]
