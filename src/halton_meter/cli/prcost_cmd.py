"""`halton-meter pr-cost`: what the work on a git branch cost, for a pull request or CI; and
`statusline`'s entry in the command table (launch.py runs it before click; this one serves
`--help` listings and `python -m halton_meter statusline`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import click

from halton_meter.attribution.folder import folder_project
from halton_meter.attribution.gitrefs import git_root, read_head
from halton_meter.cli import Context, pass_context
from halton_meter.cli.report_cmd import _open_ledger
from halton_meter.ledger.branches import BranchCost, Cost, branch_cost
from halton_meter.money import DisplayCurrency, usd_string
from halton_meter.statusline import main as statusline_main


def _branch_commits(root: Path, branch: str, base: str) -> list[str] | None:
    """The branch's own commits (`git rev-list BASE..BRANCH`); None when git cannot say. A
    command, not the hot path: a subprocess is fine here."""
    try:
        done = subprocess.run(
            ["git", "rev-list", f"{base}..{branch}", "--"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.split()


def _cost_json(cost: Cost) -> dict[str, Any]:
    return {
        "requests": cost.requests,
        "cost_nanousd": cost.cost_nanousd,
        "cost_usd": usd_string(cost.cost_nanousd),
        "subscription_value_nanousd": cost.subscription_value_nanousd,
        "subscription_value_usd": usd_string(cost.subscription_value_nanousd),
        "unpriced_requests": cost.unpriced_requests,
        "input_tokens": cost.input_tokens,
        "output_tokens": cost.output_tokens,
    }


def _as_json(result: BranchCost, base: str) -> dict[str, Any]:
    return {
        "branch": result.branch,
        "base": base,
        "project": result.project,
        "first_at": result.first_at,
        "last_at": result.last_at,
        "commits": result.commits,
        "total": _cost_json(result.total),
        "by_model": [{"model": k, **_cost_json(v)} for k, v in result.by_model.items()],
        "by_client": [{"client": k, **_cost_json(v)} for k, v in result.by_client.items()],
    }


def _money(cost: Cost, display: DisplayCurrency) -> str:
    text = display.format(cost.cost_nanousd)
    if cost.unpriced_requests:
        text += "*"
    if cost.subscription_value_nanousd:
        text += f" (+{display.format(cost.subscription_value_nanousd)} subscription value)"
    return text


def _markdown(result: BranchCost, display: DisplayCurrency) -> str:
    where = f" in `{result.project}`" if result.project else ""
    lines = [f"### LLM cost of `{result.branch}`{where}", ""]
    for title, groups in (("model", result.by_model), ("client", result.by_client)):
        lines += [f"| {title} | calls | cost |", "|---|---:|---:|"]
        lines += [
            f"| {name} | {c.requests:,} | {_money(c, display)} |" for name, c in groups.items()
        ]
        lines.append("")
    lines.append(
        f"**Total: {_money(result.total, display)}** over {result.total.requests:,} calls"
        + (
            f", {result.first_at[:10]} to {result.last_at[:10]}"
            if result.first_at and result.last_at
            else ""
        )
        + "."
    )
    if result.total.unpriced_requests:
        lines.append("")
        lines.append(f"\\* {result.total.unpriced_requests:,} calls have no known price.")
    lines.append("")
    lines.append("<sub>Measured by Halton Meter (`halton-meter pr-cost`).</sub>")
    return "\n".join(lines) + "\n"


def _plain(result: BranchCost, display: DisplayCurrency) -> str:
    lines = [f"Branch {result.branch}" + (f", project {result.project}" if result.project else "")]
    for title, groups in (("by model", result.by_model), ("by client", result.by_client)):
        lines.append(f"  {title}:")
        width = max((len(name) for name in groups), default=0)
        lines += [
            f"    {name:<{width}}  {c.requests:>6,} calls  {_money(c, display)}"
            for name, c in groups.items()
        ]
    lines.append(f"  total: {result.total.requests:,} calls, {_money(result.total, display)}")
    return "\n".join(lines) + "\n"


@click.command(name="pr-cost")
@click.argument("branch", required=False)
@click.option("--base", default="main", show_default=True, help="The branch it merges into.")
@click.option("--project", "-p", help="Only this project (default: the current folder's).")
@click.option("--markdown", "as_markdown", is_flag=True, help="A table for a PR description.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_context
def pr_cost(
    ctx: Context,
    branch: str | None,
    base: str,
    project: str | None,
    as_markdown: bool,
    as_json: bool,
) -> None:
    """What the work on a git branch cost: per model, per client, total."""
    if as_markdown and as_json:
        raise click.UsageError("use one of --markdown, --json")
    here = Path(os.getcwd())
    root = git_root(here)
    if branch is None:
        head = read_head(root) if root is not None else None
        if head is None or head.branch is None:
            raise click.UsageError("name a BRANCH (the current folder is not on a git branch)")
        branch = head.branch
    if branch == base:
        raise click.UsageError(f"{branch} is the base branch: name the branch of the work")
    if project is None and root is not None:
        project = folder_project(here, os.environ)
    commits = _branch_commits(root, branch, base) if root is not None else None
    with _open_ledger(ctx) as con:
        result = branch_cost(con, branch, project, commits)
    display = ctx.config.display
    if as_json:
        click.echo(json.dumps(_as_json(result, base), indent=2))
    elif as_markdown:
        click.echo(_markdown(result, display), nl=False)
    else:
        click.echo(_plain(result, display), nl=False)


@click.command(
    name="statusline",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def statusline(arguments: tuple[str, ...]) -> None:
    """One line of spend for Claude Code's status line or a shell prompt (docs/cli.md)."""
    raise SystemExit(statusline_main(list(arguments)))


COMMANDS = [pr_cost, statusline]
