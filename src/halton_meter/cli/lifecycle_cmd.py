"""`init`, `start`, `stop`, `restart`, `status`, `uninstall`: the meter as a background service.

Exit codes: `init` 0 set up and self-tested, 1 a step failed (what it changed was put back);
`status` 0 healthy, 1 degraded (the edge tunnels, nothing is metered), 2 down.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from halton_meter import __version__
from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.cli.budget_cmd import budget_status
from halton_meter.cli.quota_cmd import status_warnings
from halton_meter.lifecycle import install, this_os
from halton_meter.lifecycle.ports import effective_config
from halton_meter.lifecycle.supervisor import (
    DAEMON,
    EDGE,
    NO_MANAGER,
    BackgroundSupervisor,
    SupervisorError,
    launcher,
    running_pid,
)
from halton_meter.runstate import DRAIN_FILE, read_state

STEPS = (
    "home",
    "snapshot",
    "clean",
    "ca",
    "ports",
    "shell",
    "statusline",
    "units",
    "start",
    "self-test",
)
MARKS = {
    "ok": "[green]✓[/]",
    "changed": "[cyan]✓[/]",
    "skipped": "[dim]-[/]",
    "failed": "[red]✗[/]",
}


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of progress.")
@click.option(
    "--apps",
    is_flag=True,
    help="Also export the proxy and CA variables to new shells (~/.bashrc, ~/.zshrc, "
    "~/.profile, fish's config.fish).",
)
@click.option("--no-shell-rc", is_flag=True, help="With --apps: leave the shell files alone.")
@click.option(
    "--non-interactive",
    is_flag=True,
    help="Ask nothing (the default when not on a terminal): proceed, and only advise.",
)
@click.option(
    "--clean",
    is_flag=True,
    help="Start from a clean slate: stop both processes, remove the generated files and shell "
    "blocks, choose the ports anew. Keeps the ledger, config, CA and snapshot.",
)
@pass_context
def init(
    ctx: Context, as_json: bool, apps: bool, no_shell_rc: bool, non_interactive: bool, clean: bool
) -> None:
    """Set up and start the meter: CA, ports, services, self-test (with --apps, also the proxy
    and CA variables for new shells).

    Safe to run again at any time (after an upgrade, it points the services at the new
    executable); a second run changes nothing when nothing changed.
    """
    console = _err()
    # Plain `init` changes no shell file; `--apps` adds the marked block (issue 4).
    shell_rc = apps and not no_shell_rc
    steps = [s for s in STEPS if (clean or s != "clean") and (shell_rc or s != "statusline")]
    interactive = not (non_interactive or as_json) and sys.stdin.isatty() and sys.stderr.isatty()
    status = console.status("Setting up Halton Meter…")

    def confirm(question: str) -> bool:
        status.stop()  # the spinner would overwrite the question
        try:
            return click.confirm(question, default=True, err=True)
        finally:
            status.start()

    def progress(step: str, outcome: str, detail: str) -> None:
        if not as_json:
            number = steps.index(step) + 1 if step in steps else 0
            mark = MARKS.get(outcome, "?")
            console.print(
                f"{mark} [bold]{number}/{len(steps)} {step}[/]: {escape(detail)}", soft_wrap=True
            )

    def run(report: install.Progress) -> install.InitResult:
        return install.run_init(
            ctx.config,
            ctx.paths,
            shell_rc=shell_rc,
            clean=clean,
            confirm=confirm if interactive else None,
            progress=report,
            no_shell_rc=apps and no_shell_rc,
        )

    if as_json:
        result = run(install.no_progress)
    else:
        with status:
            result = run(progress)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    elif result.error is None:
        ports = result.ports
        port = ports.proxy_port if ports else "?"
        console.print(
            f"[green]Halton Meter is running[/]: proxy http://127.0.0.1:{port}. "
            f"{escape(next_step(result))} `halton-meter status` checks it."
        )
    else:
        console.print(f"[red]init failed[/] at {escape(result.error)}", soft_wrap=True)
        if result.restored:
            restored = ", ".join(result.restored)
            console.print(f"Put back as they were: {escape(restored)}", soft_wrap=True)
    sys.exit(0 if result.error is None else EXIT_FAILURE)


def next_step(result: install.InitResult) -> str:
    """What to do so tools use the meter: only a shell step that wrote or kept variables
    means a new shell picks them up (issue 16: a plain init writes no shell file)."""
    shell_step = next((s for s in result.steps if s["step"] == "shell"), None)
    if shell_step is not None and shell_step["outcome"] != "skipped":
        return "Open a new shell (or start your apps again) so your tools use it."
    return (
        "No shell file was changed: meter a command with `halton-meter run -- CMD`, or run "
        "`halton-meter init --apps` so new shells use the proxy."
    )


def _start(ctx: Context) -> None:
    config = effective_config(ctx.config, ctx.paths)
    alone = install.standalone_daemon(ctx.paths)
    if alone is not None:
        click.echo(
            f"halton-meter: {install.standalone_words(alone)}: it already meters. To run the "
            "meter as a service instead, run `halton-meter init` (it takes over from it).",
            err=True,
        )
        return
    supervisor = this_os.supervisor()
    if supervisor.kind == "background":
        click.echo(f"halton-meter: {NO_MANAGER}.", err=True)
    try:
        for component in (EDGE, DAEMON):
            pid = supervisor.start(component, ctx.paths)
            click.echo(f"{component.name} running (pid {pid})", err=True)
        if isinstance(supervisor, BackgroundSupervisor) and supervisor.kind == "background":
            pid = supervisor.ensure_guard(ctx.paths)
            click.echo(f"guard running (pid {pid}): respawns a crashed edge or daemon", err=True)
    except SupervisorError as error:
        click.echo(f"halton-meter: {error}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(
        f"Metering through http://127.0.0.1:{config.daemon.proxy_port}.",
        err=True,
    )


@click.command()
@pass_context
def start(ctx: Context) -> None:
    """Start the edge (if it is not running) and the daemon."""
    _start(ctx)


def _drained(ctx: Context, pid: int | None) -> str:
    """What the stopped daemon (pid) waited for, from the report it wrote at the end of its
    drain; empty when it wrote none (an older release, or killed)."""
    report = read_state(ctx.paths.home / DRAIN_FILE)
    if pid is None or report is None or report.get("pid") != pid:
        return ""
    calls, seconds, cut = report.get("calls", 0), report.get("seconds", 0.0), report.get("cut", 0)
    if not calls:
        return "no call was in flight"
    waited = f"waited {seconds:.1f} s for {calls} call{'s' if calls != 1 else ''} in flight"
    if cut:
        limit = report.get("limit", 0.0)
        return f"{waited}; {cut} still running after {limit:g} s were cut (recorded as cut)"
    return f"{waited}; all finished"


@click.command()
@pass_context
def stop(ctx: Context) -> None:
    """Stop the daemon, after the calls in flight finish (up to [daemon] drain_seconds); the
    edge keeps tunnelling, unmetered, so no client breaks."""
    supervisor = this_os.supervisor()
    alone = install.standalone_daemon(ctx.paths)
    if alone is not None:
        BackgroundSupervisor().stop(DAEMON, ctx.paths)
        click.echo(
            f"the standalone daemon (pid {alone['pid']}) stopped: nothing listens on "
            f"127.0.0.1:{alone['listen_port']} now.",
            err=True,
        )
        return
    pid = running_pid(DAEMON, ctx.paths)
    try:
        was = supervisor.stop(DAEMON, ctx.paths)
    except SupervisorError as error:
        click.echo(f"halton-meter: {error}", err=True)
        sys.exit(EXIT_FAILURE)
    drained = _drained(ctx, pid)
    click.echo(
        (f"daemon stopped ({drained})" if was and drained else "daemon stopped")
        if was
        else "the daemon was not running",
        err=True,
    )
    click.echo(
        "The edge keeps tunnelling (passthrough, nothing metered). "
        "`halton-meter start` resumes metering.",
        err=True,
    )


@click.command()
@pass_context
def restart(ctx: Context) -> None:
    """Restart the daemon without a gap (and start the edge if it is not running): in
    background mode the new daemon takes the listening socket over before the old one stops
    taking connections; the old one then finishes its calls in flight."""
    supervisor = this_os.supervisor()
    pid = running_pid(DAEMON, ctx.paths)
    try:
        if (
            pid is not None
            and isinstance(supervisor, BackgroundSupervisor)
            and (supervisor.kind == "background")
        ):
            new = supervisor.replace(DAEMON, ctx.paths)
            drained = _drained(ctx, pid)
            click.echo(
                f"daemon restarted (pid {pid} -> {new})"
                + (f"; the old one {drained}" if drained else ""),
                err=True,
            )
        else:
            supervisor.stop(DAEMON, ctx.paths)
            drained = _drained(ctx, pid)
            if drained:
                click.echo(f"daemon stopped ({drained})", err=True)
    except SupervisorError as error:
        click.echo(f"halton-meter: {error}", err=True)
        sys.exit(EXIT_FAILURE)
    _start(ctx)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Is the meter running? Exit 0 healthy, 1 degraded (edge up, daemon down), 2 down."""
    supervisor = this_os.supervisor()
    report = install.status(ctx.config, ctx.paths, supervisor.kind)
    report["quota_warnings"] = status_warnings(ctx.paths.ledger, ctx.config.quota_warn_at)
    report["budgets"] = budget_status(ctx)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        sys.exit(report["exit_code"])
    console = Console(highlight=False)
    colour = {"healthy": "green", "degraded": "yellow", "down": "red"}[report["state"]]
    console.print(f"Halton Meter {report['version']}: [{colour}]{report['state']}[/]")
    table = Table("component", "pid", "port", "health", "mode", "version")
    for name, part in report["components"].items():
        table.add_row(
            name,
            str(part["pid"] or "-"),
            str(part["port"]),
            "[dim]not used[/]"
            if part["healthy"] is None
            else "[green]up[/]"
            if part["healthy"]
            else "[red]down[/]",
            str(part["mode"] or "-"),
            str(part["version"] or "-"),
        )
    console.print(table)
    guard = report.get("guard")
    if guard is not None:
        respawned = ", ".join(
            f"{name} {part['respawns']} times"
            + (" (crash loop)" if part["crash_loop"] else "")
            + (f" (back in {part['last_back_seconds']} s)" if part["last_back_seconds"] else "")
            for name, part in guard["components"].items()
        )
        ready = [name for name, part in guard["components"].items() if part["standby_ready"]]
        if ready:
            respawned += f"; standby ready: {', '.join(ready)}"
        console.print(
            f"Guard: pid {guard['pid']}, respawned {respawned}"
            if guard["running"]
            else "[yellow]Guard: not running[/]: a crashed edge or daemon stays down; "
            "`halton-meter start` starts it"
        )
    console.print(f"Rows recorded today: {report['rows_today']}")
    if report["ledger_problem"]:
        console.print(f"[red]Not recorded:[/] {escape(report['ledger_problem']['why'])}")
        console.print(f"fix: {escape(report['ledger_problem']['fix'])}")
    for line in report["quota_warnings"]:
        console.print(f"[yellow]Quota warning:[/] {line}")
    for line in report["budgets"]["lines"]:
        console.print(f"Budget {line}")
    gaps = report["unmetered"]
    for hole in gaps["recorded"]:
        console.print(f"[yellow]Not metered today: {hole['text']}[/]")
    for target, count in gaps["spooled"].items():
        plural = "" if count == 1 else "s"
        console.print(
            f"[yellow]Not metered: {count} connection{plural} to {target}, "
            "stored in the ledger when the daemon runs[/]"
        )
    live = (gaps["edge"] or {}).get("open")
    if live:
        console.print(f"[yellow]Open unmetered connections right now: {live}[/]")
    reconciled = report.get("reconcile")
    if reconciled and reconciled.get("line"):
        alert = any(
            isinstance(p, dict) and (p.get("alert") or p.get("error"))
            for p in (reconciled.get("providers") or {}).values()
        )
        colour = "yellow" if alert else "default"
        console.print(
            f"[{colour}]Reconcile ({reconciled['checked_at'][:16]}Z): "
            f"{escape(reconciled['line'])}[/]"
        )
    if report["note"]:
        console.print(report["note"])
    if report["state"] == "degraded":
        console.print("The edge tunnels unmetered; `halton-meter start` resumes metering.")
    elif report["state"] == "down":
        console.print("Clients using the proxy fail now: run `halton-meter start`.")
    sys.exit(report["exit_code"])


@click.command()
@click.option("--purge", is_flag=True, help="Also delete the home's files; keeps ledger and logs.")
@click.option(
    "--include-logs", is_flag=True, help="With --purge: delete the ledger and the logs too."
)
@click.option("--graceful", is_flag=True, help="Leave the edge tunnelling until it stops.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def uninstall(ctx: Context, purge: bool, include_logs: bool, graceful: bool, yes: bool) -> None:
    """Stop the meter and undo `init`: services, shell variables; keeps the ledger."""
    if include_logs and not purge:
        raise click.UsageError("--include-logs goes with --purge")
    if purge and include_logs and not yes:
        click.confirm(f"Delete {ctx.paths.home}, with every recorded call?", abort=True)
    result = install.run_uninstall(
        ctx.paths, purge=purge, include_logs=include_logs, graceful=graceful
    )
    for line in [*(f"stopped {n}" for n in result["stopped"])] + [
        f"removed {r}" for r in result["removed"]
    ]:
        click.echo(line, err=True)
    if not (purge and include_logs):
        click.echo(f"The ledger stays in {ctx.paths.ledger}.", err=True)
    if graceful:
        click.echo(
            "The edge keeps tunnelling until it is stopped or the machine restarts.", err=True
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--fix", "fix", is_flag=True, help="Apply the safe fixes, then check again.")
@pass_context
def doctor(ctx: Context, as_json: bool, fix: bool) -> None:
    """Check the installation; each failure comes with one command that fixes it.

    Exit 0 HEALTHY, 1 INCONSISTENT (traffic flows, something drifted or is not metered),
    2 BROKEN (clients fail or nothing can be recorded). With --fix, the verdict is the one
    after the fixes.
    """
    from halton_meter import doctor as checks

    found = checks.run_checks(ctx.config, ctx.paths)
    repairs: list[checks.Repair] = []
    if fix:
        repairs, found = checks.fix_and_verify(ctx.config, ctx.paths, found)
    verdict = checks.verdict(found)
    code = checks.EXIT_CODES[verdict]
    if as_json:
        report: dict[str, object] = {
            "verdict": verdict,
            "exit_code": code,
            "version": __version__,
            "executable": launcher()[0],
            "home": str(ctx.paths.home),
            "checks": [c.as_json() for c in found],
        }
        if fix:
            report["fixes"] = [r.as_json() for r in repairs]
        click.echo(json.dumps(report, indent=2))
        sys.exit(code)
    console = Console(highlight=False)
    for repair in repairs:
        mark = "[green]fixed[/]" if repair.outcome == "fixed" else "[red]fix failed[/]"
        console.print(f"{mark} {escape(repair.check)}: {escape(repair.detail)}", soft_wrap=True)
    colours = {"ok": "green", "inconsistent": "yellow", "broken": "red"}
    for check in found:
        colour = colours[check.severity]
        console.print(
            f"[{colour}]{check.severity:>12}[/] {escape(check.name)}: {escape(check.detail)}",
            soft_wrap=True,
        )
        if check.fix:
            auto = " (doctor --fix does this)" if check.repair and not fix else ""
            console.print(f"{'fix:':>12} {escape(check.fix)}{auto}", soft_wrap=True)
    colour = {"HEALTHY": "green", "INCONSISTENT": "yellow", "BROKEN": "red"}[verdict]
    console.print(f"[bold {colour}]{verdict}[/]")
    sys.exit(code)


COMMANDS = [init, start, stop, restart, status, uninstall, doctor]
