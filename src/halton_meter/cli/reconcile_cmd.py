"""`halton-meter reconcile`: the ledger against the provider's own usage and cost reports.

Exit codes (docs/cli.md): 0 every day and model matches, 6 reconciled with differences,
5 no admin key or the provider refused it, 1 the provider or the ledger could not be read,
2 bad usage.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.cli.tables import Column, fitted_table
from halton_meter.lifecycle.keychain import keychain
from halton_meter.reconcile import compare, reports, run
from halton_meter.reconcile.fetch import FetchError, KeyRefused

EXIT_KEY = 5
EXIT_DIFFERENCES = 6


def _days(text: str) -> int:
    found = re.fullmatch(r"\s*(\d+)\s*d?\s*", text)
    if not found or not 1 <= int(found.group(1)) <= 31:
        raise click.BadParameter("use a number of days from 1 to 31, like 7d")
    return int(found.group(1))


def _tokens(item: compare.Comparison) -> str:
    parts = []
    for kind in reports.KINDS:
        if kind not in item.theirs.tokens and not item.ours.tokens.get(kind):
            continue
        mine, theirs = item.ours.tokens.get(kind, 0), item.theirs.tokens.get(kind)
        if theirs is None:
            parts.append(f"{compare.kind_text(kind)} {mine:,} (not reported)")
        elif mine == theirs:
            if mine:
                parts.append(f"{compare.kind_text(kind)} {mine:,}")
        else:
            parts.append(f"{compare.kind_text(kind)} {mine:,} vs {theirs:,} ({mine - theirs:+,})")
    if item.theirs.requests is not None:
        parts.append(f"requests {item.ours.requests or 0:,} vs {item.theirs.requests:,}")
    return "; ".join(parts) or "-"


def _cost(ctx: Context, nanousd: int | None) -> str:
    return "-" if nanousd is None else ctx.config.display.format(nanousd)


def _print(ctx: Context, result: run.Result) -> None:
    console = Console(highlight=False)
    window = result.window
    console.print(
        f"[bold]{result.provider}[/bold]: {window.first} to {window.end} (exclusive), "
        f"{len(window.days)} UTC days; key from {escape(result.key_source)}"
    )
    if result.scope:
        console.print(
            f"Scope: the provider's report for {escape(result.scope.describe())}; the ledger's "
            f"side is every {result.provider} API call this meter saw (it records no key, "
            "workspace or project)."
        )
        if not result.scope.cost_compared:
            console.print(
                "Cost not compared: the provider's cost report cannot be filtered by API key."
            )
    console.print(f"Tolerance: {compare.TOLERANCE_TEXT}.")
    if not result.comparisons:
        console.print("Neither the ledger nor the provider has any usage in this window.")
        return
    columns = [
        Column("Day"),
        Column("Model"),
        Column("Verdict"),
        Column("Ledger", numeric=True),
        Column("Provider", numeric=True),
        Column("Tokens (ledger vs provider)", priority=1),
    ]
    for item in result.comparisons:
        cells = [
            item.day,
            escape(item.model),
            compare.VERDICT_TEXT.get(item.verdict, item.verdict),
            _cost(ctx, item.ours.cost_nanousd),
            _cost(ctx, item.theirs.cost_nanousd),
            escape(_tokens(item)),
        ]
        for column, cell in zip(columns, cells, strict=True):
            column.cells.append(cell)
    console.print(fitted_table(console, "Ledger against the provider's report", columns))
    shown_overrides: set[str] = set()
    for item in result.comparisons:
        if item.verdict in (compare.MATCHES, compare.NOT_PER_MODEL):
            continue
        console.print(
            f"[bold]{item.day} {escape(item.model)}[/bold]: "
            f"{compare.VERDICT_TEXT.get(item.verdict, item.verdict)}"
        )
        for hole in item.holes:
            console.print(f"  unmetered: {escape(hole['text'])}")
        for step in item.next_steps:
            console.print(f"  - {escape(step)}")
        if item.override and item.override not in shown_overrides:
            shown_overrides.add(item.override)
            console.print("  Add to config.toml:")
            for line in item.override.splitlines():
                console.print(f"    {escape(line)}", soft_wrap=True)
    if result.matches:
        console.print(
            f"The ledger matches {result.provider}'s report for every day and model "
            f"({len(window.days)} days)."
        )


@click.command()
@click.option(
    "--provider",
    type=click.Choice(reports.PROVIDERS),
    multiple=True,
    help="Reconcile only this provider (repeatable); default: each one with a key.",
)
@click.option("--since", "since", default="7d", show_default=True, help="Days back: 1d to 31d.")
@click.option("--include-today", is_flag=True, help="Also compare today's partial UTC day.")
@click.option(
    "--workspace",
    "workspaces",
    multiple=True,
    help="Only this Anthropic workspace id (wrkspc_…) of the report (repeatable).",
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    help="Only this OpenAI project id (proj_…) of the report (repeatable).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Only this API key id of one provider (its id, never the key; repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/reconcile.md).")
@pass_context
def reconcile(
    ctx: Context,
    provider: tuple[str, ...],
    since: str,
    include_today: bool,
    workspaces: tuple[str, ...],
    projects: tuple[str, ...],
    api_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Compare the ledger with the provider's own usage and cost reports, day by day and model
    by model (needs an admin key: docs/reconcile.md)."""
    try:
        days = _days(since)
    except click.BadParameter as error:
        raise click.UsageError(str(error)) from None
    window = run.window_for(days, include_today=include_today)
    chosen = list(provider)
    if not chosen and (workspaces or projects):  # the scope names its provider
        chosen = [p for p, named in (("anthropic", workspaces), ("openai", projects)) if named]
    if not chosen:  # every provider with a key; a clear error when none has one
        chosen = [name for name in reports.PROVIDERS if _has_key(name)] or ["anthropic"]
    if api_keys and len(chosen) != 1:
        raise click.UsageError("--api-key names one provider's key: add --provider")
    scopes: dict[str, reports.Scope] = {}
    alone = len(chosen) == 1  # one provider takes every scope given (a wrong one is an error)
    for name in chosen:
        try:
            scopes[name] = reports.scope_for(
                name,
                workspaces if alone or name == "anthropic" else (),
                projects if alone or name == "openai" else (),
                api_keys,
            )
        except reports.ScopeError as error:
            raise click.UsageError(str(error)) from None
    if not ctx.paths.ledger.exists():
        click.echo(f"halton-meter: no ledger at {ctx.paths.ledger} yet", err=True)
        sys.exit(EXIT_FAILURE)
    payload: dict[str, Any] = {"providers": {}}
    summaries: dict[str, dict[str, Any]] = {}
    code = 0
    for name in chosen:
        try:
            result = run.reconcile(
                name, ctx.paths.ledger, ctx.config.upstream, window, _lookup, scopes[name]
            )
        except (run.NoKey, KeyRefused, FetchError, sqlite3.Error) as error:
            message = run.describe_error(name, error)
            summaries[name] = run.error_summary(name, error)
            payload["providers"][name] = summaries[name]
            is_key = isinstance(error, run.NoKey | KeyRefused)
            code = _worse(code, EXIT_KEY if is_key else EXIT_FAILURE)
            if not as_json:
                click.echo(f"halton-meter: {message}", err=True)
            continue
        summaries[name] = result.summary(ctx.config.reconcile.alert_above_usd)
        payload["providers"][name] = result.as_json()
        if not result.matches:
            code = _worse(code, EXIT_DIFFERENCES)
        if not as_json:
            _print(ctx, result)
    run.save(ctx.paths.home, summaries)
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    sys.exit(code)


# A refused key outranks an unreachable provider, which outranks a difference.
_SEVERITY = {0: 0, EXIT_DIFFERENCES: 1, EXIT_FAILURE: 2, EXIT_KEY: 3}


def _worse(current: int, new: int) -> int:
    return new if _SEVERITY[new] > _SEVERITY[current] else current


def _lookup(account: str) -> str | None:
    """The OS keychain (lifecycle/keychain.py): secret-tool, security, Credential Manager."""
    return keychain().lookup(account)


def _has_key(provider: str) -> bool:
    try:
        run.find_key(provider, _lookup)
    except run.NoKey:
        return False
    return True


COMMANDS = [reconcile]
