"""`halton-meter daemon`: the metering proxy in the foreground."""

from __future__ import annotations

import asyncio
import os
import sys

import click

from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.lifecycle.ports import effective_config
from halton_meter.logs import log_path, setup_process_logging
from halton_meter.runstate import DAEMON_TAKE_OVER_ENV


@click.command()
@click.option(
    "--behind-edge",
    is_flag=True,
    help="Listen on [daemon] internal_port, for `halton-meter edge` to hand connections to.",
)
@pass_context
def daemon(ctx: Context, behind_edge: bool) -> None:
    """Run the metering proxy in the foreground (Ctrl-C or SIGTERM stops it cleanly)."""
    config = effective_config(ctx.config, ctx.paths)  # effective-ports.json wins
    setup_process_logging("daemon", log_path(ctx.paths.logs, "daemon"), config.daemon.log_level)
    if behind_edge:  # clients never connect here: the edge hands their LLM calls over
        click.echo(
            f"Halton Meter daemon behind the edge on 127.0.0.1:{config.daemon.internal_port} "
            f"(internal); clients use the edge's proxy http://127.0.0.1:"
            f"{config.daemon.proxy_port}. Ledger {ctx.paths.ledger}.",
            err=True,
        )
    else:
        click.echo(
            f"Halton Meter proxy on http://127.0.0.1:{config.daemon.proxy_port}, ledger "
            f"{ctx.paths.ledger}. Use `halton-meter run -- CMD` in another shell.",
            err=True,
        )
    # mitmproxy loads in ~0.7 s: only the daemon pays for it, not every CLI command. Only the
    # addons the daemon uses are loaded (capture/slim.py).
    from halton_meter.capture.slim import load_addons_on_demand

    load_addons_on_demand()
    from halton_meter.capture.daemon import StartupError, run_daemon

    try:
        # Set by the supervisor only, when it replaces a running daemon (restart, upgrade).
        take_over = os.environ.get(DAEMON_TAKE_OVER_ENV) == "1"
        code = asyncio.run(
            run_daemon(config, ctx.paths, behind_edge=behind_edge, take_over=take_over)
        )
    except StartupError as error:
        click.echo(f"halton-meter: {error}", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(code)


COMMANDS = [daemon]
