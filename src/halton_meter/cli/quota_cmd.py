"""`halton-meter quota`: how full each provider account's quota windows are, and who filled them.

Reads the ledger directly (no daemon needed), like `report`. Accounts are opaque labels
(capture/accounts.py), never a token or an e-mail.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console

from halton_meter.cli import Context, pass_context
from halton_meter.cli.report_cmd import _open_ledger
from halton_meter.cli.tables import Column, fitted_table
from halton_meter.ledger.quota import AccountView, WindowView, quota_view, view_json, warnings


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _when(stamp: str | None) -> str:
    return "-" if stamp is None else stamp[:16].replace("T", " ")


def _trend(window: WindowView) -> str:
    if window.trend_per_hour is None:
        return "-"
    text = f"{window.trend_per_hour * 100:+.1f}%/h"
    return text + (f", full {_when(window.full_at)}" if window.full_at else "")


def _shares(window: WindowView, which: str) -> str:
    shares = window.projects if which == "projects" else window.clients
    return ", ".join(f"{s.name} {s.share * 100:.0f}%" for s in shares[:4]) or "-"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_context
def quota(ctx: Context, as_json: bool) -> None:
    """Quota windows per account: utilisation, reset, trend, each project's and client's share."""
    warn_at = ctx.config.quota_warn_at
    with _open_ledger(ctx) as con:
        accounts = quota_view(con, warn_at=warn_at)
    if as_json:
        payload = {"warn_at": warn_at, "accounts": [view_json(view) for view in accounts]}
        click.echo(json.dumps(payload, indent=2))
        return
    console = Console(highlight=False)
    if not accounts:
        console.print(
            "No quota headers seen in the last 8 days (providers send them with each response)."
        )
        return
    for account in accounts:
        _render(console, account)
    for account, window in warnings(accounts):
        console.print(f"[yellow]warning[/yellow] {_warning_line(account, window, warn_at)}")


def _render(console: Console, account: AccountView) -> None:
    rows = account.windows
    columns = [
        Column("window", [w.name for w in rows]),
        Column(
            "used",
            [("[yellow]" if w.warning else "") + _percent(w.utilisation) for w in rows],
            numeric=True,
        ),
        Column(
            "resets UTC", [_when(w.resets_at) + (" (reset)" if w.expired else "") for w in rows]
        ),
        Column("trend", [_trend(w) for w in rows], priority=2),
        Column("projects", [_shares(w, "projects") for w in rows], priority=1),
        Column("clients", [_shares(w, "clients") for w in rows], priority=3),
    ]
    title = f"{account.account} (last seen {_when(account.last_seen_at)} UTC)"
    console.print(fitted_table(console, title, columns))


def _warning_line(account: AccountView, window: WindowView, warn_at: float) -> str:
    status = f", {window.status}" if window.status else ""
    return (
        f"{account.account} {window.name} at {_percent(window.utilisation)}{status} "
        f"(warn at {_percent(warn_at)}), resets {_when(window.resets_at)} UTC"
    )


def status_warnings(ledger: Path, warn_at: float) -> list[str]:
    """Lines for `status`: each quota window past the threshold. Read-only; never fails."""
    if not ledger.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{ledger.as_posix()}?mode=ro", uri=True, timeout=5)
        try:
            accounts = quota_view(con, datetime.now(UTC), warn_at)
        finally:
            con.close()
    except sqlite3.Error:  # an older ledger without the table, or locked: nothing to say
        return []
    return [_warning_line(account, window, warn_at) for account, window in warnings(accounts)]


COMMANDS = [quota]
