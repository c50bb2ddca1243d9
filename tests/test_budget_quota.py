"""Quota-share budgets through a real daemon: "acme may use 30 % of the Claude 5-hour window".
The fake upstream answers a subscription (OAuth) call with the unified rate-limit headers
(`x-fake-unified-5h` sets the window's utilisation); the meter records them, the daemon reads
the scope's part of the window from them, fires each threshold once per window (also across a
restart), and with `action = "block"` answers acme's next call itself, in Anthropic's error
shape, until the window resets. Another scope (on another account) goes on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import METER, FakeUpstream, Meter, start_meter, wait_for
from tests.test_billing_quota import OAUTH_TOKEN, anthropic_curl
from tests.test_budget_block import wait_blocking
from tests.webhooks import WebhookReceiver

SECRET = "quota-share-secret"
BUDGET = """
[[budgets]]
name = "acme-5h"
project = "acme"
quota_window = "unified-5h"
quota_percent = 30
thresholds = [50, 100]
action = "block"
"""


def claude_call(meter: Meter, project: str, org: str, used: str) -> Any:
    return anthropic_curl(
        meter, project, f"authorization: Bearer {OAUTH_TOKEN}", f"x-fake-org: {org}",
        f"x-fake-unified-5h: {used}",
    )  # fmt: skip


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def received(hooks: WebhookReceiver) -> list[dict[str, Any]]:
    found = []
    for headers, body in hooks.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Halton-Signature"] == expected
        found.append(json.loads(body))
    return found


def test_quota_share_budget_alerts_once_per_window_and_blocks(
    fake_upstream: FakeUpstream, tmp_path: Path, hooks: WebhookReceiver
) -> None:
    extra = (
        f"""
[alerts]
webhook_url = "{hooks.url}"
webhook_format = "plain"
webhook_secret = "{SECRET}"
desktop = false
"""
        + BUDGET
    )
    org, other_org = (f"org-{name}-{uuid.uuid4().hex[:12]}" for name in ("acme", "beta"))
    meter = start_meter(tmp_path / "home", fake_upstream, extra_config=extra)
    try:
        # acme alone on the account: its part of the window is the window's utilisation.
        # 10 % of the window is 33.3 % of acme's 30 %: no threshold yet.
        assert claude_call(meter, "acme", org, "0.10").returncode == 0
        meter.wait_rows("acme", 1)
        time.sleep(2.5)  # the keeper re-reads the windows each second while rows come
        assert received(hooks) == []
        # 20 % is 66.7 %: the 50 % threshold, once.
        assert claude_call(meter, "acme", org, "0.20").returncode == 0
        wait_for(lambda: len(hooks.received) >= 1, 15, "the 50 % alert")
        # 35 % is 116.7 %: the 100 % threshold, and the budget blocks.
        assert claude_call(meter, "acme", org, "0.35").returncode == 0
        wait_for(lambda: len(hooks.received) >= 2, 15, "the 100 % alert")
        fired = received(hooks)
        assert [alert["threshold"] for alert in fired] == [50, 100]
        for alert in fired:
            assert alert["budget"] == "acme-5h" and alert["event"] == "budget.threshold"
            assert alert["quota"]["window"] == "unified-5h"
            assert alert["quota"]["provider"] == "anthropic"
        assert fired[1]["quota"]["percent"] == pytest.approx(116.7)
        assert "35.0% of the unified-5h window" in fired[1]["message"]
        wait_blocking(meter, "acme-5h")

        refused = claude_call(meter, "acme", org, "0.36")
        assert refused.returncode != 0  # curl --fail-with-body: the 429 and its body
        error = json.loads(refused.stdout)
        assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
        message = error["error"]["message"]
        assert "budget 'acme-5h' is used up" in message
        assert "unified-5h window" in message and "of its 30% share" in message
        assert "halton-meter budget allow acme-5h --for 1h" in message
        assert len(meter.rows("acme")) == 3  # refused: never sent, never recorded
        listed = subprocess.run(
            [METER, "budget", "list", "--json"], env=meter.run_env(), capture_output=True,
            text=True, timeout=30, check=True,
        )  # fmt: skip
        (shown,) = json.loads(listed.stdout)["budgets"]
        assert (shown["name"], shown["state"], shown["percent"]) == ("acme-5h", "blocking", 116.7)

        # Another scope, on another account, is not blocked.
        assert claude_call(meter, "beta", other_org, "0.50").returncode == 0
        meter.wait_rows("beta", 1)
        assert meter.stop() == 0

        # Restart: the windows are read again from the ledger; nothing fires twice, and the
        # budget still blocks until the window resets.
        meter = start_meter(tmp_path / "home", fake_upstream, extra_config=extra)
        wait_blocking(meter, "acme-5h")
        again = claude_call(meter, "acme", org, "0.36")
        assert again.returncode != 0 and "acme-5h" in again.stdout
        time.sleep(2.0)
        assert len(hooks.received) == 2
        state = json.loads((meter.home / "budget-state.json").read_text())
        (view,) = [b for b in state["budgets"] if b["name"] == "acme-5h"]
        assert view["kind"] == "quota_share" and view["state"] == "blocking"
        assert view["blocked_calls"] >= 1 and view["percent"] == pytest.approx(116.7)
    finally:
        meter.stop()


def test_each_window_fires_once_and_a_drifting_reset_is_the_same_window(tmp_path: Path) -> None:
    """In process, with a clock of the test's own: a window's thresholds fire once however
    often it is re-read, also when its reset drifts by seconds (Codex's resets are relative to
    each response) and across a restart (the alert file); the next window fires again."""
    from datetime import UTC, datetime

    from halton_meter.budget_model import parse_budget
    from halton_meter.budgets.tracker import ALERTS_FILE, BudgetTracker, Crossing
    from halton_meter.ledger.db import connect
    from tests.test_billing_quota import _observe, sample_row

    ledger = tmp_path / "db.sqlite"
    con = connect(ledger)
    clock = [datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()]
    account = "anthropic:subscription:org-test"

    def observe(used: str, reset: int) -> None:
        at = datetime.fromtimestamp(clock[0] - 60, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        row = sample_row(requested_at=at, project="acme", cost_nanousd=None)
        unified = {"unified-5h-utilization": used, "unified-5h-reset": str(reset)}
        _observe(con, row, account, {"anthropic-ratelimit-": unified})
        con.commit()

    budget = parse_budget(
        0,
        {"name": "acme-5h", "project": "acme", "quota_window": "unified-5h",
         "quota_percent": 50, "thresholds": [50, 100]},
    )  # fmt: skip
    fired: list[Crossing] = []

    def tracker() -> BudgetTracker:
        made = BudgetTracker([budget], tmp_path, ledger, fired.append, clock=lambda: clock[0])
        assert made.seed()
        return made

    first_reset = int(clock[0]) + 3 * 3600
    observe("0.30", first_reset)  # 60 % of the share: the 50 % threshold
    live = tracker()
    assert [c.threshold for c in fired] == [50]
    clock[0] += 20
    observe("0.30", first_reset + 7)  # the same window, its reset 7 s later
    live.refresh_quota()
    assert [c.threshold for c in fired] == [50]
    # A restart reads what fired from the alert file (the dispatcher writes it).
    (tmp_path / ALERTS_FILE).write_text(json.dumps({"fired": {c.key: 1.0 for c in fired}}))
    live = tracker()
    assert [c.threshold for c in fired] == [50]
    # The next window (its reset 5 hours on) starts at 60 % again: fires again, once.
    clock[0] += 5 * 3600
    observe("0.30", first_reset + 5 * 3600)
    live.refresh_quota()
    live.refresh_quota()
    assert [c.threshold for c in fired] == [50, 50]
    assert fired[1].window.end == first_reset + 5 * 3600
    assert "30.0% of the unified-5h window" in fired[1].message()
