"""`[reconcile]` in a real daemon: the scheduled run against the local fake's reports, its
result in `status`, `/metrics` and the dashboard (Debian's headless chromium, driven by
Playwright), its difference alerted through the budgets' channels (the daemon's log, a desktop
notification through a `notify-send` on the daemon's PATH, a webhook to a local receiver), and
the admin key, which only the daemon's environment held, nowhere under the home afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.apihelpers import Api
from tests.conftest import METER, FakeUpstream, Meter, start_meter, wait_for
from tests.test_reconcile import (
    ANTHROPIC_KEY,
    SONNET,
    dataset,
    days_ago,
    fill_ledger,
    provider_rows,
    reconcile_cli,
    set_reports,
)
from tests.webhooks import WebhookReceiver

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
DIFFERS = "anthropic: differs from the provider's report over the last 7 days"
MATCHES = "anthropic: matches the provider's report for the last 7 days"


@dataclass
class Scheduled:
    meter: Meter
    api: Api
    days: list[str]
    notified: Path
    hooks: WebhookReceiver


@pytest.fixture(scope="module")
def scheduled(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scheduled]:
    hooks = WebhookReceiver()
    root = tmp_path_factory.mktemp("reconcile-daemon")
    home = root / "home"
    home.mkdir()
    days = [days_ago(2), days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET], days)
    scale = {(days[0], SONNET): Decimal("1.05")}  # 5 % more at the provider on one day
    report = provider_rows("anthropic", days, [SONNET], scale=scale)
    set_reports(fake_upstream, dataset(anthropic=report))
    # The desktop boundary: a notify-send that writes down what it was asked to show.
    bin_dir = root / "bin"
    bin_dir.mkdir()
    notified = root / "notified.txt"
    tool = bin_dir / "notify-send"
    tool.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{notified}'\n")
    tool.chmod(0o755)
    config = f"""
[reconcile]
enabled = true
providers = ["anthropic"]
alert_above_usd = 0.001

[alerts]
webhook_url = "{hooks.url}"
webhook_format = "plain"
webhook_secret = "daemon-hook-secret"
desktop = true
"""
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {"ANTHROPIC_ADMIN_KEY": ANTHROPIC_KEY, "PATH": path}
    meter = start_meter(home, fake_upstream, extra_config=config, env_extra=env)
    try:
        # The first run comes 5 s after the start (FIRST_DELAY_SECONDS).
        wait_for(lambda: (home / "reconcile.json").exists(), 90, "the scheduled reconcile")
        yield Scheduled(meter, Api.of(meter), days, notified, hooks)
    finally:
        meter.stop()
        hooks.close()


def test_the_scheduled_difference_is_alerted_through_the_budget_channels(
    scheduled: Scheduled,
) -> None:
    wait_for(lambda: scheduled.hooks.received, 30, "the reconcile webhook")
    (body,) = scheduled.hooks.bodies()
    sent = json.loads(body)
    assert sent["event"] == "reconcile.difference" and sent["provider"] == "anthropic"
    assert sent["differences"] == [
        {"day": scheduled.days[0], "model": SONNET, "verdict": "ledger_has_less"}
    ]
    shown = wait_for(
        lambda: scheduled.notified.exists() and scheduled.notified.read_text(), 15, "notify-send"
    )
    assert "Halton Meter reconcile" in shown and "differs from the provider's report" in shown
    # The daemon's log (logs/daemon.jsonl): one warning line with the same message.
    lines = (scheduled.meter.home / "logs" / "daemon.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in lines if "Reconcile: " in line]
    assert [(e["level"], e["logger"]) for e in logged] == [("warning", "halton_meter.reconcile")]
    assert logged[0]["message"].startswith(
        "Reconcile: anthropic differs from the provider's report by $"
    )


def test_status_shows_the_scheduled_result(scheduled: Scheduled) -> None:
    env = scheduled.meter.run_env(COLUMNS="400")
    done = subprocess.run([METER, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert DIFFERS in done.stdout, done.stdout + done.stderr
    done = subprocess.run(
        [METER, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    reconciled = json.loads(done.stdout)["reconcile"]
    assert reconciled["line"].startswith(DIFFERS)
    assert reconciled["providers"]["anthropic"]["verdicts"] == {
        "ledger_has_less": 1,
        "matches": 1,
    }


def test_metrics_expose_the_scheduled_result(scheduled: Scheduled) -> None:
    answer = scheduled.api.get("/metrics")
    assert answer.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    labels = (("provider", "anthropic"),)
    assert samples[("halton_meter_reconcile_matches", labels)] == 0
    state = json.loads((scheduled.meter.home / "reconcile.json").read_text())
    difference = state["providers"]["anthropic"]["cost_difference_usd"]
    assert Decimal(difference) > 0
    assert samples[("halton_meter_reconcile_cost_difference_usd", labels)] == float(difference)
    assert ("halton_meter_reconcile_checked_timestamp_seconds", labels) in samples


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_the_dashboard_shows_the_difference_then_the_match(
    scheduled: Scheduled, fake_upstream: FakeUpstream
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{scheduled.api.base}/#token={scheduled.api.token}")
            page.wait_for_selector("#reconcile-line")
            line = page.inner_text("#reconcile-line")
            assert DIFFERS in line and "halton-meter reconcile" in line
            assert page.get_attribute("#reconcile-line", "class") == "warning"

            # The provider's report now agrees; a run (here the CLI's) rewrites the result.
            report = provider_rows("anthropic", scheduled.days, [SONNET])
            set_reports(fake_upstream, dataset(anthropic=report))
            done = reconcile_cli(
                scheduled.meter.home, "--provider", "anthropic", ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY
            )
            assert done.returncode == 0, done.stdout + done.stderr
            page.reload()
            page.wait_for_selector("#reconcile-line")
            line = page.inner_text("#reconcile-line")
            assert MATCHES in line
            assert page.get_attribute("#reconcile-line", "class") == "note"
            assert errors == []
        finally:
            browser.close()


def test_the_admin_key_is_nowhere_on_disk(scheduled: Scheduled) -> None:
    """Last in this module: stops the daemon, so the ledger's WAL is folded back in."""
    home = scheduled.meter.home
    assert scheduled.meter.stop() == 0
    assert json.loads((home / "reconcile.json").read_text())["providers"]["anthropic"]
    grep = subprocess.run(["grep", "-r", "-l", "-a", ANTHROPIC_KEY, str(home)],
                          capture_output=True, text=True)  # fmt: skip
    assert grep.returncode == 1 and grep.stdout == "", grep.stdout
    for path in home.rglob("*"):
        if path.is_file():
            assert ANTHROPIC_KEY.encode() not in path.read_bytes(), path
    # And not in any ledger value, however stored.
    con = sqlite3.connect(home / "db.sqlite")
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    assert dump.count("INSERT INTO") > 0 and ANTHROPIC_KEY not in dump
    assert ANTHROPIC_KEY[:24] not in dump  # not even a prefix of it
