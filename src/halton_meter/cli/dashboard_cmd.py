"""`halton-meter dashboard`: open the daemon's built-in dashboard in the browser."""

from __future__ import annotations

import json
import sys

import click

from halton_meter.cli import EXIT_FAILURE, EXIT_NOT_RUNNING, Context, pass_context
from halton_meter.lifecycle.ports import effective_config


def _api_answers(port: int) -> bool:
    import urllib.request  # not at module level: every command would pay for it

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return bool(json.loads(answer.read()).get("status") == "ok")
    except (OSError, ValueError):
        return False


@click.command()
@click.option("--print-url", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--json", "as_json", is_flag=True, help="Print the URL and state as JSON.")
@pass_context
def dashboard(ctx: Context, print_url: bool, as_json: bool) -> None:
    """Open the dashboard served by the daemon (http://127.0.0.1:8765/).

    The URL carries the per-install token after `#`, which the browser never sends to a server;
    the page keeps it to sign the few requests that change something (re-pricing)."""
    from halton_meter.api.security import load_or_create_token

    config = effective_config(ctx.config, ctx.paths)
    port = config.daemon.api_port
    base = f"http://127.0.0.1:{port}/"
    try:
        token = load_or_create_token(ctx.paths)
    except (OSError, ValueError) as error:
        click.echo(f"halton-meter: cannot read the API token: {error}", err=True)
        sys.exit(EXIT_FAILURE)
    url = f"{base}#token={token}"
    running = _api_answers(port)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "url": url,
                    "api_url": base,
                    "running": running,
                    "token_file": str(ctx.paths.api_token),
                },
                indent=2,
            )
        )
    elif print_url:
        click.echo(url)
    if not running:
        if not as_json:
            click.echo(
                f"halton-meter: nothing answers on {base}; start the meter with "
                "`halton-meter start` (or `halton-meter daemon`).",
                err=True,
            )
        sys.exit(EXIT_NOT_RUNNING)
    if as_json or print_url:
        return
    import webbrowser

    if not webbrowser.open(url):
        click.echo(f"Open {url} in your browser.")
        return
    click.echo(f"Opened {base} in your browser.", err=True)


COMMANDS = [dashboard]
