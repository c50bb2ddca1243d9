"""Team budgets with real parts: a real PostgreSQL team server, two real daemons paired and
syncing, a budget set by an admin (a viewer cannot), the calls of both machines pushing the
team's total over it, each threshold's alert once (a local webhook receiver checks the
signature), and with `action = "block"` both machines refusing new calls in the provider's
own error shape, seen by real SDK clients.

Expected costs come from published prices (tests/test_team_server.py: Claude Sonnet 4.5 at
$3 / $15 per million input / output tokens, cache and search as listed there).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import METER, ROOT, FakeUpstream, Meter, start_meter, wait_for
from tests.team_fixtures import (
    TeamServer,
    meter_cli,
    pair,
    send_calls,
    start_paired_meter,
    wait_synced,
)
from tests.test_team_server import sonnet_call_nanousd
from tests.webhooks import WebhookReceiver

# Real SDK processes through two daemons: slower than the suite's default limit on 2 cores.
pytestmark = pytest.mark.timeout(300)

SECRET = "team-hook-secret"


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def sdk_call(meter: Meter, project: str, kind: str) -> dict[str, Any]:
    """A real SDK client (tests/clients/budget_client.py) through the meter."""
    done = subprocess.run(
        [METER, "run", "--project", project, "--", sys.executable, "-m",
         "tests.clients.budget_client", kind],
        env=meter.run_env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def team_state(meter: Meter, name: str) -> dict[str, Any] | None:
    try:
        state = json.loads((meter.home / "team-budget-state.json").read_text())
    except (OSError, ValueError):
        return None
    found = [b for b in state["budgets"] if b["name"] == name]
    return found[0] if found else None


def wait_team_state(meter: Meter, name: str, predicate: Any, what: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        found = team_state(meter, name)
        return found if found is not None and predicate(found) else None

    result: dict[str, Any] = wait_for(ready, 45, what)
    return result


def signed_thresholds(hooks: WebhookReceiver, secret: str) -> list[int]:
    thresholds = []
    for headers, body in hooks.received:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Halton-Signature"] == expected
        alert = json.loads(body)
        assert alert["event"] == "budget.threshold" and alert["team"] is True
        thresholds.append(alert["threshold"])
    return sorted(thresholds)


def test_a_viewer_reads_team_budgets_and_only_an_admin_changes_them(
    team_server: TeamServer, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    workspace = "tb-roles"
    meter = start_paired_meter(fake_upstream, tmp_path / "m", team_server, workspace, "m1")
    try:
        viewer = team_server.cli("account-add", "tb-viewer", "--workspace", workspace)
        viewer_token = viewer.stdout.strip()
        table = {"name": "cap", "amount_usd": 10, "period": "month", "project": "acme"}
        path = f"/v1/budgets?workspace={workspace}"
        status, body = team_server.api("POST", path, table, token=viewer_token)
        assert status == 403 and "admin" in body["error"]
        assert team_server.api("GET", path, token=viewer_token)[1]["budgets"] == []
        # An admin adds it; a viewer reads it; a viewer cannot edit or remove it either.
        status, made = team_server.api("POST", path, table, token=team_server.admin_token)
        assert status == 201, made
        assert made["timezone"] == "UTC" and made["scope_text"] == "project=acme"
        status, _ = team_server.api("POST", path, table, token=team_server.admin_token)
        assert status == 409
        status, listed = team_server.api("GET", path, token=viewer_token)
        assert status == 200 and [b["name"] for b in listed["budgets"]] == ["cap"]
        for method, where in (("PATCH", "/v1/budgets/cap"), ("DELETE", "/v1/budgets/cap")):
            status, _ = team_server.api(
                method, f"{where}?workspace={workspace}", {"amount_usd": 99}, token=viewer_token
            )
            assert status == 403, method
        # A machine token is not an account.
        credentials = json.loads((meter.home / "cloud-credentials.json").read_text())
        assert team_server.api("POST", path, table, token=credentials["token"])[0] == 401
        # Keys are checked as a machine's [[budgets]] are, plus the team's own.
        for bad, word in (
            ({"name": "x", "amount_usd": -1}, "amount_usd"),
            ({"name": "x", "amount_usd": 1, "client": "claude"}, "client"),
            ({"name": "x", "amount_usd": 1, "machine": []}, "machine"),
            ({"name": "x", "amount_usd": 1, "webhook_url": "ftp://x"}, "webhook_url"),
        ):
            status, body = team_server.api("POST", path, bad, token=team_server.admin_token)
            assert status == 422 and word in body["error"], (bad, body)
        status, edited = team_server.api(
            "PATCH",
            f"/v1/budgets/cap?workspace={workspace}",
            {"amount_usd": 20, "action": "block"},
            token=team_server.admin_token,
        )
        assert status == 200 and edited["amount_usd"] == 20 and edited["action"] == "block"
        # The server commands, with --json.
        shown = json.loads(team_server.cli("budgets", "--workspace", workspace, "--json").stdout)
        (cap,) = shown["budgets"]
        assert cap["amount_usd"] == 20 and cap["state"] == "ok" and cap["spent_usd"] == 0
        team_server.cli(
            "budget-add", "all-of-it", "--workspace", workspace, "--amount", "5",
            "--period", "7d", "--machine", "m*", "--warn", "80,100", "--block",
        )  # fmt: skip
        team_server.cli("budget-edit", "all-of-it", "--workspace", workspace, "--amount", "6")
        shown = json.loads(team_server.cli("budgets", "--workspace", workspace, "--json").stdout)
        added = {b["name"]: b for b in shown["budgets"]}["all-of-it"]
        assert added["amount_usd"] == 6 and added["rolling_days"] == 7
        assert added["machine"] == ["m*"] and added["thresholds"] == [80, 100]
        team_server.cli("budget-rm", "all-of-it", "--workspace", workspace)
        again = team_server.cli("budget-rm", "all-of-it", "--workspace", workspace, check=False)
        assert again.returncode != 0 and "no budget" in again.stderr
        status, _ = team_server.api(
            "DELETE", f"/v1/budgets/cap?workspace={workspace}", token=team_server.admin_token
        )
        assert status == 200
        assert team_server.api("GET", path, token=viewer_token)[1]["budgets"] == []
    finally:
        meter.stop()


def test_a_team_block_budget_stops_both_machines_and_alerts_once(
    team_server: TeamServer, tmp_path: Path, fake_upstream: FakeUpstream, hooks: WebhookReceiver
) -> None:
    workspace = "tb-block"
    call = sonnet_call_nanousd()
    limit = call * 9 // 2  # four calls are under it, the fifth crosses it
    alice = start_paired_meter(fake_upstream, tmp_path / "alice", team_server, workspace, "alice")
    bob = start_paired_meter(fake_upstream, tmp_path / "bob", team_server, workspace, "bob")
    try:
        status, made = team_server.api(
            "POST",
            f"/v1/budgets?workspace={workspace}",
            {
                "name": "team-acme",
                "amount_usd": limit / 1e9,
                "period": "month",
                "project": "acme",
                "thresholds": [50, 100],
                "action": "block",
                "webhook_url": hooks.url,
                "webhook_secret": SECRET,
            },
            token=team_server.admin_token,
        )
        assert status == 201, made
        assert made["webhook_secret"] is True  # never shown back
        # Two calls on each machine: 4 of 4.5 calls' worth; the 50 % alert fires, once.
        send_calls(alice, "acme", anthropic=2)
        send_calls(bob, "acme", anthropic=2)
        wait_synced(team_server, workspace, 4)
        wait_for(lambda: len(hooks.received) >= 1, 30, "the 50 % alert")
        for meter in (alice, bob):
            seen = wait_team_state(
                meter, "team-acme", lambda b: b["server_spent_nanousd"] == 4 * call,
                "the team's figure on the machine",
            )  # fmt: skip
            assert seen["state"] == "ok" and seen["unsynced_nanousd"] == 0
        # Alice's fifth call goes through (4 calls < limit), and crosses it on her own count:
        # she refuses the next at once, with the server's figure plus her unsynced call.
        assert sdk_call(alice, "acme", "anthropic_message")["outcome"] == "ok"
        wait_team_state(alice, "team-acme", lambda b: b["state"] == "blocking", "alice blocks")
        refused = sdk_call(alice, "acme", "anthropic_message")
        assert refused["outcome"] == "error", refused
        assert refused["module"].startswith("anthropic") and refused["class"] == "RateLimitError"
        assert refused["status"] == 429
        assert "team budget 'team-acme' (workspace tb-block) is used up" in refused["message"]
        assert "server budget-edit team-acme" in refused["message"]
        # Bob learns of it with his next sync (bounded by the sync interval), then refuses
        # too: Anthropic's and OpenAI's SDKs, each with its own error class.
        state = wait_team_state(bob, "team-acme", lambda b: b["state"] == "blocking", "bob blocks")
        assert state["server_spent_nanousd"] == 5 * call
        shown = json.loads(meter_cli(bob, "cloud", "status", "--json").stdout)
        (applied,) = shown["team_budgets"]
        assert applied["name"] == "team-acme" and applied["state"] == "blocking"
        refused = sdk_call(bob, "acme", "anthropic_message")
        assert refused["class"] == "RateLimitError" and refused["status"] == 429, refused
        assert "team budget 'team-acme'" in refused["message"]
        refused = sdk_call(bob, "acme", "openai_chat_stream")
        assert refused["module"].startswith("openai") and refused["class"] == "RateLimitError"
        # Another project is not in its scope.
        assert sdk_call(bob, "beta", "anthropic_message")["outcome"] == "ok"
        # The team's total: 5 calls, over the limit by half a call (less than the one call
        # that crossed it); each threshold's alert arrived once, signed.
        time.sleep(2.0)  # a repeat would arrive now
        assert signed_thresholds(hooks, SECRET) == [50, 100]
        shown = json.loads(team_server.cli("budgets", "--workspace", workspace, "--json").stdout)
        (budget,) = shown["budgets"]
        assert budget["spent_nanousd"] == 5 * call
        assert 0 < budget["spent_nanousd"] - limit < call
        assert budget["state"] == "blocking" and budget["thresholds_reached"] == [50, 100]
        assert sorted(a["threshold"] for a in shown["alerts"]) == [50, 100]
        assert {a["state"] for a in shown["alerts"]} == {"delivered"}
        # The admin page shows it.
        status, page = team_server.api("GET", "/admin", token=team_server.admin_token)
        assert status == 200 and "team-acme" in page and ">blocking<" in page
        # An admin raises it: both machines go on after their next sync.
        status, _ = team_server.api(
            "PATCH",
            f"/v1/budgets/team-acme?workspace={workspace}",
            {"amount_usd": limit * 10 / 1e9},
            token=team_server.admin_token,
        )
        assert status == 200
        for meter in (alice, bob):
            wait_team_state(meter, "team-acme", lambda b: b["state"] == "ok", "raised")
            assert sdk_call(meter, "acme", "anthropic_message")["outcome"] == "ok"
    finally:
        alice.stop()
        bob.stop()


def test_overshoot_is_bounded_by_the_sync_interval(
    team_server: TeamServer, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    """Both machines call as fast as they can until refused. Each stops within two sync
    intervals (the other's rows reach the server, then this machine fetches the figure) plus
    one sync round of the team's total crossing the limit; the overshoot is the calls made in
    that time, nothing more."""
    import ssl

    import httpx2

    from tests.team_fixtures import ANTHROPIC_BODY

    workspace, interval = "tb-race", 1.0
    slow_sync = f"\n[cloud]\nsync_interval_seconds = {interval}\nmax_backoff_seconds = 2\n"
    call = sonnet_call_nanousd()
    limit = call * 20 + call // 2
    meters = [start_meter(tmp_path / name, fake_upstream, slow_sync) for name in ("carol", "dave")]
    try:
        for meter, name in zip(meters, ("carol", "dave"), strict=True):
            pair(meter, team_server, workspace, name)
        status, _ = team_server.api(
            "POST",
            f"/v1/budgets?workspace={workspace}",
            {"name": "race", "amount_usd": limit / 1e9, "period": "month", "action": "block"},
            token=team_server.admin_token,
        )
        assert status == 201
        for meter in meters:
            wait_team_state(meter, "race", lambda b: True, "the budget on the machine")
        outcomes: dict[str, list[tuple[float, int]]] = {"carol": [], "dave": []}

        def hammer(meter: Meter, name: str) -> None:
            context = ssl.create_default_context(cafile=str(meter.bundle))
            with httpx2.Client(
                proxy=f"http://race:meter@127.0.0.1:{meter.port}", verify=context, timeout=30
            ) as http:
                for _ in range(200):
                    started = time.time()
                    answer = http.post(
                        "https://api.anthropic.com/v1/messages",
                        headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
                        json=ANTHROPIC_BODY,
                    )
                    outcomes[name].append((started, answer.status_code))
                    if answer.status_code == 429:
                        return
                    time.sleep(0.05)

        threads = [
            threading.Thread(target=hammer, args=(meter, name))
            for meter, name in zip(meters, outcomes, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        allowed = sum(1 for calls in outcomes.values() for _, code in calls if code == 200)
        assert all(calls[-1][1] == 429 for calls in outcomes.values()), outcomes
        wait_synced(team_server, workspace, allowed)
        shown = json.loads(team_server.cli("budgets", "--workspace", workspace, "--json").stdout)
        (budget,) = shown["budgets"]
        assert budget["spent_nanousd"] == allowed * call
        # The call that brought the team's total over the limit (in the order the calls
        # started), and every call let through after it: each machine learns of the other's
        # calls once the other has synced them (within one interval) and it has fetched the
        # figure (within one more), so none starts later than two intervals plus one sync
        # round after the crossing (generous here: 2 cores shared with the whole suite).
        starts = sorted(t for calls in outcomes.values() for t, code in calls if code == 200)
        crossing = starts[limit // call]  # the 21st call: 20 are under the limit
        late = [t - crossing for t in starts if t > crossing]
        print(
            f"overshoot: {len(late)} calls after the crossing, "
            f"the last {max(late, default=0):.2f} s after"
        )
        assert max(late, default=0.0) <= 2 * interval + 5.0, late
        assert budget["spent_nanousd"] - limit == (len(late) + 1) * call - call // 2
        # Every refusal came after the crossing; the 100 % alert fired once.
        refusals = [t for calls in outcomes.values() for t, code in calls if code == 429]
        assert min(refusals) > crossing
        assert [a["threshold"] for a in shown["alerts"]].count(100) == 1
    finally:
        for meter in meters:
            meter.stop()
