"""`halton-meter run -- CMD`: run one command with its LLM traffic metered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import click

from halton_meter.cli import EXIT_NOT_RUNNING, Context, pass_context
from halton_meter.lifecycle.ca import write_client_bundle
from halton_meter.lifecycle.environment import meter_environment
from halton_meter.lifecycle.ports import effective_config, listening, read_effective
from halton_meter.slugs import is_slug, not_a_slug


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--project", "-p", help="Record the calls under this project.")
@click.option(
    "--allow-unmetered",
    is_flag=True,
    help="Run the command anyway, unmetered, when the meter is not running.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_context
def run(ctx: Context, project: str | None, allow_unmetered: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND with the proxy and CA variables set, so its LLM calls are metered.

    Exits with COMMAND's exit code.  Example: halton-meter run -p acme -- python agent.py
    """
    config = ctx.config
    if project is not None and not is_slug(project):
        raise click.BadParameter(not_a_slug(project), param_hint="--project")
    port = effective_config(config, ctx.paths).daemon.proxy_port  # effective-ports.json wins
    env = dict(os.environ)
    if listening(port):
        bundle = ctx.paths.ca_bundle
        if not bundle.exists():
            bundle = write_client_bundle(config, ctx.paths)
        env = meter_environment(os.environ, port, bundle, project)
    elif allow_unmetered:
        click.echo("halton-meter: the meter is not running; running unmetered.", err=True)
    else:
        start = (
            "Start it with `halton-meter start`"
            if read_effective(ctx.paths) is not None  # init set it up as a service
            else "Set it up and start it with `halton-meter init` (or run `halton-meter daemon` "
            "in another terminal)"
        )
        click.echo(
            f"halton-meter: the meter is not running on 127.0.0.1:{port}.\n"
            f"{start}, or add --allow-unmetered to run unmetered.",
            err=True,
        )
        sys.exit(EXIT_NOT_RUNNING)
    executable = shutil.which(command[0], path=env.get("PATH"))
    if executable is None:
        click.echo(f"halton-meter: command not found: {command[0]}", err=True)
        sys.exit(127)
    if os.name == "nt":  # no exec on Windows: wait and pass the exit code on
        sys.exit(subprocess.call([executable, *command[1:]], env=env))
    # exec: the command takes this process over, so its exit code and every signal are its own.
    os.execve(executable, [command[0], *command[1:]], env)


COMMANDS = [run]
