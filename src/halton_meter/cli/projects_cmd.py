"""`halton-meter projects` (list, rename, merge) and `why`: they read the ledger directly."""

from __future__ import annotations

import json
import sqlite3
import sys
from typing import Any

import click
from rich.console import Console

from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.cli.report_cmd import _open_ledger
from halton_meter.cli.tables import Column, fitted_table
from halton_meter.ledger.projects import (
    ProjectError,
    ProjectSummary,
    find_request,
    list_projects,
    move_project,
)
from halton_meter.money import DisplayCurrency, usd_string
from halton_meter.slugs import is_slug, not_a_slug

LAYER_WORDS = {
    "tag": "the exact tag: the project named in the proxy URL (`run --project`, HALTON_PROJECT)",
    "rule": "a [[tagging.rules]] entry in config.toml",
    "env": "HALTON_PROJECT in the client process's environment",
    "haltonrc": "a .haltonrc file above the client's working folder",
    "ide": "an IDE workspace on the command line of the client or a parent",
    "git": "the name of the git repository the client runs in",
    "parent": "the working folder of a parent process (.haltonrc or git repository)",
    "container": "the container the client runs in",
    "cwd": "the name of the client's working folder",
    "default": "[tagging] default_project: nothing else matched",
    "self-test": "`halton-meter init`'s self-test, answered by the meter itself (free)",
}


def _summary_json(item: ProjectSummary) -> dict[str, Any]:
    return {
        "project": item.project,
        "requests": item.requests,
        "unpriced_requests": item.unpriced_requests,
        "month_cost_nanousd": item.month_cost_nanousd,
        "month_cost_usd": usd_string(item.month_cost_nanousd),
        "total_cost_nanousd": item.total_cost_nanousd,
        "total_cost_usd": usd_string(item.total_cost_nanousd),
        "last_active": item.last_active,
        "top_model": item.top_model,
        "renamed_to": item.renamed_to,
        # Apart from money spent (the cost figures above), never added to it.
        "subscription_requests": item.subscription_requests,
        "subscription_value_nanousd": item.subscription_value_nanousd,
        "subscription_value_usd": usd_string(item.subscription_value_nanousd),
    }


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (see docs/cli.md).")
@click.pass_context
def projects(click_context: click.Context, as_json: bool) -> None:
    """Projects with this month's and all-time spend, last activity and top model."""
    if click_context.invoked_subcommand is not None:
        return
    ctx = click_context.ensure_object(Context)
    with _open_ledger(ctx) as con:
        items = list_projects(con)
    if as_json:
        click.echo(json.dumps([_summary_json(item) for item in items], indent=2))
        return
    console = Console()
    if not items:
        console.print("No metered calls yet. Run a tool with `halton-meter run -- CMD`.")
        return
    display = ctx.config.display
    columns = [
        Column("project", [_name(item) for item in items]),
        Column("this month", [display.format(i.month_cost_nanousd) for i in items], numeric=True),
        Column("all time", [display.format(i.total_cost_nanousd) for i in items], numeric=True),
        Column("calls", [f"{item.requests:,}" for item in items], numeric=True, priority=2),
    ]
    if any(item.subscription_requests for item in items):
        columns.append(
            Column(
                "subscription value",
                [_subscription(item, display) for item in items],
                numeric=True,
                priority=1,
            )
        )
    columns += [
        Column("last active UTC", [_when(item.last_active) for item in items], priority=1),
        Column("top model", [item.top_model or "-" for item in items], priority=3),
    ]
    console.print(fitted_table(console, f"{len(items)} projects", columns))
    if any(item.unpriced_requests for item in items):
        console.print("[dim]spend covers priced calls only (see `report` for unpriced)[/dim]")
    if any(item.subscription_requests for item in items):
        console.print(
            "[dim]money spent leaves subscription calls out; their value at API prices is "
            "shown apart[/dim]"
        )


def _subscription(item: ProjectSummary, display: DisplayCurrency) -> str:
    """All-time API-equivalent value of the project's subscription calls (not money spent)."""
    return display.format(item.subscription_value_nanousd) if item.subscription_requests else ""


def _name(item: ProjectSummary) -> str:
    return item.project + (f" → {item.renamed_to}" if item.renamed_to else "")


def _when(stamp: str | None) -> str:
    return "-" if stamp is None else stamp[:16].replace("T", " ")


def _slug(value: str, name: str) -> str:
    if not is_slug(value):
        raise click.BadParameter(not_a_slug(value), param_hint=name)
    return value


def _move(ctx: Context, old: str, new: str, merge: bool, rewrite: bool, as_json: bool) -> None:
    with _open_ledger(ctx) as con:
        try:
            moved, kept = move_project(con, old, new, merge=merge, rewrite_history=rewrite)
        except ProjectError as error:
            click.echo(f"halton-meter: {error}", err=True)
            sys.exit(EXIT_FAILURE)
        except sqlite3.Error as error:
            click.echo(f"halton-meter: the ledger could not be changed: {error}", err=True)
            sys.exit(EXIT_FAILURE)
    if as_json:
        payload = {"from": old, "to": new, "rows_moved": moved, "rows_kept": kept}
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(f"New calls of {old} are recorded under {new}.")
    if rewrite:
        click.echo(f"{moved} earlier rows moved from {old} to {new}.")
    elif kept:
        click.echo(f"{kept} earlier rows stay under {old} (add --rewrite-history to move them).")


_REWRITE_HELP = "Also move the rows already in the ledger (history is kept as is otherwise)."


@projects.command()
@click.argument("old")
@click.argument("new")
@click.option("--rewrite-history", is_flag=True, help=_REWRITE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print {from, to, rows_moved, rows_kept}.")
@pass_context
def rename(ctx: Context, old: str, new: str, rewrite_history: bool, as_json: bool) -> None:
    """Record OLD's new calls under NEW (a name with no rows yet)."""
    _move(ctx, _slug(old, "OLD"), _slug(new, "NEW"), False, rewrite_history, as_json)


@projects.command()
@click.argument("source", metavar="FROM")
@click.argument("into", metavar="INTO")
@click.option("--rewrite-history", is_flag=True, help=_REWRITE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print {from, to, rows_moved, rows_kept}.")
@pass_context
def merge(ctx: Context, source: str, into: str, rewrite_history: bool, as_json: bool) -> None:
    """Record FROM's new calls under INTO (an existing project)."""
    _move(ctx, _slug(source, "FROM"), _slug(into, "INTO"), True, rewrite_history, as_json)


@click.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see docs/cli.md).")
@pass_context
def why(ctx: Context, request_id: str, as_json: bool) -> None:
    """Which layer attributed a request to its project, and what it saw."""
    with _open_ledger(ctx) as con:
        row = find_request(con, request_id.strip().lower())
    if row is None:
        click.echo(f"halton-meter: no request {request_id!r} in the ledger", err=True)
        sys.exit(EXIT_FAILURE)
    explanation = explain(row)
    if as_json:
        click.echo(json.dumps(explanation, indent=2))
        return
    lines = [
        f"Request {row['id']} at {row['requested_at']}: {row['provider']} "
        f"{row['model'] or row['model_requested'] or '?'}",
        f"Project:  {explanation['project']}",
        f"Decided by: {explanation['layer']} ({explanation['layer_means']})",
    ]
    if explanation["saw"]:
        lines.append(f"It saw:   {explanation['saw']}")
    if explanation["alias_of"]:
        lines.append(f"Renamed:  found as {explanation['alias_of']}, recorded under its new name")
    if explanation["chain"]:
        lines.append(f"Without it, the resolver chain said {explanation['chain']}")
    process = explanation["process"] or "unknown"
    pid = explanation["pid"]
    lines.append(f"Client:   {process}" + (f" (pid {pid})" if pid else ""))
    if explanation["cwd"]:
        lines.append(f"Folder:   {explanation['cwd']}")
    if row["user_agent"]:
        lines.append(f"User-Agent: {row['user_agent']}")
    if explanation["note"]:
        lines.append(f"Note:     {explanation['note']}")
    for skipped in explanation["skipped"]:
        lines.append(f"Skipped:  {skipped}")
    click.echo("\n".join(lines))


def explain(row: dict[str, Any]) -> dict[str, Any]:
    """`why --json`: the row's attribution and what the deciding layer saw."""
    try:
        detail = json.loads(row["attribution_detail"] or "{}")
    except ValueError:
        detail = {}
    layer = row["attribution"]
    return {
        "id": row["id"],
        "requested_at": row["requested_at"],
        "project": row["project"],
        "layer": layer,
        "layer_means": LAYER_WORDS.get(layer or "", "recorded before attribution existed"),
        "saw": detail.get("saw"),
        "chain": detail.get("chain"),
        "alias_of": detail.get("alias_of"),
        "client_process": row["client_process"],
        "process": detail.get("process") or row["client_process"],
        "pid": detail.get("pid"),
        "cwd": detail.get("cwd"),
        "user_agent": row["user_agent"],
        "note": detail.get("note"),
        "skipped": detail.get("skipped", []),
    }


COMMANDS = [projects, why]
