"""`halton-meter edge`: the always-on relay on the proxy port, in the foreground."""

from __future__ import annotations

import sys

import click

from halton_meter.cli import EXIT_FAILURE, Context, pass_context


@click.command()
@pass_context
def edge(ctx: Context) -> None:
    """Run the edge on the proxy port (Ctrl-C or SIGTERM stops it cleanly).

    LLM hosts are handed to the daemon for metering while it is healthy; everything else,
    and everything while the daemon is down, is tunnelled unmetered, so clients never break.
    """
    from halton_meter.edge import EdgeSettings, EdgeStartError, run_edge
    from halton_meter.lifecycle.ports import effective_config

    settings = EdgeSettings.from_config(effective_config(ctx.config, ctx.paths), ctx.paths)
    try:
        code = run_edge(settings)
    except EdgeStartError as error:
        click.echo(f"halton-meter edge: {error}", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(code)


COMMANDS = [edge]
