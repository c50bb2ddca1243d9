"""`halton-meter guard`: respawns a crashed edge or daemon in background mode (guard.py)."""

from __future__ import annotations

import sys

import click

from halton_meter.cli import Context, pass_context


@click.command(hidden=True)
@pass_context
def guard(ctx: Context) -> None:
    """Watch the edge and the daemon the background supervisor started; respawn either when
    it dies (the edge at once, the daemon at once then with back-off). Started by `init` and
    `start` where no systemd user manager runs."""
    from halton_meter.guard import run_guard

    sys.exit(run_guard(ctx.paths.home, ctx.paths.logs))


COMMANDS = [guard]
