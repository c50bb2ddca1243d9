"""The `halton-meter` command: a thin layer that parses arguments, calls a part, renders.

Exit codes (docs/cli.md): 0 success, 1 failure at run time, 2 bad usage, 3 invalid config.toml,
4 the meter is not running (`run` without --allow-unmetered). `run` exits with its command's code.
"""

from __future__ import annotations

import sys

import click

from halton_meter import __version__
from halton_meter.config import Config, ConfigError, load_config
from halton_meter.paths import Paths, resolve_paths

EXIT_FAILURE = 1
EXIT_CONFIG = 3
EXIT_NOT_RUNNING = 4


class Context:
    """Loaded lazily so `--help` and `--version` work with a broken config."""

    def __init__(self) -> None:
        self.paths: Paths = resolve_paths()
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.paths)
            except ConfigError as error:
                click.echo(f"halton-meter: invalid config: {error}", err=True)
                click.echo("Fix the key named above, then run the command again.", err=True)
                sys.exit(EXIT_CONFIG)
        return self._config


pass_context = click.make_pass_decorator(Context, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="halton-meter")
@click.pass_context
def cli(click_context: click.Context) -> None:
    """Halton Meter: see where your LLM API money goes."""
    # Every command validates config.toml first, so a typo is reported wherever it is noticed.
    _ = click_context.ensure_object(Context).config


def main() -> None:
    from halton_meter.cli import (
        cloud_cmd,
        daemon_cmd,
        edge_cmd,
        lifecycle_cmd,
        pricing_cmd,
        projects_cmd,
        report_cmd,
        run_cmd,
        server_cmd,
    )

    modules = (daemon_cmd, edge_cmd, run_cmd, report_cmd, pricing_cmd, lifecycle_cmd)
    for module in (*modules, projects_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)
    for module in (cloud_cmd, server_cmd):  # the team server (issue 8)
        for command in module.COMMANDS:
            cli.add_command(command)
    cli(prog_name="halton-meter")
