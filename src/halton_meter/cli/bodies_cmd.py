"""`halton-meter show ID` and `halton-meter capture status|purge`: captured bodies (opt-in
per project, bodies/). Read the files directly; no daemon needed."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from halton_meter.bodies.store import BodyStore
from halton_meter.bodies.view import call_view
from halton_meter.cli import EXIT_FAILURE, Context, pass_context
from halton_meter.cli.report_cmd import _open_ledger


@click.command()
@click.argument("call_id")
@click.option("--body", is_flag=True, help="Also show the captured conversation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def show(ctx: Context, call_id: str, body: bool, as_json: bool) -> None:
    """One call: its tokens and cost, and with --body what it asked and answered."""
    store = BodyStore(ctx.paths.bodies)
    with _open_ledger(ctx) as con:
        view = call_view(con, store, call_id, with_body=body)
    store.close()
    if view is None:
        click.echo(f"halton-meter: no call {call_id} in the ledger", err=True)
        sys.exit(EXIT_FAILURE)
    if as_json:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    click.echo(f"{view['id']}  {view['requested_at']}  {view['project']}")
    click.echo(f"{view['provider']} {view['api']} {view['model']}  {view['status']}")
    tokens = (
        f"input {view['input_tokens']}  cache read {view['cache_read_tokens']}  "
        f"cache write {view['cache_write_tokens']}  output {view['output_tokens']}"
    )
    click.echo(f"tokens: {tokens}  cost: {view['cost_usd'] or 'unpriced'} USD")
    if not body:
        if view["body_captured"]:
            click.echo("body captured: show it with --body")
        return
    found = view.get("body")
    if found is None:
        click.echo("no body captured (capture is opt-in per project: docs/body-capture.md)")
        return
    for turn in found["conversation"]:
        click.echo(f"\n--- {turn['role']} ---\n{turn['text']}")
    message = found.get("message") or {}
    for part in message.get("parts", []):
        if part["type"] == "tool_call":
            click.echo(
                f"\n--- assistant tool call: {part.get('name')} ---\n{part.get('arguments')}"
            )
        else:
            click.echo(f"\n--- assistant {part['type']} ---\n{part.get('text')}")
    if found["redactions"]:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(found["redactions"].items()))
        click.echo(f"\nredacted: {kinds}")
    if found["truncated"]:
        click.echo(f"truncated by the caps: {found['truncated']}")


@click.group()
def capture() -> None:
    """Opt-in body capture: which projects capture, what is stored, purge."""


@capture.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def capture_status(ctx: Context, as_json: bool) -> None:
    """Which projects capture (config.toml; .haltonrc files say so per folder) and how much
    is stored."""
    settings = ctx.config.body_capture
    store = BodyStore(ctx.paths.bodies)
    stored = store.usage()
    store.close()
    payload = {
        "rules": [
            {"project": r.project, "model": r.model, "provider": r.provider} for r in settings.rules
        ],
        "haltonrc": "a folder's .haltonrc with body_capture = on captures its calls",
        "max_call_bytes": settings.max_call_bytes,
        "max_project_bytes": settings.max_project_bytes,
        "retention_days": settings.retention_days,
        "raw_events": settings.raw_events,
        "file": str(ctx.paths.bodies),
        "stored": stored,
    }
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    if settings.rules:
        for rule in settings.rules:
            extra = "".join(
                f" {k}={v}" for k, v in (("model", rule.model), ("provider", rule.provider)) if v
            )
            click.echo(f"captures: project {rule.project}{extra}  ([[capture]] in config.toml)")
    else:
        click.echo("config.toml: no [[capture]] entries")
    click.echo("a .haltonrc with body_capture = on captures the calls from its folder")
    click.echo(
        f"limits: {settings.max_call_bytes // 1024} KiB per call, "
        f"{settings.max_project_bytes // (1024 * 1024)} MiB per project, "
        f"kept {settings.retention_days:g} days"
    )
    if not stored:
        click.echo("stored: nothing")
    for entry in stored:
        click.echo(
            f"stored: {entry['project']}: {entry['bodies']} bodies, "
            f"{entry['stored_bytes']} bytes, {entry['oldest']} .. {entry['newest']}"
        )


@capture.command("purge")
@click.option("--project", default=None, help="Only this project's bodies.")
@click.option("--before", default=None, help="Only bodies of calls before this date (UTC).")
@pass_context
def capture_purge(ctx: Context, project: str | None, before: str | None) -> None:
    """Delete captured bodies (all of them without options)."""
    if before is not None:
        try:
            moment = datetime.fromisoformat(before)
        except ValueError:
            raise click.BadParameter(
                "expected a date like 2026-01-31", param_hint="--before"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        before = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    store = BodyStore(ctx.paths.bodies)
    count = store.purge(project=project, before=before)
    store.close()
    click.echo(f"purged {count} bodies")


COMMANDS = [show, capture]
