"""`halton-meter pricing list|show` and `halton-meter reprice`."""

from __future__ import annotations

import json
import sys
from contextlib import closing
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress

from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.cli.tables import Column, fitted_table
from halton_meter.ledger.db import connect
from halton_meter.ledger.queries import Window
from halton_meter.money import format_usd
from halton_meter.timewindow import TimeParseError, ledger_timestamp, parse_moment


def _price(value: str | None) -> str:
    return "-" if value is None else f"${value}"


@click.group()
def pricing() -> None:
    """The price catalogue bundled with this release (no network needed)."""


@pricing.command("list")
@click.option("--provider", help="Only this provider (e.g. anthropic, openai, google).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
def pricing_list(provider: str | None, as_json: bool) -> None:
    """Every model with its prices per million tokens, as in effect today."""
    from halton_meter.pricing import catalogue_version, list_prices

    models = list_prices(provider)
    if as_json:
        click.echo(json.dumps(models, indent=2, default=str))
        return
    if not models:
        click.echo(f"No models for provider {provider!r}. Try: anthropic, openai, google.")
        sys.exit(EXIT_FAILURE)
    console = Console()
    columns = [
        Column("provider", [m["provider"] for m in models], priority=2),
        Column("model", [m["model"] for m in models]),
        Column("input", [_price(m["input_mtok"]) for m in models], numeric=True),
        Column("output", [_price(m["output_mtok"]) for m in models], numeric=True),
        Column(
            "cache read", [_price(m["cache_read_mtok"]) for m in models], numeric=True, priority=1
        ),
        Column(
            "write 5m", [_price(m["cache_write_5m_mtok"]) for m in models], numeric=True, priority=3
        ),
        Column(
            "write 1h", [_price(m["cache_write_1h_mtok"]) for m in models], numeric=True, priority=4
        ),
        Column("tiers", [_tiers(m) for m in models], priority=5),
    ]
    title = f"Prices per million tokens ({catalogue_version()})"
    console.print(fitted_table(console, title, columns))


def _tiers(model: dict[str, Any]) -> str:
    parts = [f">{tier['above_prompt_tokens'] // 1000}k" for tier in model["long_context"]]
    parts += sorted(model["variants"])
    return " ".join(parts)


@pricing.command("show")
@click.argument("model")
@click.option("--provider", help="Disambiguate a model several providers serve.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
def pricing_show(model: str, provider: str | None, as_json: bool) -> None:
    """One model's prices, long-context tiers and batch/flex/priority variants."""
    from halton_meter.pricing import show_price

    found = show_price(model, provider)
    if found is None:
        click.echo(
            f"halton-meter: no price known for {model!r}"
            + (f" at {provider}" if provider else "")
            + ". Calls to it are recorded as unpriced; a [[pricing.overrides]] entry "
            "in config.toml can price them.",
            err=True,
        )
        sys.exit(EXIT_FAILURE)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    console = Console()
    console.print(
        f"[bold]{found['provider']} / {found['model']}[/bold]  "
        f"({found['catalogue']}, matched from {found['matched_from']})"
    )
    kinds = [
        ("input", "input_mtok"),
        ("output", "output_mtok"),
        ("cache read", "cache_read_mtok"),
        ("cache write 5m", "cache_write_5m_mtok"),
        ("cache write 1h", "cache_write_1h_mtok"),
    ]
    rows: list[tuple[str, dict[str, Any]]] = [("standard", found)]
    rows += [(f"> {t['above_prompt_tokens']:,} prompt tokens", t) for t in found["long_context"]]
    rows += sorted(found["variants"].items())
    columns = [Column("price per million", [name for name, _ in rows])]
    for header, key in kinds:
        columns.append(Column(header, [_price(r.get(key)) for _, r in rows], numeric=True))
    console.print(fitted_table(console, "", columns))
    if found["web_search_kcount"]:
        console.print(f"web search: ${found['web_search_kcount']} per 1,000")


@click.command()
@click.option("--since", required=True, help="Rows since 30m, 7d, a date or an ISO timestamp.")
@click.option("--project", "-p", help="Only this project.")
@click.option("--dry-run", is_flag=True, help="Show the change per model; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the change as JSON.")
@click.option("--yes", is_flag=True, help="Apply without asking.")
@pass_context
def reprice(
    ctx: Context, since: str, project: str | None, dry_run: bool, as_json: bool, yes: bool
) -> None:
    """Recompute past rows' costs with this release's catalogue and your overrides.

    Shows the change per model first; history is never re-priced silently.
    """
    from halton_meter.reprice import apply_reprice, plan_reprice

    try:
        # Every row, the self-test's too: they are priced by the same rule.
        window = Window(
            since=ledger_timestamp(parse_moment(since)), project=project, include_self_test=True
        )
    except TimeParseError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    console = Console(stderr=as_json)
    with closing(connect(ctx.paths.ledger)) as con:
        where, params = window.where()
        total = con.execute(f"SELECT COUNT(*) FROM requests{where}", params).fetchone()[0]
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("Pricing rows", total=total)
            plan = plan_reprice(
                con, window, ctx.config.price_overrides, lambda n: progress.advance(task, n)
            )
        changes = sorted(plan.changes.values(), key=lambda c: (c.provider, c.model))
        if as_json:
            click.echo(json.dumps(_plan_json(changes, len(plan.updates), dry_run), indent=2))
        else:
            render_plan(console, changes, len(plan.updates), total)
        if dry_run or not plan.updates:
            return
        if not yes and not as_json and not sys.stdin.isatty():
            # Nobody to answer the question (a script, a pipe): say so, not "Aborted!".
            console.print(
                "Nothing changed: no terminal to confirm on. Add --yes to write these changes "
                "(or --dry-run to only show them)."
            )
            sys.exit(EXIT_FAILURE)
        if (
            not yes
            and not as_json
            and not click.confirm(f"Re-price {len(plan.updates):,} rows?", default=False)
        ):
            click.echo("Nothing changed.")
            return
        written = apply_reprice(con, plan)
    if not as_json:
        console.print(
            f"Re-priced {written:,} rows; their price_source says where each price came from."
        )


def _plan_json(changes: list[Any], updates: int, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "rows_changing": updates,
        "models": [c.as_json() for c in changes],
    }


def render_plan(console: Console, changes: list[Any], updates: int, total: int) -> None:
    columns = [
        Column("provider", [c.provider for c in changes], priority=2),
        Column("model", [c.model for c in changes]),
        Column("rows", [f"{c.rows:,}" for c in changes], numeric=True),
        Column("changing", [f"{c.changed:,}" for c in changes], numeric=True),
        Column(
            "old cost",
            [_cost(c.old_nanousd, c.old_unpriced, c.rows) for c in changes],
            numeric=True,
        ),
        Column(
            "new cost",
            [_cost(c.new_nanousd, c.new_unpriced, c.rows) for c in changes],
            numeric=True,
        ),
        Column("source", [", ".join(sorted(c.new_sources)) for c in changes], priority=1),
    ]
    console.print(fitted_table(console, f"Re-pricing {total:,} rows", columns))
    console.print(f"{updates:,} rows would change." if updates else "No row would change.")
    if any(0 < c.old_unpriced < c.rows or 0 < c.new_unpriced < c.rows for c in changes):
        console.print("[dim]* some of these rows are unpriced; the cost covers the rest[/dim]")


def _cost(nanousd: int, unpriced: int, rows: int) -> str:
    if unpriced == rows:
        return "unpriced"
    return format_usd(nanousd) + ("*" if unpriced else "")


COMMANDS = [pricing, reprice]
