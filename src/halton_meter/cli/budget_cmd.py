"""`halton-meter budget`: add, list, show, edit, remove, pause, resume and allow budgets.

Budgets live in config.toml's `[[budgets]]` (edited with tomlkit: comments stay); a running
daemon picks a change up within a second. Spend is read from the ledger here (read-only), so
these commands work with the daemon stopped. Exit codes: 0 done, 1 no such budget or the
ledger unreadable, 2 bad usage, 3 the change would make config.toml invalid (nothing written).
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import click

from halton_meter.budget_model import Budget
from halton_meter.budgets.editing import EditError, add_budget, edit_budget, remove_budget
from halton_meter.budgets.quota_share import quota_share_views
from halton_meter.budgets.spent import open_ledger, project_forecasts, spent_in_windows
from halton_meter.budgets.tracker import budget_view, read_alert_failures, read_holds, write_holds
from halton_meter.cli import EXIT_CONFIG, EXIT_FAILURE, Context, pass_context
from halton_meter.config import ConfigError, load_config


def _views(ctx: Context, every: tuple[Budget, ...]) -> list[dict[str, Any]]:
    now = time.time()
    budgets = tuple(budget for budget in every if budget.kind == "usd")
    windows = [(budget, budget.window(now)) for budget in budgets]
    spent = [0] * len(windows)
    if windows and ctx.paths.ledger.exists():
        try:
            con = open_ledger(ctx.paths.ledger)
            try:
                spent = spent_in_windows(con, windows)
            finally:
                con.close()
        except Exception as error:
            click.echo(f"halton-meter: cannot read the ledger: {error}", err=True)
            sys.exit(EXIT_FAILURE)
    holds = read_holds(ctx.paths.home)

    def hold(name: str) -> str | None:
        if name in holds["paused"]:
            return "paused"
        if (until := holds["allow_until"].get(name)) and until > now:
            return f"allowed until {time.strftime('%Y-%m-%d %H:%M', time.localtime(until))}"
        return None

    views = []
    for (budget, window), total in zip(windows, spent, strict=True):
        views.append(budget_view(budget, window, total, now, held=hold(budget.name)))
    shares = [budget for budget in every if budget.kind == "quota_share"]
    if shares:
        try:
            ledger = open_ledger(ctx.paths.ledger) if ctx.paths.ledger.exists() else None
            try:
                found = quota_share_views(ledger, shares, warn_at=ctx.config.quota_warn_at)
            finally:
                if ledger is not None:
                    ledger.close()
            for view in found:  # the daemon blocks such a budget as it does a USD one
                view["hold"] = hold(view["name"])
                if view["state"] == "over" and view["action"] == "block" and not view["hold"]:
                    view["state"] = "blocking"
            views += found
        except Exception as error:
            click.echo(f"halton-meter: cannot read the quota windows: {error}", err=True)
    order = {budget.name: index for index, budget in enumerate(every)}
    return sorted(views, key=lambda view: order[view["name"]])


def budget_status(ctx: Context) -> dict[str, Any]:
    """For `status`: each budget's state in one line, and undelivered alerts. Never fails."""
    try:
        views = _views(ctx, ctx.config.budgets)
    except SystemExit:
        return {"budgets": [], "lines": ["spend unknown: the ledger cannot be read"]}
    lines = [_line(view) + f"; {view.get('forecast_text', '')}" for view in views]
    failures = read_alert_failures(ctx.paths.home)
    lines += [
        f"alert not delivered ({f.get('channel')}): {f.get('key')}: {f.get('problem')}"
        for f in failures[-3:]
    ]
    return {"budgets": views, "alert_failures": failures, "lines": lines}


def forecasts(ctx: Context) -> dict[str, Any]:
    """For `report`: each budget's forecast and each project's, this month at the pace so far."""
    projects: list[dict[str, Any]] = []
    if ctx.paths.ledger.exists():
        try:
            con = open_ledger(ctx.paths.ledger)
            try:
                projects = project_forecasts(con, time.time())
            finally:
                con.close()
        except Exception as error:
            click.echo(f"halton-meter: forecasts not read: {error}", err=True)
    budgets = [v for v in _views(ctx, ctx.config.budgets) if v["kind"] == "usd"]
    return {"budgets": budgets, "projects": projects}


def print_forecasts(ctx: Context, found: dict[str, Any]) -> None:
    lines = [f"  {v['name']}: {v['forecast_text']}" for v in found["budgets"]]
    for item in found["projects"][:10]:
        if item["forecast_usd"] is not None:
            end = item["window"]["end"][:10]
            lines.append(
                f"  project {item['project']}: ${item['spent_usd']:,.2f} so far this month, "
                f"${item['forecast_usd']:,.2f} by {end} at this pace"
            )
    if lines:
        click.echo("Forecasts\n" + "\n".join(lines))


def _find(ctx: Context, name: str) -> Budget:
    for budget in ctx.config.budgets:
        if budget.name == name:
            return budget
    click.echo(f"halton-meter: no budget named {name!r} (see `halton-meter budget list`)", err=True)
    sys.exit(EXIT_FAILURE)


def _line(view: dict[str, Any]) -> str:
    if view["kind"] == "quota_share":
        windows = ", ".join(
            f"{w['window']} ({w['account']}) {w['percent']}%" for w in view["windows"]
        )
        return (
            f"{view['name']}: up to {view['quota_percent']:g}% of {view['quota_window']}: "
            f"{windows or 'no current window seen'}"
        )
    state = view["state"] + (f", {view['hold']}" if view["hold"] else "")
    return (
        f"{view['name']}: ${view['spent_usd']:,.2f} of ${view['amount_usd']:,.2f} "
        f"({view['percent']}%) {view['period'] if not view['rolling_days'] else 'rolling'} "
        f"- {view['action']}, {state}"
    )


@click.group()
def budget() -> None:
    """Spend limits per project, client, provider or model: alerts, forecasts, opt-in block."""


def _period(value: str) -> tuple[str, int | None]:
    found = re.fullmatch(r"(?:rolling[- :]?)?(\d+)d(?:ays)?|rolling[- :]?(\d+)", value)
    if found:
        return "rolling", int(found.group(1) or found.group(2))
    if value in ("day", "week", "month"):
        return value, None
    raise click.BadParameter("day, week, month or rolling N days (7d)", param_hint="--period")


def _thresholds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part.strip().rstrip("%")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter("percentages like 50,80,100", param_hint="--warn") from None


def _globs(values: tuple[str, ...]) -> str | list[str] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


_SCOPE_OPTIONS = [
    click.option("--project", multiple=True, help="Project glob (repeat for several)."),
    click.option("--client", multiple=True, help="Client process or User-Agent glob."),
    click.option("--provider", multiple=True, help="Provider glob (anthropic, openai…)."),
    click.option("--model", multiple=True, help="Model glob (claude-*…)."),
]


def _scoped(function: Any) -> Any:
    for option in reversed(_SCOPE_OPTIONS):
        function = option(function)
    return function


def _write(action: Any, *args: Any) -> None:
    try:
        action(*args)
    except EditError as error:
        click.echo(f"halton-meter: {error}", err=True)
        sys.exit(EXIT_FAILURE)
    except ConfigError as error:
        click.echo(f"halton-meter: not changed, config.toml would be invalid: {error}", err=True)
        sys.exit(EXIT_CONFIG)


@budget.command("add")
@click.argument("name")
@click.option("--amount", type=float, help="Limit in USD of API billing.")
@click.option("--quota-share", type=float, help="Or: percent of a subscription quota window.")
@click.option("--window", help="The quota window (glob) of --quota-share, e.g. unified-5h.")
@click.option("--period", default="month", show_default=True, help="day, week, month, 7d…")
@click.option("--warn", "warn", help="Thresholds in percent, e.g. 50,80,100 (the default).")
@click.option("--block", is_flag=True, help="Refuse new calls in scope once over 100%.")
@click.option("--timezone", help="IANA zone for period edges (default: this computer's).")
@_scoped
@click.option("--json", "as_json", is_flag=True, help="Print the budget as JSON.")
@pass_context
def add(ctx: Context, name: str, amount: float | None, quota_share: float | None,
        window: str | None, period: str, warn: str | None, block: bool, timezone: str | None,
        project: tuple[str, ...], client: tuple[str, ...], provider: tuple[str, ...],
        model: tuple[str, ...], as_json: bool) -> None:  # fmt: skip
    """Add a budget, e.g. `budget add acme --amount 50 --project acme --warn 80,100 --block`,
    or for a subscription `budget add side --quota-share 30 --window unified-5h --client codex`."""
    if (amount is None) == (quota_share is None):
        raise click.UsageError("give --amount (USD) or --quota-share (percent), one of them")
    if quota_share is not None and not window:
        raise click.UsageError("--quota-share needs --window, e.g. --window unified-5h")
    if window and quota_share is None:
        raise click.UsageError("--window goes with --quota-share")
    kind, days = _period(period)
    values = {
        "name": name,
        "amount_usd": amount,
        "quota_percent": quota_share,
        "quota_window": window,
        "period": kind,
        "days": days,
        "project": _globs(project),
        "client": _globs(client),
        "provider": _globs(provider),
        "model": _globs(model),
        "thresholds": _thresholds(warn),
        "action": "block" if block else None,
        "timezone": timezone,
    }
    _write(add_budget, ctx.paths.config, values)
    _show(ctx, name, as_json, reload=True)


@budget.command("edit")
@click.argument("name")
@click.option("--amount", type=float, help="New limit in USD.")
@click.option("--quota-share", type=float, help="New percent of the quota window.")
@click.option("--window", help="New quota window (glob) for --quota-share.")
@click.option("--period", help="day, week, month, 7d…")
@click.option("--warn", "warn", help="Thresholds in percent, e.g. 50,80,100.")
@click.option("--block/--warn-only", default=None, help="Refuse calls once over 100%, or not.")
@click.option("--timezone", help="IANA zone for period edges.")
@_scoped
@click.option("--all-calls", is_flag=True, help="Drop every scope condition.")
@click.option("--json", "as_json", is_flag=True, help="Print the budget as JSON.")
@pass_context
def edit(ctx: Context, name: str, amount: float | None, quota_share: float | None,
         window: str | None, period: str | None, warn: str | None, block: bool | None,
         timezone: str | None, project: tuple[str, ...], client: tuple[str, ...],
         provider: tuple[str, ...], model: tuple[str, ...], all_calls: bool,
         as_json: bool) -> None:  # fmt: skip
    """Change a budget's amount (USD, or a quota share), period, thresholds, action or scope."""
    if amount is not None and (quota_share is not None or window):
        raise click.UsageError("give --amount (USD) or --quota-share/--window, not both")
    _find(ctx, name)
    changes: dict[str, Any] = {
        "amount_usd": amount,
        "quota_percent": quota_share,
        "quota_window": window,
        "thresholds": _thresholds(warn),
        "timezone": timezone,
        "project": _globs(project),
        "client": _globs(client),
        "provider": _globs(provider),
        "model": _globs(model),
    }
    remove: list[str] = []
    if amount is not None:  # the budget becomes one in USD
        remove += ["quota_percent", "quota_window"]
    if quota_share is not None or window:  # one of a quota window
        remove.append("amount_usd")
    if all_calls:
        remove += ["project", "client", "provider", "model"]
    if period is not None:
        kind, days = _period(period)
        changes["period"], changes["days"] = kind, days
        if days is None:
            remove.append("days")
    if block is not None:
        changes["action"] = "block" if block else "warn"
    _write(edit_budget, ctx.paths.config, name, changes, tuple(remove))
    _show(ctx, name, as_json, reload=True)


@budget.command("rm")
@click.argument("name")
@pass_context
def rm(ctx: Context, name: str) -> None:
    """Remove a budget."""
    _find(ctx, name)
    _write(remove_budget, ctx.paths.config, name)
    click.echo(f"budget {name!r} removed")


@budget.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    """Every budget with its spend this period and its state."""
    views = _views(ctx, ctx.config.budgets)
    if as_json:
        failures = read_alert_failures(ctx.paths.home)
        click.echo(json.dumps({"budgets": views, "alert_failures": failures}, indent=2))
        return
    if not views:
        click.echo("No budgets. Add one: halton-meter budget add NAME --amount 50 --project P")
    for view in views:
        click.echo(_line(view))
    _print_failures(ctx)


def _print_failures(ctx: Context) -> None:
    for failure in read_alert_failures(ctx.paths.home)[-5:]:
        click.echo(
            f"alert not delivered ({failure.get('channel')}): {failure.get('key')}: "
            f"{failure.get('problem')}"
        )


@budget.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_context
def show(ctx: Context, name: str, as_json: bool) -> None:
    """One budget: scope, period edges, spend, thresholds reached and the forecast."""
    _show(ctx, name, as_json)


def _show(ctx: Context, name: str, as_json: bool, reload: bool = False) -> None:
    budgets = load_config(ctx.paths).budgets if reload else ctx.config.budgets
    found = [b for b in budgets if b.name == name]
    if not found:
        click.echo(f"halton-meter: no budget named {name!r}", err=True)
        sys.exit(EXIT_FAILURE)
    (view,) = _views(ctx, (found[0],))
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    if view["kind"] == "quota_share":
        click.echo(f"budget {_line(view)}")
        return
    scope = ", ".join(f"{k}={'|'.join(v)}" for k, v in view["scope"].items()) or "all calls"
    period = f"rolling {view['rolling_days']} days" if view["rolling_days"] else view["period"]
    reached = ", ".join(f"{t}%" for t in view["thresholds_reached"]) or "none"
    click.echo(
        f"budget {view['name']}\n"
        f"  scope      {scope}\n"
        f"  period     {period}: {view['window_text']}\n"
        f"  limit      ${view['amount_usd']:,.2f} of API billing (subscriptions do not count)\n"
        f"  spent      ${view['spent_usd']:,.2f} ({view['percent']}%)\n"
        f"  thresholds {', '.join(f'{t}%' for t in view['thresholds'])}; reached: {reached}\n"
        f"  action     {view['action']}; state {view['state']}"
        + (f" ({view['hold']})" if view["hold"] else "")
        + f"\n  forecast   {view['forecast_text']}"
    )


@budget.command("pause")
@click.argument("name")
@pass_context
def pause(ctx: Context, name: str) -> None:
    """Stop a budget from blocking until `budget resume` (it still counts and alerts)."""
    _find(ctx, name)
    holds = read_holds(ctx.paths.home)
    if name not in holds["paused"]:
        holds["paused"].append(name)
    write_holds(ctx.paths.home, holds)
    click.echo(
        f"budget {name!r} paused: it blocks nothing until `halton-meter budget resume {name}`"
    )


@budget.command("resume")
@click.argument("name")
@pass_context
def resume(ctx: Context, name: str) -> None:
    """Undo `pause` and any `allow`."""
    _find(ctx, name)
    holds = read_holds(ctx.paths.home)
    holds["paused"] = [n for n in holds["paused"] if n != name]
    holds["allow_until"].pop(name, None)
    write_holds(ctx.paths.home, holds)
    click.echo(f"budget {name!r} resumed")


def _duration(value: str) -> float:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", value.strip())
    if not found:
        raise click.BadParameter("a duration like 30m, 1h or 2d", param_hint="--for")
    return float(found.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]


@budget.command("allow")
@click.argument("name")
@click.option("--for", "for_", default="1h", show_default=True, help="How long: 30m, 1h, 2d.")
@pass_context
def allow(ctx: Context, name: str, for_: str) -> None:
    """Let calls through a blocking budget for a while."""
    _find(ctx, name)
    until = time.time() + _duration(for_)
    holds = read_holds(ctx.paths.home)
    holds["allow_until"][name] = until
    write_holds(ctx.paths.home, holds)
    click.echo(
        f"budget {name!r} lets calls through until "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(until))}"
    )


COMMANDS = [budget]
