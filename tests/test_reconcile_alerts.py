"""The scheduled reconcile's result where the user sees it (`status`, `status --json`,
`/metrics` read back with the Prometheus text parser) and its cost difference as an alert
through the budgets' channels: a log line, the desktop notification (the OS boundary, faked
here) and a signed webhook to a local receiver, once per provider and UTC day.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from halton_meter.api import metrics
from halton_meter.budgets.alerts import AlertDispatcher
from halton_meter.budgets.tracker import read_fired
from halton_meter.config import load_config
from halton_meter.ledger.db import connect
from halton_meter.paths import Paths
from halton_meter.reconcile import run
from halton_meter.reconcile.schedule import ReconcileLoop
from tests.conftest import METER, FakeUpstream, write_meter_config
from tests.test_reconcile import (
    ANTHROPIC_KEY,
    CALL,
    SONNET,
    cost_usd,
    dataset,
    days_ago,
    fill_ledger,
    provider_rows,
    set_reports,
)
from tests.webhooks import WebhookReceiver

SECRET = "reconcile-hook-secret"


@pytest.fixture
def home(tmp_path: Path, fake_upstream: FakeUpstream) -> Path:
    home = tmp_path / "home"
    write_meter_config(home, 18081, fake_upstream)
    return home


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    yield hooks
    hooks.close()


class _Desktop:
    """The notifier boundary (budgets/alerts.py Notifier) as a recorder."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []

    def notify(self, title: str, body: str) -> None:
        self.shown.append((title, body))


def configure(home: Path, alert_above: str, extra: str = "") -> Any:
    base = (home / "config.toml").read_text().split("\n[reconcile]")[0]
    (home / "config.toml").write_text(
        base
        + '\n[reconcile]\nenabled = true\nproviders = ["anthropic"]\n'
        + f"alert_above_usd = {alert_above}\n{extra}"
    )
    return load_config(Paths(home, True))


def five_percent_more(
    home: Path, fake: FakeUpstream, fill: bool = True
) -> tuple[list[str], Decimal]:
    """The provider billed 5 % more sonnet on the first of two days; the extra it billed."""
    days = [days_ago(2), days_ago(1)]
    if fill:
        fill_ledger(home, "anthropic", [SONNET], days)
    scale = {(days[0], SONNET): Decimal("1.05")}
    set_reports(fake, dataset(anthropic=provider_rows("anthropic", days, [SONNET], scale=scale)))
    extra = cost_usd(
        SONNET, {k: int(v * 4 * Decimal("1.05")) - v * 4 for k, v in CALL[SONNET].items()}
    )
    return days, extra


def nano(usd: Decimal) -> str:
    """Dollars as reconcile.json writes them: nine decimals (nano-USD)."""
    return f"{usd.quantize(Decimal('0.000000001')):f}"


def status(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({"HALTON_METER_HOME": str(home), "COLUMNS": "400"})
    env.pop("ANTHROPIC_ADMIN_KEY", None)
    return subprocess.run(
        [METER, "status", *args], env=env, capture_output=True, text=True, timeout=60
    )


def scrape(home: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics' reconcile samples, parsed by the Prometheus text parser."""
    con = connect(home / "db.sqlite")
    try:
        text = metrics.render(con, None, None, lambda: None, 0.8, run.load(home))
    finally:
        con.close()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("halton_meter_reconcile_"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_status_and_metrics_show_the_scheduled_result(
    home: Path,
    fake_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    days = [days_ago(2), days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET], days)
    set_reports(fake_upstream, dataset(anthropic=provider_rows("anthropic", days, [SONNET])))
    config = configure(home, "1")
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ANTHROPIC_KEY)
    loop = ReconcileLoop(home, home / "db.sqlite", config.reconcile, config.upstream)
    loop.run_once()

    matching = "anthropic: matches the provider's report for the last 7 days"
    done = status(home)
    assert matching in done.stdout, done.stdout + done.stderr
    assert "Reconcile (" in done.stdout
    payload = json.loads(status(home, "--json").stdout)
    assert payload["reconcile"]["line"] == matching
    assert payload["reconcile"]["providers"]["anthropic"]["matches"] is True
    samples = scrape(home)
    labels = (("provider", "anthropic"),)
    assert samples[("halton_meter_reconcile_matches", labels)] == 1
    assert samples[("halton_meter_reconcile_cost_difference_usd", labels)] == 0
    checked = samples[("halton_meter_reconcile_checked_timestamp_seconds", labels)]
    assert abs(checked - datetime.now(UTC).timestamp()) < 120

    # The next scheduled run finds 5 % more at the provider on one day.
    home_days, extra = five_percent_more(home, fake_upstream, fill=False)
    loop.run_once()
    done = status(home)
    assert (
        "anthropic: differs from the provider's report over the last 7 days (1 ledger has less "
        f"(traffic the meter did not see); provider minus ledger ${nano(extra)})"
    ) in done.stdout, done.stdout
    payload = json.loads(status(home, "--json").stdout)
    summary = payload["reconcile"]["providers"]["anthropic"]
    assert summary["matches"] is False and Decimal(summary["cost_difference_usd"]) == extra
    assert summary["differences"] == [
        {"day": home_days[0], "model": SONNET, "verdict": "ledger_has_less"}
    ]
    samples = scrape(home)
    assert samples[("halton_meter_reconcile_matches", labels)] == 0
    assert Decimal(str(samples[("halton_meter_reconcile_cost_difference_usd", labels)])) == extra


def test_a_difference_above_the_threshold_alerts_once_per_day(
    home: Path,
    fake_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    days, extra = five_percent_more(home, fake_upstream)
    config = configure(home, "0.001")
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ANTHROPIC_KEY)
    desktop = _Desktop()

    def dispatcher() -> AlertDispatcher:
        made = AlertDispatcher(home, receiver.url, "plain", SECRET, desktop, retry_seconds=(0.05,))
        made.start()
        return made

    first = dispatcher()
    loop = ReconcileLoop(home, home / "db.sqlite", config.reconcile, config.upstream, first.submit)
    with caplog.at_level(logging.WARNING, logger="halton_meter.reconcile"):
        loop.run_once()
        loop.run_once()  # the same day again: not repeated
    first.stop(10)
    # A restart (new loop, new dispatcher) the same day: not repeated either.
    second = dispatcher()
    again = ReconcileLoop(
        home, home / "db.sqlite", config.reconcile, config.upstream, second.submit
    )
    again.run_once()
    second.stop(10)

    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Halton-Signature"] == expected
    sent = json.loads(body)
    today = datetime.now(UTC).date().isoformat()
    assert sent["event"] == "reconcile.difference" and sent["provider"] == "anthropic"
    assert sent["day"] == today and Decimal(sent["cost_difference_usd"]) == extra
    assert sent["alert_above_usd"] == "0.001"
    assert sent["differences"] == [{"day": days[0], "model": SONNET, "verdict": "ledger_has_less"}]
    assert ANTHROPIC_KEY not in body.decode()
    (shown,) = desktop.shown
    assert shown[0] == "Halton Meter reconcile"
    assert f"differs from the provider's report by ${nano(extra)}" in shown[1]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Reconcile:")]
    assert len(logged) == 1 and logged[0] == shown[1]
    # Recorded as fired beside the budgets' own alerts.
    assert f"reconcile|anthropic|{today}" in read_fired(home)
    assert run.load(home)["alerted"] == {"anthropic": today}  # type: ignore[index]


def test_a_difference_within_the_threshold_or_not_costed_does_not_alert(
    home: Path,
    fake_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    receiver: WebhookReceiver,
) -> None:
    five_percent_more(home, fake_upstream)
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ANTHROPIC_KEY)
    desktop = _Desktop()
    for extra in ("", 'api_key = "apikey_01MachineA"\n'):
        # $100: far above the 5 % of four calls; then a key scope, whose cost is not compared.
        config = configure(home, "100" if not extra else "0.001", extra)
        dispatcher = AlertDispatcher(home, receiver.url, "chat", None, desktop)
        dispatcher.start()
        loop = ReconcileLoop(
            home, home / "db.sqlite", config.reconcile, config.upstream, dispatcher.submit
        )
        summary = loop.run_once()["providers"]["anthropic"]
        dispatcher.stop(10)
        assert summary["alert"] is False, summary
    assert receiver.received == [] and desktop.shown == []
