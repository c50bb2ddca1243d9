"""Budgets without a daemon: period edges across time zones and DST, scopes, the hot-path
check, fail open, refusal shapes, config errors with key and line."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import MISSING
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from halton_meter.budget_model import Budget, Scope, forecast, window_at
from halton_meter.budgets.refusal import refusal_body
from halton_meter.budgets.tracker import BudgetTracker, Crossing
from halton_meter.config import ConfigError, parse_config
from halton_meter.ledger.db import connect
from halton_meter.ledger.row import LedgerRow, utc_iso_ms

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def epoch(text: str, zone: ZoneInfo) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def test_day_across_dst_is_23_and_25_hours() -> None:
    spring = window_at("day", 0, PARIS, epoch("2026-03-29T12:00", PARIS))
    assert spring.end - spring.start == 23 * 3600
    assert spring.local_start.isoformat() == "2026-03-29T00:00:00+01:00"
    assert spring.local_end.isoformat() == "2026-03-30T00:00:00+02:00"
    autumn = window_at("day", 0, NEW_YORK, epoch("2026-11-01T23:30", NEW_YORK))
    assert autumn.end - autumn.start == 25 * 3600


def test_same_instant_different_zones_different_days() -> None:
    when = datetime.fromisoformat("2026-12-01T03:00:00+00:00").timestamp()
    paris = window_at("month", 0, PARIS, when)
    new_york = window_at("month", 0, NEW_YORK, when)
    assert paris.local_start.isoformat() == "2026-12-01T00:00:00+01:00"
    assert new_york.local_start.isoformat() == "2026-11-01T00:00:00-04:00"  # still November
    assert new_york.local_end.isoformat() == "2026-12-01T00:00:00-05:00"


def test_week_starts_monday_and_rolling_counts_today() -> None:
    when = epoch("2026-12-10T09:00", PARIS)  # a Thursday
    week = window_at("week", 0, PARIS, when)
    assert week.local_start.date().isoformat() == "2026-12-07"
    rolling = window_at("rolling", 7, PARIS, when)
    assert rolling.local_start.date().isoformat() == "2026-12-04"
    assert rolling.local_end.date().isoformat() == "2026-12-11"


def test_scope_globs_combine() -> None:
    scope = Scope(project=("acme*",), provider=("anthropic", "openai"))
    assert scope.matches("acme-web", (None,), "openai", "gpt-4.1") is True
    assert scope.matches("beta", (None,), "openai", "gpt-4.1") is False
    assert scope.matches("acme", (None,), "gemini", "x") is False
    assert scope.matches(None, (None,), "openai", None) is None  # project not known yet


def row(project: str, cost: int, when: float, billing: str = "api") -> LedgerRow:
    fields = dict.fromkeys(LedgerRow.__dataclass_fields__)
    fields.update(
        id=f"r{when}{project}{cost}", requested_at=utc_iso_ms(when), provider="anthropic",
        api="messages", host="api.anthropic.com", model="claude-sonnet-4-5", stream=False,
        status="ok", project=project, cost_nanousd=cost, billing=billing, tokens_complete=True,
    )  # fmt: skip
    fields = {
        k: v
        for k, v in fields.items()
        if v is not None or LedgerRow.__dataclass_fields__[k].default is MISSING
    }
    return LedgerRow(**fields)  # type: ignore[arg-type]


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite"
    connect(path).close()
    return path


def test_running_totals_block_only_their_scope(ledger: Path, tmp_path: Path) -> None:
    now = epoch("2026-12-10T09:00", PARIS)
    crossings: list[Crossing] = []
    budgets = [
        Budget("acme", 1.0, "month", scope=Scope(project=("acme",)), action="block",
               timezone="Europe/Paris"),
        Budget("beta", 1.0, "month", scope=Scope(project=("beta",)), action="block",
               timezone="Europe/Paris"),
    ]  # fmt: skip
    tracker = BudgetTracker(budgets, tmp_path, ledger, crossings.append, clock=lambda: now)
    assert tracker.seed()
    assert tracker.check("anthropic", "acme", None, None, None) is None
    tracker.add(row("acme", 600_000_000, now - 60))  # $0.60: 50 % crossed
    tracker.add(row("acme", 10**10, now - 60, billing="subscription"))  # never money
    assert [c.threshold for c in crossings] == [50]
    assert tracker.check("anthropic", "acme", None, None, None) is None
    tracker.add(row("acme", 500_000_000, now - 30))  # $1.10: 80 and 100 %
    assert [c.threshold for c in crossings] == [50, 80, 100]
    refusal = tracker.check("anthropic", "acme", None, None, None)
    assert refusal is not None and refusal.budget.name == "acme"
    assert "$1.10 of $1.00" in refusal.message()
    assert "resets 2027-01-01 00:00 CET" in refusal.message()
    assert tracker.check("anthropic", "beta", None, None, None) is None
    # A row from before the period does not count.
    tracker.add(row("beta", 5 * 10**9, epoch("2026-11-30T23:59", PARIS)))
    assert tracker.check("anthropic", "beta", None, None, None) is None


def test_seed_reads_the_ledger_and_fails_open_when_it_cannot(
    ledger: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = epoch("2026-12-10T09:00", PARIS)
    con = sqlite3.connect(ledger)
    from halton_meter.ledger.row import INSERT_SQL

    con.execute(INSERT_SQL, row("acme", 2 * 10**9, now - 3600).values())
    con.execute(INSERT_SQL, row("acme", 9 * 10**9, now - 3600, "subscription").values())
    con.commit()
    con.close()
    budget = Budget("acme", 1.0, "day", scope=Scope(project=("acme",)), action="block",
                    timezone="Europe/Paris")  # fmt: skip
    tracker = BudgetTracker([budget], tmp_path, ledger, clock=lambda: now)
    assert tracker.seed()
    assert tracker.views()[0]["spent_usd"] == 2.0
    assert tracker.check("anthropic", "acme", None, None, None) is not None
    # An unreadable ledger: state unknown, every call goes through, and it is logged.
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    unknown = BudgetTracker([budget], tmp_path, broken, clock=lambda: now)
    with caplog.at_level(logging.WARNING):
        assert not unknown.seed()
    assert "fail open" in caplog.text
    assert unknown.check("anthropic", "acme", None, None, None) is None


def test_forecast_projects_the_pace() -> None:
    window = window_at("day", 0, PARIS, epoch("2026-12-10T12:00", PARIS))
    assert forecast(10**9, window, epoch("2026-12-10T12:00", PARIS)) == 2 * 10**9
    assert forecast(10**9, window, epoch("2026-12-10T00:30", PARIS)) is None


def test_refusal_shapes_per_provider() -> None:
    body, headers = refusal_body("anthropic-messages", "stop")
    assert json.loads(body) == {"type": "error", "error": {"type": "rate_limit_error",
                                                           "message": "stop"}}  # fmt: skip
    assert json.loads(refusal_body("openai-chat", "m")[0])["error"]["type"] == "insufficient_quota"
    gemini = json.loads(refusal_body("gemini", "m")[0])["error"]
    assert (gemini["code"], gemini["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert headers["x-should-retry"] == "false"


def test_config_errors_name_key_and_line(tmp_path: Path) -> None:
    text = (
        '[[budgets]]\nname = "a"\namount_usd = 5\n\n'
        '[[budgets]]\nname = "b"\namount_usd = 5\nperiod = "year"\n'
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "config.toml")
    assert caught.value.key == "budgets[1].period" and caught.value.line == 8


def test_quota_share_budget_reads_the_scopes_part_of_the_window(tmp_path: Path) -> None:
    from datetime import UTC

    from halton_meter.budget_model import parse_budget
    from halton_meter.budgets.quota_share import quota_share_views
    from tests.test_billing_quota import _observe, sample_row

    con = connect(tmp_path / "db.sqlite")
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
    reset = str(int(now) + 3 * 3600)
    for minutes, project, prompt, used in ((30, "alpha", 4000, "0.30"), (10, "beta", 6000, "0.70")):
        at = datetime.fromtimestamp(now - minutes * 60, UTC)
        found = sample_row(
            requested_at=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"), project=project,
            client_process="claude", input_tokens=prompt, cache_read_tokens=0,
            cache_write_tokens=0, output_tokens=0, cost_nanousd=None,
        )  # fmt: skip
        families = {"anthropic-ratelimit-": {"unified-5h-utilization": used,
                                             "unified-5h-reset": reset}}  # fmt: skip
        _observe(con, found, "anthropic:subscription:org-test", families)
    budget = parse_budget(
        0,
        {
            "name": "alpha-5h",
            "project": "alpha",
            "quota_window": "unified-*",
            "quota_percent": 50,
        },
    )
    (view,) = quota_share_views(con, [budget], datetime.fromtimestamp(now, UTC))
    (window,) = view["windows"]
    # alpha made 4000 of 10000 tokens of a window at 70 %: 28 % of it, 56 % of its 50 %.
    assert window["scope_used"] == pytest.approx(0.28)
    assert window["percent"] == 56.0 and window["thresholds_reached"] == [50]
    with pytest.raises(ValueError, match="not both"):
        parse_budget(0, {"name": "x", "amount_usd": 5, "quota_percent": 5, "quota_window": "a"})


def test_cli_show_and_report_give_spend_and_forecast(tmp_path: Path) -> None:
    import os
    import subprocess
    import time

    from halton_meter.ledger.row import INSERT_SQL
    from tests.conftest import METER

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('# mine\n[tagging]\ndefault_project = "misc"\n')
    env = {**os.environ, "HALTON_METER_HOME": str(home), "TZ": "UTC"}

    def meter(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [METER, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    added = meter("budget", "add", "acme", "--amount", "50", "--project", "acme", "--warn", "80")
    assert added.returncode == 0, added.stderr
    assert "# mine" in (home / "config.toml").read_text()  # comments kept
    con = connect(home / "db.sqlite")
    now = time.time()
    con.execute(INSERT_SQL, row("acme", 12 * 10**9, now - 1).values())  # $12
    con.execute(INSERT_SQL, row("acme", 99 * 10**9, now - 1, "subscription").values())
    con.close()
    shown = json.loads(meter("budget", "show", "acme", "--json").stdout)
    assert shown["spent_usd"] == 12.0 and shown["percent"] == 24.0
    assert shown["window"]["start"].endswith("T00:00:00+00:00")
    assert shown["thresholds"] == [80] and shown["state"] == "ok"
    report = json.loads(meter("report", "--json").stdout)
    assert report["forecasts"]["budgets"][0]["name"] == "acme"
    assert report["forecasts"]["projects"][0]["project"] == "acme"
    assert meter("budget", "show", "nope").returncode == 1
    assert meter("budget", "add", "acme", "--amount", "5").returncode == 1  # name taken
    assert meter("budget", "edit", "acme", "--period", "year").returncode == 2
    assert meter("budget", "rm", "acme").returncode == 0
    assert "budgets" not in (home / "config.toml").read_text()


def test_cli_adds_and_edits_a_quota_share_budget(tmp_path: Path) -> None:
    """A subscription user's budget is a share of a quota window, set with one command; the
    kinds are exclusive, and switching one to the other drops the old amount."""
    import os
    import subprocess
    import tomllib

    from tests.conftest import METER

    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HALTON_METER_HOME": str(home)}

    def meter(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [METER, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def table() -> dict[str, object]:
        (found,) = tomllib.loads((home / "config.toml").read_text())["budgets"]
        return dict(found)

    added = meter("budget", "add", "side", "--quota-share", "30", "--window", "unified-5h",
                  "--client", "codex", "--block", "--json")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert table() == {"name": "side", "quota_percent": 30.0, "quota_window": "unified-5h",
                       "period": "month", "client": "codex", "action": "block"}  # fmt: skip
    assert json.loads(added.stdout)["name"] == "side"
    edited = meter("budget", "edit", "side", "--quota-share", "50")
    assert edited.returncode == 0, edited.stderr
    assert table()["quota_percent"] == 50.0 and table()["quota_window"] == "unified-5h"
    assert meter("budget", "edit", "side", "--amount", "20").returncode == 0
    assert "quota_percent" not in table() and table()["amount_usd"] == 20.0
    assert (
        meter("budget", "edit", "side", "--quota-share", "40", "--window", "*-7d").returncode == 0
    )
    assert "amount_usd" not in table() and table()["quota_window"] == "*-7d"
    # One kind of amount, and a share needs its window: usage errors, nothing written.
    before = (home / "config.toml").read_text()
    for argv in (
        ("budget", "add", "two", "--amount", "5", "--quota-share", "10", "--window", "x"),
        ("budget", "add", "two"),
        ("budget", "add", "two", "--quota-share", "10"),
        ("budget", "add", "two", "--amount", "5", "--window", "unified-5h"),
        ("budget", "edit", "side", "--amount", "5", "--quota-share", "10"),
    ):
        refused = meter(*argv)
        assert refused.returncode == 2, (argv, refused.stderr)
    assert (home / "config.toml").read_text() == before
    # A share above 100 % is the config's own check, naming the key.
    over = meter("budget", "add", "two", "--quota-share", "150", "--window", "unified-5h")
    assert over.returncode != 0 and "quota_percent" in over.stderr


def test_unreadable_holds_let_traffic_through(ledger: Path, tmp_path: Path) -> None:
    now = epoch("2026-12-10T09:00", PARIS)
    budget = Budget("acme", 1.0, "day", scope=Scope(project=("acme",)), action="block",
                    timezone="Europe/Paris")  # fmt: skip
    tracker = BudgetTracker([budget], tmp_path, ledger, clock=lambda: now)
    assert tracker.seed()
    tracker.add(row("acme", 2 * 10**9, now - 60))
    assert tracker.check("anthropic", "acme", None, None, None) is not None
    (tmp_path / "budget-holds.json").write_text("{not json")
    tracker.tick()
    assert tracker.check("anthropic", "acme", None, None, None) is None
    (tmp_path / "budget-holds.json").write_text('{"paused": [], "allow_until": {}}')
    tracker.tick()
    assert tracker.check("anthropic", "acme", None, None, None) is not None
    (tmp_path / "budget-holds.json").write_text('{"paused": ["acme"], "allow_until": {}}')
    tracker.tick()
    assert tracker.check("anthropic", "acme", None, None, None) is None
