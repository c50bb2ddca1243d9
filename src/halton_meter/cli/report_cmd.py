"""`halton-meter requests` and `report`: they read the ledger directly (no daemon needed)."""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.ledger.db import connect
from halton_meter.ledger.queries import GROUP_COLUMNS, Totals, Window, build_report, recent_requests
from halton_meter.money import format_usd
from halton_meter.report import report_csv, report_json, request_json
from halton_meter.timewindow import TimeParseError, ledger_timestamp, parse_moment


def _open_ledger(ctx: Context) -> sqlite3.Connection:
    try:
        return connect(ctx.paths.ledger)
    except sqlite3.Error as error:
        click.echo(f"halton-meter: cannot open the ledger {ctx.paths.ledger}: {error}", err=True)
        sys.exit(EXIT_FAILURE)


def _moment(text: str, option: str) -> datetime:
    try:
        return parse_moment(text)
    except TimeParseError as error:
        raise click.BadParameter(str(error), param_hint=option) from None


def _tokens(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array (see docs/cli.md).")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--since", help="Only rows since 30m, 1h, 7d, a date or an ISO timestamp.")
@click.option("--project", "-p", help="Only this project.")
@pass_context
def requests(
    ctx: Context, as_json: bool, limit: int, since: str | None, project: str | None
) -> None:
    """The latest metered calls, newest first."""
    since_ts = ledger_timestamp(_moment(since, "--since")) if since else None
    with _open_ledger(ctx) as con:
        rows = recent_requests(con, Window(since=since_ts, project=project), limit)
    if as_json:
        click.echo(json.dumps([request_json(row) for row in rows], indent=2))
        return
    console = Console()
    if not rows:
        console.print("No metered calls yet. Run a tool with `halton-meter run -- CMD`.")
        return
    table = Table(title=f"Latest {len(rows)} calls", header_style="bold")
    for name, justify in [
        ("time (UTC)", "left"),
        ("project", "left"),
        ("provider", "left"),
        ("model", "left"),
        ("in", "right"),
        ("cache r/w", "right"),
        ("out", "right"),
        ("ms", "right"),
        ("status", "left"),
        ("cost", "right"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        cache = f"{_tokens(row['cache_read_tokens'])}/{_tokens(row['cache_write_tokens'])}"
        status = row["status"] if row["status"] == "ok" else f"[red]{row['error_class']}[/red]"
        if not row["tokens_complete"] and row["status"] == "ok":
            status = "[yellow]incomplete[/yellow]"
        table.add_row(
            row["requested_at"][5:19].replace("T", " "),
            row["project"],
            row["provider"],
            row["model"] or "?",
            _tokens(row["input_tokens"]),
            cache,
            _tokens(row["output_tokens"]),
            f"{row['latency_ms']:.0f}" if row["latency_ms"] is not None else "-",
            status,
            format_usd(row["cost_nanousd"]),
        )
    console.print(table)


@click.command()
@click.option("--since", help="Start: 30m, 1h, 7d, 2w, a date or an ISO timestamp (default 7d).")
@click.option("--from", "from_", help="Start date (inclusive), e.g. 2026-11-01.")
@click.option("--to", help="End date (inclusive), e.g. 2026-11-30.")
@click.option("--today", is_flag=True, help="Since midnight UTC.")
@click.option(
    "--by",
    "group_by",
    multiple=True,
    type=click.Choice(sorted(GROUP_COLUMNS)),
    help="Group by this (repeat for several).",
)
@click.option("--project", "-p", help="Only this project.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV, one line per group.")
@pass_context
def report(
    ctx: Context,
    since: str | None,
    from_: str | None,
    to: str | None,
    today: bool,
    group_by: tuple[str, ...],
    project: str | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Where the money went: totals and grouped tables for a time window."""
    if sum(bool(x) for x in (since, from_ or to, today)) > 1:
        raise click.UsageError("use one of --since, --from/--to, --today")
    if as_json and as_csv:
        raise click.UsageError("use one of --json, --csv")
    start: datetime | None
    end: datetime | None = None
    if today:
        start = _moment("today", "--today")
    elif from_ or to:
        start = _moment(from_, "--from") if from_ else None
        if to:
            end = _moment(to, "--to")
            if len(to.strip()) == 10:  # a date: include the whole day
                end += timedelta(days=1)
    else:
        start = _moment(since or "7d", "--since")
    window = Window(
        since=ledger_timestamp(start) if start else None,
        until=ledger_timestamp(end) if end else None,
        project=project,
    )
    groups = list(group_by)
    with _open_ledger(ctx) as con:
        result = build_report(con, window, groups)
    if as_json:
        payload = report_json(result, groups, {"from": window.since, "to": window.until})
        click.echo(json.dumps(payload, indent=2))
        return
    if as_csv:
        click.echo(report_csv(result, groups), nl=False)
        return
    _render_report(result.totals, result.groups, result.unpriced, groups, window)


def _render_report(
    totals: Totals,
    grouped: list[tuple[tuple[str, ...], Totals]],
    unpriced: list[dict[str, Any]],
    group_by: list[str],
    window: Window,
) -> None:
    console = Console()
    span = f"{window.since or 'the beginning'} to {window.until or 'now'}"
    title = f"Spend from {span}" + (f", project {window.project}" if window.project else "")
    table = Table(title=title, header_style="bold", show_footer=bool(grouped))
    measures = [
        "requests",
        "input",
        "cache read",
        "cache write",
        "output",
        "cost",
        "avg ms",
        "p95 ms",
    ]
    for name in group_by:
        table.add_column(name, footer="total" if name == group_by[0] else "")
    footer = _cells(totals)
    for index, name in enumerate(measures):
        table.add_column(name, justify="right", footer=footer[index] if grouped else "")
    rows = grouped or [((), totals)]
    for key, group in rows:
        table.add_row(*key, *_cells(group))
    console.print(table)
    if unpriced:
        section = Table(
            title="Unpriced calls (no price known for these models)", header_style="bold yellow"
        )
        for name in ("provider", "model", "requests", "prompt tokens", "output tokens"):
            section.add_column(
                name, justify="right" if "token" in name or name == "requests" else "left"
            )
        for item in unpriced:
            section.add_row(
                item["provider"],
                item["model"],
                f"{item['requests']:,}",
                f"{item['prompt_tokens']:,}",
                f"{item['output_tokens']:,}",
            )
        console.print(section)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    console.print(f"[dim]{totals.requests:,} calls; read from the ledger at {stamp}[/dim]")


def _cells(totals: Totals) -> list[str]:
    cost = format_usd(totals.cost_nanousd)
    if totals.unpriced_requests:
        cost += f" (+{totals.unpriced_requests} unpriced)"
    return [
        f"{totals.requests:,}",
        f"{totals.input_tokens:,}",
        f"{totals.cache_read_tokens:,}",
        f"{totals.cache_write_tokens:,}",
        f"{totals.output_tokens:,}",
        cost,
        "-" if totals.avg_latency_ms is None else f"{totals.avg_latency_ms:,.0f}",
        "-" if totals.p95_latency_ms is None else f"{totals.p95_latency_ms:,.0f}",
    ]


COMMANDS = [requests, report]
