"""Billing kind per row and quota windows (issue 13, items 1 and 3).

Expected figures are worked out here by hand: prices from the providers' published price
lists, utilisations from the header values the fake (or the test) sends, shares from the
rows' own tokens. Nothing is read back from the code under test to build an expectation.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from halton_meter.capture.accounts import AccountLabels
from halton_meter.ledger.db import connect
from halton_meter.ledger.queries import Window, build_report
from halton_meter.ledger.quota import quota_view, quota_warnings
from halton_meter.ledger.row import INSERT_QUOTA_SQL, INSERT_SQL, quota_values
from halton_meter.providers import call_billing, ratelimits, route_for
from halton_meter.report import totals_json
from tests.conftest import METER, ROOT, Meter
from tests.fakeupstream import catalog
from tests.test_clients import metered
from tests.test_ledger import sample_row

# --- the billing kind, decided from the wire format and the credential's kind ---------------

ANTHROPIC = "https://api.anthropic.com/v1/messages"
OAUTH_TOKEN = "sk-ant-oat01-fake-subscription-token-0001"
API_KEY = "sk-ant-api03-fake-api-key-0001"


@pytest.mark.parametrize(
    ("host", "path", "headers", "expected"),
    [
        ("api.anthropic.com", "/v1/messages", {"x-api-key": API_KEY}, "api"),
        (
            "api.anthropic.com",
            "/v1/messages",
            {"authorization": f"Bearer {OAUTH_TOKEN}"},
            "subscription",
        ),
        # The OAuth beta flag alone says subscription (Claude Code always sends it with OAuth).
        (
            "api.anthropic.com",
            "/v1/messages",
            {"anthropic-beta": "claude-code-20250219,oauth-2025-04-20"},
            "subscription",
        ),
        ("api.anthropic.com", "/v1/messages", {}, "unknown"),
        ("api.openai.com", "/v1/chat/completions", {"authorization": "Bearer sk-proj-1"}, "api"),
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-pro:generateContent",
            {"x-goog-api-key": "AIza1"},
            "api",
        ),
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-pro:generateContent?key=AIza1",
            {},
            "api",
        ),
        # Code Assist is a subscription's surface whatever the credential (the wire's rule).
        (
            "cloudcode-pa.googleapis.com",
            "/v1internal:generateContent",
            {"authorization": "Bearer ya29.x"},
            "subscription",
        ),
    ],
)
def test_billing_from_wire_and_credential(
    host: str, path: str, headers: dict[str, str], expected: str
) -> None:
    route = route_for(host, 443, path.partition("?")[0])
    assert route is not None
    assert call_billing(route, headers, path) == expected


# --- rate-limit headers: kept whole, read back as windows --------------------------------------


def test_header_families_are_kept_whole_with_unknown_members() -> None:
    sent = [
        ("content-type", "application/json"),
        ("Anthropic-Ratelimit-Unified-5h-Utilization", "0.31"),
        ("anthropic-ratelimit-unified-brand-new-thing", "sparkle"),
        ("anthropic-ratelimit-unified-9h_x-utilization", "0.9"),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("x-ratelimit-remaining-tokens", "149984"),
        ("x-codex-primary-used-percent", "12.5"),
        ("x-codex-turn-state", "opaque-routing-token"),  # not a quota fact: left out
        ("x-request-id", "r1"),
        ("authorization", "Bearer never-kept"),
    ]
    snapshot = ratelimits.collect(sent)
    assert snapshot == {
        "anthropic-ratelimit-": {
            "unified-5h-utilization": "0.31",
            "unified-brand-new-thing": "sparkle",
            "unified-9h_x-utilization": "0.9",
            "requests-limit": "50",
        },
        "x-ratelimit-": {"remaining-tokens": "149984"},
        "x-codex-": {"primary-used-percent": "12.5"},
    }
    assert ratelimits.collect([("content-type", "text/plain")]) is None
    # Read back: the unknown claim with a length in its name is a window too.
    names = {w.name: w for w in ratelimits.windows(snapshot, 1_000.0)}
    assert names["unified-9h_x"].length_seconds == 9 * 3600
    assert names["unified-5h"].utilisation == 0.31
    assert names["codex-primary"].utilisation == 0.125


def test_windows_of_each_provider() -> None:
    observed = 1_800_000_000.0
    snapshot = {
        "anthropic-ratelimit-": {
            "unified-5h-utilization": "1.04",
            "unified-5h-reset": "1800003600",
            "unified-5h-status": "rejected",
            "input-tokens-limit": "80000",
            "input-tokens-remaining": "60000",
            "input-tokens-reset": "2027-01-15T08:00:30Z",
        },
        "x-ratelimit-": {
            "limit-requests": "60",
            "remaining-requests": "45",
            "reset-requests": "6m0s",
            "limit-tokens": "-1",  # Azure's "absent"
            "remaining-tokens": "0",
        },
        "x-codex-": {
            "secondary-used-percent": "59",
            "secondary-window-minutes": "10080",
            "secondary-reset-after-seconds": "356000",
        },
    }
    found = {w.name: w for w in ratelimits.windows(snapshot, observed)}
    assert set(found) == {"unified-5h", "input-tokens", "requests", "codex-secondary"}
    five = found["unified-5h"]
    assert (five.utilisation, five.resets_at, five.length_seconds, five.status) == (
        1.04,
        1_800_003_600,
        18_000,
        "rejected",
    )
    assert found["input-tokens"].utilisation == 0.25  # 1 - 60000/80000
    assert (
        found["input-tokens"].resets_at == datetime(2027, 1, 15, 8, 0, 30, tzinfo=UTC).timestamp()
    )
    assert found["requests"].utilisation == 0.25  # 1 - 45/60
    assert found["requests"].resets_at == observed + 360
    weekly = found["codex-secondary"]
    assert (weekly.utilisation, weekly.length_seconds, weekly.resets_at) == (
        0.59,
        604_800,
        observed + 356_000,
    )


def test_account_labels_never_hold_the_credential() -> None:
    labels = AccountLabels()
    oauth = {"authorization": f"Bearer {OAUTH_TOKEN}"}
    first = labels.label("anthropic", "subscription", oauth, {})
    assert first == labels.label("anthropic", "subscription", oauth, {})  # stable in a run
    other = labels.label(
        "anthropic", "subscription", {"authorization": "Bearer sk-ant-oat01-b"}, {}
    )
    assert other != first
    for label in (first, other):
        assert (
            "sk-ant" not in label
            and hashlib.sha256(OAUTH_TOKEN.encode()).hexdigest()[:8] not in label
        )
    by_org = labels.label(
        "anthropic", "api", {"x-api-key": API_KEY}, {"anthropic-organization-id": "org-uuid-1"}
    )
    assert by_org == "anthropic:api:org-org-uuid-1"


# --- money spent and subscription value, apart ------------------------------------------------

# Published prices, USD per million tokens: Anthropic (claude.com/pricing) Claude Sonnet 4.5,
# $3 input and $15 output; Google (ai.google.dev/gemini-api/docs/pricing) Gemini 2.5 Pro,
# $1.25 input (prompts up to 200k) and $10 output.
SONNET = (Decimal(3), Decimal(15))
GEMINI_PRO = (Decimal("1.25"), Decimal(10))


def nano(prices: tuple[Decimal, Decimal], prompt: int, output: int) -> int:
    return int((prices[0] * prompt + prices[1] * output) * 1000)


def test_report_shows_spend_and_subscription_value_apart(tmp_path: Path) -> None:
    con = connect(tmp_path / "db.sqlite")
    api_a = nano(SONNET, 1000, 100)  # 3,000,000 + 1,500,000 = 4,500,000 nano-USD
    api_b = nano(SONNET, 2000, 300)  # 6,000,000 + 4,500,000 = 10,500,000
    sub_claude = nano(SONNET, 10_000, 2_000)  # 30,000,000 + 30,000,000 = 60,000,000
    sub_gemini = nano(GEMINI_PRO, 4000, 500)  # 5,000,000 + 5,000,000 = 10,000,000
    old = 777  # a row recorded before billing was known: `unknown`, counted as spent
    assert (api_a, api_b, sub_claude, sub_gemini) == (4_500_000, 10_500_000, 60_000_000, 10_000_000)
    day = "2026-11-20T10:00:00.000Z"
    rows = [
        sample_row(id="a" * 24, requested_at=day, project="p1", billing="api", cost_nanousd=api_a),
        sample_row(id="b" * 24, requested_at=day, project="p2", billing="api", cost_nanousd=api_b),
        sample_row(
            id="c" * 24,
            requested_at=day,
            project="p1",
            billing="subscription",
            cost_nanousd=sub_claude,
        ),
        sample_row(
            id="d" * 24,
            requested_at=day,
            project="p2",
            provider="google",
            billing="subscription",
            cost_nanousd=sub_gemini,
        ),
        sample_row(
            id="e" * 24, requested_at=day, project="p2", billing="unknown", cost_nanousd=old
        ),
    ]
    con.executemany(INSERT_SQL, [row.values() for row in rows])
    for window in (
        Window(),
        Window(since="2026-11-20T09:00:00.000Z", until=day[:11] + "11:00:00.000Z"),
    ):
        report = build_report(con, window, ["project"])
        totals = totals_json(report.totals)
        assert totals["cost_nanousd"] == 4_500_000 + 10_500_000 + 777  # money spent: 15,000,777
        assert totals["cost_usd"] == "0.015000777"
        assert totals["subscription_requests"] == 2
        assert totals["subscription_value_nanousd"] == 70_000_000
        assert totals["subscription_value_usd"] == "0.070000000"
        per = {key[0]: totals_json(t) for key, t in report.groups}
        assert (per["p1"]["cost_nanousd"], per["p1"]["subscription_value_nanousd"]) == (
            4_500_000,
            60_000_000,
        )
        assert (per["p2"]["cost_nanousd"], per["p2"]["subscription_value_nanousd"]) == (
            10_500_777,
            10_000_000,
        )
    by_billing = build_report(con, Window(), ["billing"])
    assert {key[0]: t.requests for key, t in by_billing.groups} == {
        "api": 2,
        "subscription": 2,
        "unknown": 1,
    }


def test_report_and_projects_commands_print_both_figures_apart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    con = connect(home / "db.sqlite")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    con.executemany(
        INSERT_SQL,
        [
            sample_row(
                requested_at=now, project="mix", billing="api", cost_nanousd=4_500_000
            ).values(),
            sample_row(
                requested_at=now, project="mix", billing="subscription", cost_nanousd=60_000_000
            ).values(),
        ],
    )
    con.close()
    env = {**os.environ, "HALTON_METER_HOME": str(home), "COLUMNS": "200"}
    done = subprocess.run(
        [METER, "report", "--json"], env=env, capture_output=True, text=True, check=True
    )
    totals = json.loads(done.stdout)["totals"]
    assert (totals["cost_usd"], totals["subscription_value_usd"]) == ("0.004500000", "0.060000000")
    text = subprocess.run(
        [METER, "report"], env=env, capture_output=True, text=True, check=True
    ).stdout
    text = " ".join(text.split())  # the console may wrap the line
    assert "Money spent (API billing): $0.004500." in text
    assert "1 calls worth $0.060000 at API prices" in text
    assert "$0.0645" not in text  # never added up
    projects = subprocess.run(
        [METER, "projects", "--json"], env=env, capture_output=True, text=True, check=True
    )
    (item,) = json.loads(projects.stdout)
    assert (item["total_cost_usd"], item["subscription_value_usd"]) == (
        "0.004500000",
        "0.060000000",
    )


# --- quota windows from the ledger ---------------------------------------------------------------


def _observe(
    con: sqlite3.Connection, row: Any, account: str, headers: dict[str, dict[str, str]]
) -> None:
    row.quota_account, row.quota_headers = account, ratelimits.dumps(headers)
    con.execute(INSERT_SQL, row.values())
    values = quota_values(row)
    assert values is not None
    con.execute(INSERT_QUOTA_SQL, values)


def test_quota_view_trend_shares_and_warning(tmp_path: Path) -> None:
    con = connect(tmp_path / "db.sqlite")
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
    reset = int(now) + 3 * 3600  # the 5-hour window began at 10:00
    account = "anthropic:subscription:org-test"
    # Four calls in the last 40 minutes; utilisation rises 0.50 → 0.70; tokens per project:
    calls = [  # (minutes before now, project, client, prompt, output, utilisation)
        (40, "alpha", "claude", 1000, 200, "0.50"),
        (30, "beta", "claude", 3000, 0, "0.60"),
        (20, "gamma", "gemini", 500, 100, "0.65"),
        (10, "alpha", "python", 1200, 0, "0.70"),
    ]
    for minutes, project, client, prompt, output, used in calls:
        at = now - minutes * 60
        row = sample_row(
            requested_at=datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            project=project,
            client_process=client,
            input_tokens=prompt,
            cache_read_tokens=0,
            cache_write_tokens=0,
            output_tokens=output,
            cost_nanousd=None,
        )
        _observe(
            con,
            row,
            account,
            {
                "anthropic-ratelimit-": {
                    "unified-5h-utilization": used,
                    "unified-5h-reset": str(reset),
                    "unified-5h-status": "allowed",
                }
            },
        )
    (view,) = quota_view(con, datetime.fromtimestamp(now, UTC), warn_at=0.7)
    (window,) = view.windows
    assert (window.name, window.utilisation, window.warning) == ("unified-5h", 0.70, True)
    assert window.since == "2026-11-20T10:00:00.000Z"
    # +0.20 over 30 minutes = +0.40 an hour; full (0.30 left) 45 minutes after 11:50.
    assert window.trend_per_hour == pytest.approx(0.40)
    assert window.full_at == "2026-11-20T12:35:00.000Z"
    # Shares by tokens (the rows are unpriced): alpha 1200 + 1200, beta 3000, gamma 600 of 6000.
    shares = {s.name: (s.tokens, s.share) for s in window.projects}
    assert shares == {"alpha": (2400, 0.4), "beta": (3000, 0.5), "gamma": (600, 0.1)}
    assert sum(s.tokens for s in window.projects) == 6000
    assert {s.name: s.tokens for s in window.clients} == {
        "claude": 4200,
        "gemini": 600,
        "python": 1200,
    }
    (warning,) = quota_warnings(con, 0.7, datetime.fromtimestamp(now, UTC))
    assert (warning["account"], warning["window"], warning["utilisation"]) == (
        account,
        "unified-5h",
        0.7,
    )
    assert quota_warnings(con, 0.8, datetime.fromtimestamp(now, UTC)) == []
    # After the reset the window is stale: no figure, no warning.
    (later,) = quota_view(con, datetime.fromtimestamp(reset + 1, UTC), warn_at=0.5)
    assert later.windows[0].expired and not later.windows[0].warning


# --- through the daemon: curl with an OAuth token and with an API key -------------------------


def anthropic_body(model: str = "claude-sonnet-4-5") -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }


def anthropic_curl(meter: Meter, project: str, *headers: str) -> subprocess.CompletedProcess[str]:
    args = ["curl", "-sS", "--fail-with-body", ANTHROPIC, "-H", "content-type: application/json"]
    for header in headers:
        args += ["-H", header]
    return metered(meter, project, *args, "--data", json.dumps(anthropic_body()))


def quota_rows(meter: Meter, project: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(meter.ledger)
    con.row_factory = sqlite3.Row
    try:
        found = con.execute(
            "SELECT q.* FROM quota_observations q JOIN requests r ON r.id = q.request_id "
            "WHERE r.project = ? ORDER BY q.observed_at",
            (project,),
        ).fetchall()
    finally:
        con.close()
    return [dict(row) for row in found]


def check_subscription_quota(meter: Meter, project: str, count: int) -> list[dict[str, Any]]:
    """Every row of the project has its response's unified family, whole."""
    kept = quota_rows(meter, project)
    assert len(kept) == count
    reset_5h, reset_7d = catalog.unified_resets()
    for item in kept:
        family = json.loads(item["headers"])["anthropic-ratelimit-"]
        assert family["unified-5h-utilization"] == catalog.UNIFIED_5H_UTILIZATION
        assert family["unified-7d-utilization"] == catalog.UNIFIED_7D_UTILIZATION
        assert abs(int(family["unified-5h-reset"]) - reset_5h) <= 3600
        assert abs(int(family["unified-7d-reset"]) - reset_7d) <= 86400
        assert family["unified-representative-claim"] == "five_hour"
        for name, value in catalog.UNIFIED_UNKNOWN_MEMBERS:  # new members kept whole
            assert family[name.removeprefix("anthropic-ratelimit-")] == value
        assert item["account"].startswith("anthropic:subscription:org-")
    return kept


def test_curl_oauth_and_api_key_rows(meter: Meter, project: str) -> None:
    oauth = anthropic_curl(meter, project, f"authorization: Bearer {OAUTH_TOKEN}")
    assert oauth.returncode == 0, oauth.stderr
    keyed = anthropic_curl(meter, project, f"x-api-key: {API_KEY}")
    assert keyed.returncode == 0, keyed.stderr
    first, second = meter.wait_rows(project, 2)
    raw = catalog.ANTHROPIC_USAGE
    for row in (first, second):
        assert (row["input_tokens"], row["output_tokens"]) == (
            raw["input_tokens"],
            raw["output_tokens"],
        )
        assert row["cost_nanousd"] is not None and row["cost_nanousd"] > 0
    assert (first["billing"], second["billing"]) == ("subscription", "api")
    assert first["cost_nanousd"] == second["cost_nanousd"]  # the same API-equivalent price
    kept = {item["request_id"]: item for item in quota_rows(meter, project)}
    family = json.loads(kept[first["id"]]["headers"])["anthropic-ratelimit-"]
    for name, value in catalog.UNIFIED_UNKNOWN_MEMBERS:
        assert family[name.removeprefix("anthropic-ratelimit-")] == value
    api_family = json.loads(kept[second["id"]]["headers"])["anthropic-ratelimit-"]
    assert (api_family["requests-limit"], api_family["requests-remaining"]) == ("1000", "999")
    assert kept[second["id"]]["account"] == f"anthropic:api:org-{catalog.ANTHROPIC_ORG_ID}"


def test_quota_shares_of_three_concurrent_projects_add_up(meter: Meter, project: str) -> None:
    org = f"org-{project}"[-36:]  # an account of this test's own
    projects = [f"{project}-{n}" for n in range(3)]
    calls = {projects[0]: 1, projects[1]: 2, projects[2]: 3}

    def run(name: str) -> None:
        for _ in range(calls[name]):
            done = anthropic_curl(
                meter, name, f"authorization: Bearer {OAUTH_TOKEN}", f"x-fake-org: {org}"
            )
            assert done.returncode == 0, done.stderr

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(run, projects))
    rows = {name: meter.wait_rows(name, calls[name]) for name in projects}
    done = subprocess.run(
        [METER, "quota", "--json"], env=meter.run_env(), capture_output=True, text=True, check=True
    )
    (account,) = [a for a in json.loads(done.stdout)["accounts"] if a["account"].endswith(org)]
    five = next(w for w in account["windows"] if w["name"] == "unified-5h")
    assert five["utilisation"] == float(catalog.UNIFIED_5H_UTILIZATION)
    assert five["basis"] == "value"  # every row priced: shares of API-equivalent value
    value = {name: sum(r["cost_nanousd"] for r in found) for name, found in rows.items()}
    total = sum(value.values())
    shares = {s["project"]: s for s in five["projects"]}
    assert set(shares) == set(projects)
    for name in projects:
        assert shares[name]["value_nanousd"] == value[name]
        assert shares[name]["requests"] == calls[name]
        assert shares[name]["share"] == pytest.approx(value[name] / total, abs=1e-6)
    assert sum(s["share"] for s in shares.values()) == pytest.approx(1.0, abs=1e-5)
    # Each call costs the same here, so the shares are 1/6, 2/6, 3/6.
    assert [round(shares[n]["share"], 4) for n in projects] == [0.1667, 0.3333, 0.5]
    assert {s["client"] for s in five["clients"]} == {"curl"}


def test_status_warns_past_the_threshold(meter: Meter, project: str) -> None:
    org = f"warn-{project}"[-36:]
    done = anthropic_curl(
        meter,
        project,
        f"authorization: Bearer {OAUTH_TOKEN}",
        f"x-fake-org: {org}",
        "x-fake-unified-5h: 0.93",
    )
    assert done.returncode == 0, done.stderr
    meter.wait_rows(project, 1)
    status = subprocess.run(
        [METER, "status", "--json"], env=meter.run_env(), capture_output=True, text=True
    )
    lines = [line for line in json.loads(status.stdout)["quota_warnings"] if org in line]
    assert lines and "unified-5h at 93.0%" in lines[0] and "warn at 80.0%" in lines[0]


def test_no_credential_hash_or_email_on_disk(meter: Meter, project: str) -> None:
    """After subscription and API-key traffic, nothing under the meter's home holds a token,
    a hash of one, or an account e-mail."""
    done = anthropic_curl(meter, project, f"authorization: Bearer {OAUTH_TOKEN}")
    assert done.returncode == 0, done.stderr
    keyed = anthropic_curl(meter, project, f"x-api-key: {API_KEY}")
    assert keyed.returncode == 0, keyed.stderr
    meter.wait_rows(project, 2)
    time.sleep(0.3)
    assert_nothing_secret_under(meter.home, [OAUTH_TOKEN, API_KEY, "sk-test-secret-0004"], [])


def assert_nothing_secret_under(home: Path, secrets: list[str], emails: list[str]) -> None:
    needles: list[bytes] = []
    for secret in secrets:
        needles.append(secret.encode())
        for algorithm in ("sha256", "sha1", "md5", "sha512"):
            digest = hashlib.new(algorithm, secret.encode())
            needles += [digest.hexdigest().encode(), digest.hexdigest()[:16].encode()]
    needles += [email.encode() for email in emails]
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"{needle!r} found in {path}"


__all__ = ["ROOT", "assert_nothing_secret_under"]
