"""The dashboard's budgets panel in Debian's headless chromium (Playwright, as in
test_dashboard.py): each budget's window, spend, limit, share used, thresholds reached, state
(a blocking budget flagged) and forecast, a quota-share budget's window and share, the
per-project forecasts, and the banner for an alert that could not be delivered. Expected
figures come from the seeded spend, headers and calendar, worked out here, not from the meter.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from halton_meter.ledger.db import connect
from halton_meter.ledger.row import new_request_id
from halton_meter.timewindow import ledger_timestamp
from tests.apihelpers import Api, seed_rows
from tests.conftest import FakeUpstream, start_meter
from tests.test_billing_quota import _observe
from tests.test_dashboard import ARTIFACTS, CHROMIUM, browser
from tests.test_ledger import sample_row

__all__ = ["browser"]  # the module's chromium, shared with test_dashboard.py

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/test does)"
)

BUDGETS = """
[alerts]
desktop = false

[[budgets]]
name = "shop-month"
amount_usd = 100
period = "month"
project = "shop"
timezone = "UTC"

[[budgets]]
name = "batch-day"
amount_usd = 1
period = "day"
project = "batch"
action = "block"
timezone = "UTC"

[[budgets]]
name = "studio-5h"
project = "studio"
quota_window = "unified-5h"
quota_percent = 30
thresholds = [50, 100, 200]
"""


def cells(page: Any, selector: str) -> dict[str, list[str]]:
    """Each row of a table by its first cell: the cells' text."""
    rows: list[list[str]] = page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))",
    )
    return {row[0]: row[1:] for row in rows}


def test_budgets_panel_shows_state_thresholds_and_forecast(
    fake_upstream: FakeUpstream, tmp_path: Path, browser: Any
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    now = datetime.now(UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    at = max(now - timedelta(minutes=2), day_start)  # inside today and this month, in UTC
    seed_rows(
        home / "db.sqlite",
        [
            {"at": at, "project": "shop", "cost_nanousd": 60 * 10**9},
            {"at": at, "project": "batch", "cost_nanousd": 3 * 10**9},
        ],
    )
    # A Claude subscription's 5-hour window at 45 %, all of it studio's: 150 % of its 30 %.
    reset = int(now.timestamp()) + 3 * 3600
    con = connect(home / "db.sqlite")
    row = replace(
        sample_row(), id=new_request_id(int(at.timestamp() * 1000)), project="studio",
        requested_at=ledger_timestamp(at), billing="subscription",
    )  # fmt: skip
    unified = {"unified-5h-utilization": "0.45", "unified-5h-reset": str(reset)}
    _observe(con, row, "anthropic:subscription:org-studio", {"anthropic-ratelimit-": unified})
    con.commit()
    con.close()
    failure = {"key": "shop-month|x|80", "channel": "webhook", "problem": "HTTP 500", "at": 1.0}
    (home / "budget-alerts.json").write_text(json.dumps({"fired": {}, "failures": [failure]}))
    meter = start_meter(home, fake_upstream, extra_config=BUDGETS)
    try:
        site = Api.of(meter)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{site.base}/#token={site.token}")
        page.wait_for_selector("#budgets-table")
        loaded = time.time()
        table = cells(page, "#budgets-table")

        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(now.year, now.month)[1]
        month_end = month_start + timedelta(days=days)
        window, spent, limit, used, thresholds, state, forecast = table["shop-month"]
        assert window == f"{month_start:%Y-%m-%d} 00:00 to {month_end:%Y-%m-%d} 00:00 UTC"
        assert (spent, limit, used) == ("$60.00", "$100.00", "60.0%")
        assert thresholds == "50% ✓ 80% 100%"
        assert state == "ok"
        elapsed = loaded - month_start.timestamp()
        if elapsed < 3600:
            assert forecast == "too early in the period for a forecast"
        else:
            projected = 60 + 60 / elapsed * (month_end.timestamp() - loaded)
            assert forecast.startswith("at this pace: $") and forecast.endswith(
                f"of $100.00 by {days} {now:%b}"
            )
            shown = float(forecast.split("$")[1].split(" ")[0].replace(",", ""))
            assert shown == pytest.approx(projected, rel=1e-3)

        window, spent, limit, used, thresholds, state, _ = table["batch-day"]
        assert window.startswith(f"{day_start:%Y-%m-%d} 00:00 to ")
        assert (spent, limit, used) == ("$3.00", "$1.00", "300.0%")
        assert thresholds == "50% ✓ 80% ✓ 100% ✓"
        assert state == "blocking"
        flagged = page.eval_on_selector_all(
            "#budgets-table tbody tr.quota-warn", "rows => rows.map(r => r.cells[0].innerText)"
        )
        assert flagged == ["batch-day"]

        shares = cells(page, "#budget-shares-table")
        window, share, used, thresholds, state, resets = shares["studio-5h"]
        assert (window, share, used) == ("unified-5h (anthropic)", "30%", "150.0%")
        assert thresholds == "50% ✓ 100% ✓ 200%"
        assert state == "over"  # it only warns
        assert resets == datetime.fromtimestamp(reset, UTC).strftime("%Y-%m-%d %H:%M UTC")

        projects = cells(page, "#project-forecasts")
        assert projects["shop"][0] == "$60.00" and projects["batch"][0] == "$3.00"
        banner = page.inner_text("#budget-alert-failures")
        assert "1 alert(s) not delivered" in banner and "webhook: HTTP 500" in banner
        page.locator("#budgets-panel").screenshot(path=str(ARTIFACTS / "budgets-panel.png"))
        assert errors == []
        context.close()
    finally:
        assert meter.stop() == 0
