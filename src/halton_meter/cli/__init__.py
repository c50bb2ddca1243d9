"""The `halton-meter` command: a thin layer that parses arguments, calls a part, renders.

Exit codes (docs/cli.md): 0 success, 1 failure at run time, 2 bad usage, 3 invalid config.toml,
4 the meter is not running (`run` without --allow-unmetered). `run` exits with its command's code.
"""

from __future__ import annotations

import importlib
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


class _LazyGroup(click.Group):
    """Imports a command's module when that command is asked for (or when help lists them
    all), so `report` does not pay for importing asyncio, the lifecycle parts or the catalogue
    (about 250 ms: bench/api.py)."""

    modules: tuple[str, ...] = ()

    def _load(self, module: str) -> None:
        loaded = importlib.import_module(f"halton_meter.cli.{module}")
        for command in loaded.COMMANDS:
            if command.name not in self.commands:
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in self.modules:
            self._load(module)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in self.modules:
            found = super().get_command(ctx, cmd_name)
            if found is not None:
                return found
            self._load(module)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="halton-meter")
@click.pass_context
def cli(click_context: click.Context) -> None:
    """Halton Meter: see where your LLM API money goes."""
    # Every command validates config.toml first, so a typo is reported wherever it is noticed.
    _ = click_context.ensure_object(Context).config


def main() -> None:
    # Modules of commands (each exposes COMMANDS); the cheap, frequent ones first, after the
    # ones a guard respawns (the edge must be up within a second, the daemon within five: no
    # other command's imports on their way).
    cli.modules = (
        "edge_cmd",
        "daemon_cmd",
        "guard_cmd",
        "report_cmd",
        "prcost_cmd",  # issue 19
        "run_cmd",
        "dashboard_cmd",
        "projects_cmd",
        "quota_cmd",
        "budget_cmd",
        "pricing_cmd",
        "reconcile_cmd",  # the ledger against the providers' reports (issue 23)
        "lifecycle_cmd",
        "cloud_cmd",  # the team server (issue 8)
        "teamserver_cmd",
        "bodies_cmd",  # show, capture (issue 22)
    )
    cli(prog_name="halton-meter")
