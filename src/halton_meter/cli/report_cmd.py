"""`halton-meter requests` and `report`: they read the ledger directly (no daemon needed)."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.console import Console

from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.cli.tables import Column, fitted_table
from halton_meter.ledger import spans
from halton_meter.ledger.db import connect
from halton_meter.ledger.queries import (
    GROUP_COLUMNS,
    Report,
    Totals,
    Window,
    build_report,
    recent_requests,
)
from halton_meter.money import DisplayCurrency
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
    """Exact below 100,000; compact above, so tables fit a terminal (--json is exact)."""
    if value is None:
        return "-"
    if value < 100_000:
        return f"{value:,}"
    if value < 1_000_000:
        return f"{value / 1000:.1f}k"
    return f"{value / 1_000_000:.2f}M"


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
        # The gaps among the calls shown: from the oldest one listed (or --since) on.
        oldest = rows[-1]["requested_at"] if len(rows) == limit else since_ts
        gaps = spans.holes(con, oldest, None)
    if as_json:
        click.echo(json.dumps([request_json(row) for row in rows], indent=2))
        return
    console = Console()
    if not rows:
        console.print("No metered calls yet. Run a tool with `halton-meter run -- CMD`.")
        _print_holes(console, gaps)
        return
    columns = [
        Column("time UTC", [row["requested_at"][11:19] for row in rows], priority=3),
        Column("project", [row["project"] for row in rows], priority=2),
        Column("model", [row["model"] or "?" for row in rows]),
        Column("in", [_tokens(row["input_tokens"]) for row in rows], numeric=True),
        Column("out", [_tokens(row["output_tokens"]) for row in rows], numeric=True),
        Column(
            "cache r/w",
            [f"{_tokens(r['cache_read_tokens'])}/{_tokens(r['cache_write_tokens'])}" for r in rows],
            numeric=True,
            priority=4,
        ),
        Column("ms", [_ms(row["latency_ms"]) for row in rows], numeric=True, priority=5),
        Column("cost", [_outcome(row, ctx.config.display) for row in rows], numeric=True),
    ]
    table = fitted_table(console, f"Latest {len(rows)} calls", columns)
    console.print(table)
    _print_holes(console, gaps)


def _print_holes(console: Console, gaps: list[spans.Hole]) -> None:
    """Unmetered traffic (the daemon was away): those calls are missing above."""
    for hole in gaps:
        console.print(f"[yellow]not metered: {hole.describe()}[/yellow]")


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
        gaps = spans.holes(con, window.since, window.until)
    if as_json:
        payload = report_json(result, groups, {"from": window.since, "to": window.until})
        # A window with a hole is incomplete: say so, with what the edge could count.
        payload["complete"] = not gaps
        payload["unmetered"] = [hole.as_json() for hole in gaps]
        click.echo(json.dumps(payload, indent=2))
        return
    if as_csv:
        click.echo(report_csv(result, groups), nl=False)
        return
    _render_report(result, groups, window, ctx.config.display)
    if gaps:
        console = Console()
        _print_holes(console, gaps)
        console.print(
            "[yellow]The totals miss the calls on these connections: the daemon was not "
            "running, and the edge passed them through unmetered.[/yellow]"
        )


def _render_report(
    result: Report, group_by: list[str], window: Window, display: DisplayCurrency
) -> None:
    console = Console()
    totals, grouped, unpriced = result.totals, result.groups, result.unpriced
    span = f"{window.since or 'the beginning'} to {window.until or 'now'}"
    title = f"Spend from {span}" + (f", project {window.project}" if window.project else "")
    rows = grouped or [((), totals)]
    columns = [
        Column(name, [key[index] for key, _ in rows], footer="total" if index == 0 else "")
        for index, name in enumerate(group_by)
    ]
    measures: list[tuple[str, int, Callable[[Totals], str]]] = [
        ("calls", 0, lambda t: f"{t.requests:,}"),
        ("input", 0, lambda t: _tokens(t.input_tokens)),
        ("cache rd", 3, lambda t: _tokens(t.cache_read_tokens)),
        ("cache wr", 4, lambda t: _tokens(t.cache_write_tokens)),
        ("output", 0, lambda t: _tokens(t.output_tokens)),
        ("cost", 0, lambda t: _cost(t, display)),
        ("unpriced", 1, lambda t: f"{t.unpriced_requests:,}" if t.unpriced_requests else ""),
        ("subscription value", 1, lambda t: _subscription(t, display)),
        ("avg ms", 5, lambda t: _ms(t.avg_latency_ms)),
        ("p95 ms", 2, lambda t: _ms(t.p95_latency_ms)),
    ]
    for name, priority, cell in measures:
        if name == "unpriced" and not totals.unpriced_requests:
            continue
        if name == "subscription value" and not totals.subscription_requests:
            continue
        columns.append(
            Column(
                name,
                [cell(group) for _, group in rows],
                footer=cell(totals) if grouped else "",
                numeric=True,
                priority=priority,
            )
        )
    table = fitted_table(console, title, columns)
    console.print(table)
    if unpriced:
        section = fitted_table(
            console,
            "Unpriced calls (no price known for these models)",
            [
                Column("provider", [item["provider"] for item in unpriced]),
                Column("model", [item["model"] for item in unpriced]),
                Column("calls", [f"{item['requests']:,}" for item in unpriced], numeric=True),
                Column(
                    "prompt tokens",
                    [_tokens(item["prompt_tokens"]) for item in unpriced],
                    numeric=True,
                ),
                Column(
                    "output tokens",
                    [_tokens(item["output_tokens"]) for item in unpriced],
                    numeric=True,
                ),
            ],
        )
        console.print(section)
    if totals.subscription_requests:
        console.print(
            f"Money spent (API billing): {display.format(totals.cost_nanousd)}. "
            f"Subscription use, apart: {totals.subscription_requests:,} calls worth "
            f"{display.format(totals.subscription_value_nanousd)} at API prices "
            "(paid by the plan, not added to money spent)."
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if totals.unpriced_requests:
        console.print("[dim]* the cost covers priced calls only; see the unpriced calls[/dim]")
    console.print(f"[dim]{totals.requests:,} calls; read from the ledger at {stamp}[/dim]")


def _cost(totals: Totals, display: DisplayCurrency) -> str:
    """Unpriced calls are never shown as $0: a group with no priced call says so."""
    if totals.requests and totals.unpriced_requests == totals.requests:
        return "unpriced"
    # "*": some calls in this group have no price, so the sum covers the priced ones only.
    return display.format(totals.cost_nanousd) + ("*" if totals.unpriced_requests else "")


def _subscription(totals: Totals, display: DisplayCurrency) -> str:
    """The API-equivalent value of a group's subscription calls (never part of its cost)."""
    if not totals.subscription_requests:
        return ""
    return display.format(totals.subscription_value_nanousd)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _outcome(row: dict[str, Any], display: DisplayCurrency) -> str:
    """The cost, or what went wrong instead."""
    if row["status"] != "ok":
        return f"[red]{row['error_class']}[/red]"
    cost = display.format(row["cost_nanousd"])
    return cost if row["tokens_complete"] else f"[yellow]partial[/yellow] {cost}"


COMMANDS = [requests, report]
