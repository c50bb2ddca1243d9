"""`halton-meter server run|migrate|approve|pending|machines|revoke|admin-token|account-add|
accounts|account-remove|prices|reprice|budgets|budget-add|budget-edit|budget-rm`: the team
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
    """Create an admin account of every workspace; prints its token (shown once, stored
    hashed). The same as `account-add LABEL --role admin`."""
    from halton_meter.teamserver import accounts

    with _database(config_file) as con:
        token = accounts.create_admin_token(con, label)
    click.echo(token)


@server.command("account-add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "admin"]),
    default="viewer",
    show_default=True,
    help="viewer: reads figures and the dashboard; admin: also approves, revokes, prices.",
)
@click.option("--workspace", help="Only this workspace (default: every workspace).")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def account_add(
    name: str, role: str, workspace: str | None, config_file: Path | None, as_json: bool
) -> None:
    """Add an account; prints its token once (only its hash is stored)."""
    from halton_meter.teamserver import accounts

    with _database(config_file) as con:
        try:
            made, token = accounts.create_account(con, name, role, workspace)
        except accounts.AccountError as error:
            click.echo(f"halton-meter: {error}", err=True)
            sys.exit(EXIT_FAILURE)
    if as_json:
        payload = {"id": made.id, "name": made.name, "role": made.role, "workspace": workspace}
        click.echo(json.dumps({**payload, "token": token}, indent=2))
    else:
        click.echo(token)


@server.command("accounts")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def accounts_cmd(config_file: Path | None, as_json: bool) -> None:
    """Accounts (viewers and admins), their workspace and when they were made."""
    from halton_meter.teamserver import accounts

    with _database(config_file) as con:
        found = accounts.list_accounts(con)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for a in found:
        click.echo(
            f"{a['id']:>4}  {a['name']}  {a['role']}  {a['workspace'] or '(every workspace)'}  "
            f"{a['created_at'][:10]}"
        )
    if not found:
        click.echo("No account yet: `halton-meter server admin-token` makes the first.")


@server.command("account-remove")
@click.argument("account")
@_config_option
def account_remove(account: str, config_file: Path | None) -> None:
    """Remove an account (by id or name): its token stops working at once."""
    from halton_meter.teamserver import accounts

    with _database(config_file) as con:
        try:
            done = accounts.remove_account(con, account)
        except accounts.AccountError as error:
            click.echo(f"halton-meter: {error}", err=True)
            sys.exit(EXIT_FAILURE)
    click.echo(f"Removed account {done['name']} ({done['id']}).")


def _workspace_id(con: Any, name: str) -> str:
    row = con.execute("SELECT id FROM workspaces WHERE name = %s", (name,)).fetchone()
    if row is None:
        click.echo(f"halton-meter: no workspace {name!r}", err=True)
        sys.exit(EXIT_FAILURE)
    return str(row[0])


@server.command("prices")
@click.option("--workspace", default="default", show_default=True)
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prices_cmd(workspace: str, config_file: Path | None, as_json: bool) -> None:
    """The workspace's own prices ([[pricing.overrides]] TOML), as last set."""
    from halton_meter.teamserver import prices

    with _database(config_file) as con:
        found = prices.prices_info(con, _workspace_id(con, workspace))
    if as_json:
        click.echo(json.dumps({"workspace": workspace, **found}, indent=2))
    elif found["entries"]:
        click.echo(
            f"# {found['entries']} entries, set {found['updated_at']} by {found['updated_by']}"
        )
        click.echo(found["toml"].rstrip())
    else:
        click.echo(f"Workspace {workspace} has no prices of its own: the catalogue's apply.")


@server.command("prices-set")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--workspace", default="default", show_default=True)
@_config_option
def prices_set(file: Any, workspace: str, config_file: Path | None) -> None:
    """Set the workspace's prices from FILE (`-`: stdin): [[pricing.overrides]] tables, as in
    a machine's config.toml. An empty file removes them. New rows are priced with them;
    `server reprice` applies them to rows already stored."""
    from halton_meter.teamserver import prices

    text = file.read()
    with _database(config_file) as con:
        try:
            entries = prices.set_prices(con, _workspace_id(con, workspace), text, "server cli")
        except prices.PricesError as error:
            click.echo(f"halton-meter: {error}", err=True)
            sys.exit(EXIT_CONFIG)
    click.echo(
        f"Workspace {workspace}: {entries} price entries. New rows use them; "
        f"`halton-meter server reprice --workspace {workspace} --since …` re-prices stored rows."
    )


@server.command("reprice")
@click.option("--workspace", default="default", show_default=True)
@click.option("--since", default="all", show_default=True, help="30d, a date, or all.")
@click.option("--project", "-p", help="Only this project.")
@click.option("--dry-run", is_flag=True, help="Show the change per model; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the change as JSON.")
@click.option("--yes", is_flag=True, help="Apply without asking.")
@_config_option
def reprice_cmd(
    workspace: str,
    since: str,
    project: str | None,
    dry_run: bool,
    as_json: bool,
    yes: bool,
    config_file: Path | None,
) -> None:
    """Re-price the team's stored rows with today's catalogue and the workspace's prices.

    Shows the change per model first and asks; only the server's figure changes (each
    machine's own stays beside it)."""
    from rich.console import Console

    from halton_meter.cli.pricing_cmd import render_plan
    from halton_meter.teamserver import prices, reprice
    from halton_meter.timewindow import TimeParseError, parse_moment

    try:
        start = None if since == "all" else parse_moment(since)
    except TimeParseError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    console = Console(stderr=as_json)
    with _database(config_file) as con:
        space = _workspace_id(con, workspace)
        plan = reprice.plan_reprice(con, space, prices.load_prices(con, space), start, project)
        if as_json:
            click.echo(json.dumps(reprice.plan_json(plan, dry_run), indent=2))
        else:
            changes = sorted(plan.changes.values(), key=lambda c: (c.provider, c.model))
            render_plan(console, changes, len(plan.updates), plan.rows)
        if dry_run or not plan.updates:
            return
        if (
            not yes
            and not as_json
            and not click.confirm(f"Re-price {len(plan.updates):,} rows?", default=False)
        ):
            click.echo("Nothing changed.")
            return
        written = reprice.apply_reprice(con, space, plan)
    if not as_json:
        console.print(f"Re-priced {written:,} rows on the server; the machines' figures stay.")


def _budget_scope(function: Any) -> Any:
    for option in reversed(
        [
            click.option("--project", multiple=True, help="Project glob (repeat for several)."),
            click.option("--machine", multiple=True, help="Machine name or id glob (repeat)."),
            click.option("--provider", multiple=True, help="Provider glob."),
            click.option("--model", multiple=True, help="Model glob."),
            click.option("--webhook-url", help="Where its alerts are POSTed (else: the log)."),
            click.option("--webhook-format", type=click.Choice(["plain", "chat"])),
            click.option("--webhook-secret", help="HMAC-SHA256 key for X-Halton-Signature."),
        ]
    ):
        function = option(function)
    return function


def _print_budgets(found: list[Any], fired: list[dict[str, Any]], now: float) -> None:
    if not found:
        click.echo("No team budgets in this workspace.")
    for evaluation in found:
        view = evaluation.to_json(now)
        click.echo(
            f"{view['name']}: ${view['spent_usd']:,.2f} of ${view['amount_usd']:,.2f} "
            f"({view['percent']}%) {view['period']}, {view['scope_text']} - {view['action']}, "
            f"{view['state']} ({view['window_text']})"
        )
    for alert in fired:
        click.echo(
            f"  alert {alert['budget']} {alert['threshold']}% fired {alert['fired_at'][:19]} "
            f"via {alert['channel']}: {alert['state']}"
            + (f" ({alert['problem']})" if alert["problem"] else "")
        )


@server.command("budgets")
@click.option("--workspace", default="default", show_default=True)
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def budgets_cmd(workspace: str, config_file: Path | None, as_json: bool) -> None:
    """The workspace's team budgets on the team's totals now, and the alerts they fired."""
    import time

    from halton_meter.teamserver import budgets

    now = time.time()
    with _database(config_file) as con:
        space = _workspace_id(con, workspace)
        found = budgets.evaluate(con, space, now)
        budgets.AlertSender(_settings(config_file).dsn).send(found)
        fired = budgets.alerts_of(con, space)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "workspace": workspace,
                    "budgets": [evaluation.to_json(now) for evaluation in found],
                    "alerts": fired,
                },
                indent=2,
            )
        )
    else:
        _print_budgets(found, fired, now)


def _team_table(
    amount: float | None, period: str | None, warn: str | None, action: str | None,
    timezone: str | None, project: tuple[str, ...], machine: tuple[str, ...],
    provider: tuple[str, ...], model: tuple[str, ...], webhook_url: str | None,
    webhook_format: str | None, webhook_secret: str | None,
) -> dict[str, Any]:  # fmt: skip
    from halton_meter.cli.budget_cmd import _globs, _period, _thresholds

    table: dict[str, Any] = {
        "amount_usd": amount,
        "thresholds": _thresholds(warn),
        "action": action,
        "timezone": timezone,
        "project": _globs(project),
        "machine": _globs(machine),
        "provider": _globs(provider),
        "model": _globs(model),
        "webhook_url": webhook_url,
        "webhook_format": webhook_format,
        "webhook_secret": webhook_secret,
    }
    if period is not None:
        table["period"], table["days"] = _period(period)
    return {key: value for key, value in table.items() if value is not None}


@server.command("budget-add")
@click.argument("name")
@click.option("--workspace", default="default", show_default=True)
@click.option("--amount", type=float, required=True, help="Limit in USD of API billing.")
@click.option("--period", default="month", show_default=True, help="day, week, month, 7d…")
@click.option("--warn", "warn", help="Thresholds in percent, e.g. 50,80,100 (the default).")
@click.option("--block", is_flag=True, help="Every covered machine refuses calls once over 100%.")
@click.option("--timezone", help="IANA zone for period edges (default: UTC).")
@_budget_scope
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def budget_add(name: str, workspace: str, amount: float, period: str, warn: str | None,
               block: bool, timezone: str | None, project: tuple[str, ...],
               machine: tuple[str, ...], provider: tuple[str, ...], model: tuple[str, ...],
               webhook_url: str | None, webhook_format: str | None, webhook_secret: str | None,
               config_file: Path | None, as_json: bool) -> None:  # fmt: skip
    """Add a team budget, e.g. `server budget-add acme --amount 500 --project acme --block`:
    evaluated on the team's totals; with --block every machine it covers refuses calls."""
    from halton_meter.teamserver import budgets

    table = {"name": name, **_team_table(
        amount, period, warn, "block" if block else None, timezone, project, machine, provider,
        model, webhook_url, webhook_format, webhook_secret)}  # fmt: skip
    with _database(config_file) as con:
        space = _workspace_id(con, workspace)
        try:
            team = budgets.parse_team_budget(space, workspace, table, "server cli")
            budgets.save_budget(con, team, create=True)
        except budgets.TeamBudgetError as error:
            click.echo(f"halton-meter: {error}", err=True)
            sys.exit(EXIT_CONFIG)
    click.echo(json.dumps(team.to_json(), indent=2) if as_json else f"Team budget {name} added.")


@server.command("budget-edit")
@click.argument("name")
@click.option("--workspace", default="default", show_default=True)
@click.option("--amount", type=float, help="New limit in USD.")
@click.option("--period", help="day, week, month, 7d…")
@click.option("--warn", "warn", help="Thresholds in percent, e.g. 50,80,100.")
@click.option("--block/--warn-only", default=None, help="Refuse calls once over 100%, or not.")
@click.option("--timezone", help="IANA zone for period edges.")
@_budget_scope
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def budget_edit(name: str, workspace: str, amount: float | None, period: str | None,
                warn: str | None, block: bool | None, timezone: str | None,
                project: tuple[str, ...], machine: tuple[str, ...], provider: tuple[str, ...],
                model: tuple[str, ...], webhook_url: str | None, webhook_format: str | None,
                webhook_secret: str | None, config_file: Path | None,
                as_json: bool) -> None:  # fmt: skip
    """Change a team budget; machines pick the change up with their next sync."""
    from halton_meter.teamserver import budgets

    action = None if block is None else ("block" if block else "warn")
    changes = _team_table(
        amount, period, warn, action, timezone, project, machine, provider, model,
        webhook_url, webhook_format, webhook_secret)  # fmt: skip
    with _database(config_file) as con:
        space = _workspace_id(con, workspace)
        try:
            team = budgets.edit_budget(con, space, name, changes, "server cli")
        except LookupError:
            click.echo(f"halton-meter: workspace {workspace} has no budget {name!r}", err=True)
            sys.exit(EXIT_FAILURE)
        except budgets.TeamBudgetError as error:
            click.echo(f"halton-meter: {error}", err=True)
            sys.exit(EXIT_CONFIG)
    click.echo(json.dumps(team.to_json(), indent=2) if as_json else f"Team budget {name} changed.")


@server.command("budget-rm")
@click.argument("name")
@click.option("--workspace", default="default", show_default=True)
@_config_option
def budget_rm(name: str, workspace: str, config_file: Path | None) -> None:
    """Remove a team budget; machines stop applying it with their next sync."""
    from halton_meter.teamserver import budgets

    with _database(config_file) as con:
        if not budgets.remove_budget(con, _workspace_id(con, workspace), name):
            click.echo(f"halton-meter: workspace {workspace} has no budget {name!r}", err=True)
            sys.exit(EXIT_FAILURE)
    click.echo(f"Team budget {name} removed.")


COMMANDS = [server]
