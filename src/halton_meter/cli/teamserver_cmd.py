"""`halton-meter server run|migrate|approve|pending|machines|revoke|admin-token`: the team
server (needs the `server` extra). Everything but `run` talks to PostgreSQL directly, so an
admin on the server's host needs no token."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from halton_meter.cli import EXIT_CONFIG, EXIT_FAILURE

_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Server config file (TOML, a [server] table); or HALTON_METER_SERVER_CONFIG.",
)


def _settings(config_file: Path | None, **overrides: Any) -> Any:
    try:
        from halton_meter.teamserver.settings import ServerConfigError, load_settings
    except ImportError:  # pragma: no cover
        _missing_extra()
    try:
        return load_settings(config_file, **overrides)
    except ServerConfigError as error:
        click.echo(f"halton-meter: {error}", err=True)
        sys.exit(EXIT_CONFIG)


def _missing_extra() -> None:
    click.echo(
        "halton-meter: the team server needs its extras: pip install '.[server]' in this "
        "project's checkout",
        err=True,
    )
    sys.exit(EXIT_FAILURE)


@contextmanager
def _database(config_file: Path | None) -> Iterator[Any]:
    try:
        import psycopg

        from halton_meter.teamserver.schema import migrate
    except ImportError:
        _missing_extra()
        raise
    settings = _settings(config_file)
    try:
        with psycopg.connect(settings.dsn, autocommit=True) as con:
            migrate(con)
            yield con
    except psycopg.OperationalError as error:
        click.echo(f"halton-meter: cannot reach the database: {error}", err=True)
        sys.exit(EXIT_FAILURE)


@click.group()
def server() -> None:
    """The team server: machines pair with it and sync; it shows team rollups."""


@server.command("run")
@_config_option
@click.option("--host", help="Bind address (default 127.0.0.1; put a TLS proxy in front).")
@click.option("--port", type=int, help="Port (default 8780).")
@click.option("--workers", type=int, help="Server processes (default 2).")
def run(config_file: Path | None, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API and pages until Ctrl-C/SIGTERM."""
    settings = _settings(config_file, host=host, port=port, workers=workers)
    try:
        import uvicorn

        from halton_meter.teamserver.settings import settings_to_environment
    except ImportError:
        _missing_extra()
        return
    click.echo(
        f"Halton Meter team server on http://{settings.host}:{settings.port} "
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''})",
        err=True,
    )
    settings_to_environment(settings)
    uvicorn.run(
        "halton_meter.teamserver.app:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
    )


@server.command()
@_config_option
def migrate(config_file: Path | None) -> None:
    """Create or update the database schema (run and every command do it too)."""
    with _database(config_file):
        pass
    click.echo("Database schema is up to date.")


@server.command()
@click.argument("code")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def approve(code: str, config_file: Path | None, as_json: bool) -> None:
    """Approve a machine's pairing code (shown by `cloud connect`)."""
    from halton_meter.teamserver import pairing

    with _database(config_file) as con:
        try:
            done = pairing.approve(con, code)
        except pairing.PairingError as error:
            click.echo(f"halton-meter: {error}", err=True)
            sys.exit(EXIT_FAILURE)
    if as_json:
        click.echo(json.dumps(done, indent=2))
    else:
        click.echo(f"Approved {done['machine_name']} ({done['user']}), code {done['code']}.")


@server.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pending(config_file: Path | None, as_json: bool) -> None:
    """Pairing codes waiting for approval."""
    from halton_meter.teamserver import pairing

    with _database(config_file) as con:
        found = pairing.pending_pairings(con)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    for item in found:
        click.echo(
            f"{item['code']}  {item['machine_name']} ({item['user_name']})  {item['workspace']}"
        )
    if not found:
        click.echo("No pairing code is waiting.")


@server.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def machines(config_file: Path | None, as_json: bool) -> None:
    """Paired machines, their status and request counts."""
    from halton_meter.teamserver import pairing

    with _database(config_file) as con:
        found = pairing.list_machines(con)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for m in found:
        click.echo(
            f"{m['machine_id']}  {m['name']} ({m['user']})  {m['workspace']}  {m['status']}  "
            f"{m['requests']:,} requests"
        )


@server.command()
@click.argument("machine")
@_config_option
def revoke(machine: str, config_file: Path | None) -> None:
    """Revoke a machine (by id or name): its token stops working at once; its rows stay."""
    from halton_meter.teamserver import pairing

    with _database(config_file) as con:
        try:
            done = pairing.revoke(con, machine)
        except pairing.PairingError as error:
            click.echo(f"halton-meter: {error}", err=True)
            sys.exit(EXIT_FAILURE)
    click.echo(f"Revoked {done['machine_name']} ({done['machine_id']}).")


@server.command("admin-token")
@_config_option
@click.option("--label", default="admin", show_default=True, help="A note to tell tokens apart.")
def admin_token(config_file: Path | None, label: str) -> None:
    """Create an admin token for the web pages and the rollup API (shown once, stored hashed)."""
    from halton_meter.teamserver import pairing

    with _database(config_file) as con:
        token = pairing.create_admin_token(con, label)
    click.echo(token)


COMMANDS = [server]
