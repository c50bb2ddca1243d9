"""The built-in dashboard in Debian's headless chromium, driven by Playwright: it loads, its
charts hold the ledger's numbers, a call made meanwhile shows up live, the CSV export holds
the rows, and it has a dark mode. Screenshots go to tests/artifacts/dashboard/ (not in git)."""

from __future__ import annotations

import csv
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.apihelpers import OPENAI_CHAT, Api, openai_call, seed_rows
from tests.conftest import ROOT, FakeUpstream, Meter, start_meter
from tests.test_clients import chat_body, metered
from tests.test_proxy import curl_args

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROJECT = "dashboard-demo"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/test does)"
)


@pytest.fixture(scope="module")
def site(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    meter = start_meter(tmp_path_factory.mktemp("dashboard-home"), fake_upstream)
    now = datetime.now(UTC).replace(microsecond=0)
    specs: list[dict[str, Any]] = []
    for day in range(20):  # three weeks of history, two providers
        at = now - timedelta(days=day, minutes=30)
        specs.append({"at": at, "project": PROJECT, "cost_nanousd": 2_000_000_000})
        specs.append(
            {
                "at": at + timedelta(minutes=1),
                "project": PROJECT,
                "provider": "openai",
                "api": "chat",
                "host": "api.openai.com",
                "model": "gpt-4.1",
                "cost_nanousd": 500_000_000,
            }
        )
    specs.append({"at": now - timedelta(hours=2), "project": PROJECT, "model": "mystery-model-7"})
    seed_rows(meter.ledger, specs)
    yield Api.of(meter)
    assert meter.stop() == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


def chart_totals(page: Any, canvas_id: str) -> dict[str, float]:
    """Sum of each dataset of the Chart.js chart drawn on that canvas."""
    result: dict[str, float] = page.evaluate(
        """(id) => {
            const chart = Chart.getChart(document.getElementById(id));
            const sums = {};
            for (const set of chart.data.datasets) {
                sums[set.label] = set.data.reduce((a, b) => a + (b || 0), 0);
            }
            return sums;
        }""",
        canvas_id,
    )
    return result


def project_ids(meter: Meter, project: str) -> list[str]:
    con = sqlite3.connect(meter.ledger)
    try:
        found = con.execute(
            "SELECT id FROM requests WHERE project = ? ORDER BY requested_at DESC, id DESC",
            (project,),
        ).fetchall()
    finally:
        con.close()
    return [row[0] for row in found]


def test_overview_loads_with_charts_in_light_and_dark(site: Api, browser: Any) -> None:
    context = browser.new_context(color_scheme="light", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(request.url))
    page.goto(f"{site.base}/#token={site.token}")
    page.wait_for_selector("#chart-spend-30d")
    page.wait_for_function("document.body.dataset.refreshes >= 1")
    # The token moved from the URL into this tab's storage.
    assert "#token" not in page.url
    assert page.evaluate("sessionStorage.getItem('halton-meter-token')") == site.token
    totals = chart_totals(page, "chart-spend-30d")
    # 20 days x ($2 anthropic + $0.50 openai), all inside the last 30 days.
    assert totals == pytest.approx({"anthropic": 40.0, "openai": 10.0})
    assert page.inner_text("#card-requests .value") == "41"
    assert "unpriced" in page.inner_text("#unpriced-warning")
    assert "mystery-model-7" in page.inner_text("#unpriced-warning")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.screenshot(path=str(ARTIFACTS / "overview-light.png"), full_page=True)
    light_background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme-toggle")
    page.wait_for_function("document.documentElement.dataset.theme === 'dark'")
    page.wait_for_selector("#chart-spend-30d")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light_background
    page.screenshot(path=str(ARTIFACTS / "overview-dark.png"), full_page=True)
    assert errors == []
    context.close()
    # A browser that prefers dark starts dark.
    dark = browser.new_context(color_scheme="dark")
    page = dark.new_page()
    page.goto(site.base + "/")
    page.wait_for_selector("#chart-spend-30d")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    dark.close()


def test_project_page_goes_live_and_exports_csv(site: Api, browser: Any, tmp_path: Path) -> None:
    # Playwright's polling waits evaluate strings, which the page's CSP forbids; the first
    # test runs the dashboard under its CSP and checks it raises no error.
    context = browser.new_context(
        accept_downloads=True, bypass_csp=True, viewport={"width": 1280, "height": 1400}
    )
    page = context.new_page()
    page.goto(f"{site.base}/#/projects")
    page.wait_for_selector(f'#projects-table tr[data-slug="{PROJECT}"]')
    assert "unpriced" in page.inner_text(f'#projects-table tr[data-slug="{PROJECT}"]')
    page.screenshot(path=str(ARTIFACTS / "projects.png"), full_page=True)
    page.click(f'#projects-table tr[data-slug="{PROJECT}"] a')
    page.wait_for_selector("#requests-table")
    page.wait_for_selector("#chart-cache")
    assert chart_totals(page, "chart-spend") == pytest.approx({"anthropic": 40.0, "openai": 10.0})
    assert chart_totals(page, "chart-requests") == {"requests": 41}
    models = page.inner_text("#models-table")
    assert "gpt-4.1" in models and "mystery-model-7" in models and "unpriced" in models
    assert "null" not in page.inner_text("main") and "undefined" not in page.inner_text("main")
    page.click('button[data-range="all"]')
    page.wait_for_selector('button[data-range="all"][aria-pressed="true"]')
    page.screenshot(path=str(ARTIFACTS / "project.png"), full_page=True)

    # Live: a real call through the meter appears without a reload.
    rows_before = page.locator("#requests-table tbody tr").count()
    openai_call(site.meter, PROJECT, "gpt-4.1", tmp_path / "reply")
    made = time.monotonic()
    page.wait_for_function(
        f"document.querySelectorAll('#requests-table tbody tr').length > {rows_before} || "
        "document.querySelector('#card-project-requests .value').textContent === '42'",
        timeout=2000,
    )
    page.wait_for_function(
        "document.querySelector('#card-project-requests .value').textContent === '42'",
        timeout=max(1, int((2 - (time.monotonic() - made)) * 1000)),
    )
    newest = project_ids(site.meter, PROJECT)[0]
    assert page.locator(f'#requests-table tr[data-id="{newest}"]').count() == 1
    page.screenshot(path=str(ARTIFACTS / "project-live.png"), full_page=True)

    # Paging: older and back.
    first_page = page.locator("#requests-table tbody tr").first.get_attribute("data-id")
    page.click("#page-older")
    page.wait_for_function(
        f"document.querySelector('#requests-table tbody tr').dataset.id !== '{first_page}'"
    )
    page.click("#page-newer")
    page.wait_for_function(
        f"document.querySelector('#requests-table tbody tr').dataset.id === '{first_page}'"
    )

    with page.expect_download() as download_info:
        page.click("#csv-export")
    target = tmp_path / "export.csv"
    download_info.value.save_as(target)
    with target.open(newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["id"] for line in lines] == project_ids(site.meter, PROJECT)
    assert len(lines) == 42
    assert {line["cost_usd"] for line in lines} >= {"2.000000000", "0.500000000", ""}
    context.close()


def test_repricing_from_the_dashboard_uses_the_token(site: Api, browser: Any) -> None:
    project = "reprice-demo"
    (row,) = seed_rows(
        site.meter.ledger,
        [
            {
                "at": datetime.now(UTC) - timedelta(hours=1),
                "project": project,
                "model": "claude-sonnet-4-5",
                "input_tokens": 1000,
                "output_tokens": 100,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "cache_write_1h_tokens": None,
                "web_search_requests": None,
                "cost_nanousd": 1,  # stale
            }
        ],
    )
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(f"{site.base}/#/projects/{project}")  # no token: the button says how to get one
    page.wait_for_selector("#reprice-preview")
    assert page.locator("#reprice-preview").is_disabled()
    assert "halton-meter dashboard" in page.inner_text("#reprice-panel")
    page.goto(f"{site.base}/#token={site.token}")
    page.wait_for_selector("#chart-spend-30d")
    page.goto(f"{site.base}/#/projects/{project}")
    page.wait_for_selector("#reprice-preview:not([disabled])")
    page.click("#reprice-preview")
    page.wait_for_selector("#reprice-apply")
    assert "1 row(s) would change" in page.inner_text("#reprice-result")
    assert "null" not in page.inner_text("main")  # no absent part shown as text
    page.click("#reprice-apply")
    # Claude Sonnet 4.5 at $3/M input and $15/M output: 1,000 and 100 tokens = $0.0045.
    page.wait_for_function(
        "document.querySelector('#card-project-spend .value').textContent === '$0.0045'"
    )
    con = sqlite3.connect(site.meter.ledger)
    try:
        cost = con.execute("SELECT cost_nanousd FROM requests WHERE id = ?", (row.id,)).fetchone()
    finally:
        con.close()
    assert cost == (4_500_000,)
    page.screenshot(path=str(ARTIFACTS / "reprice.png"), full_page=True)
    context.close()


def test_failed_calls_do_not_raise_the_unpriced_banner(
    fake_upstream: FakeUpstream, browser: Any, tmp_path: Path
) -> None:
    """Issue 16, item 6: real failed calls (401, 429, 500, 529) with no usage cost nothing,
    so the banner and the badges flag only the model we truly cannot price."""
    meter = start_meter(tmp_path / "home", fake_upstream)
    try:
        api = Api.of(meter)
        openai_call(meter, "steady", "gpt-4.1", tmp_path / "ok")
        for scenario in ("error-401", "error-429", "error-500", "error-529"):
            done = metered(
                meter,
                "steady",
                *curl_args(
                    OPENAI_CHAT, chat_body("gpt-4.1", stream=False), scenario, tmp_path / "e"
                ),
            )
            assert done.returncode == 0, done.stderr
        seed_rows(meter.ledger, [{"at": datetime.now(UTC), "project": "odd", "model": "mystery-9"}])
        meter.wait_rows("steady", 5)
        summary = api.json("/v1/stats")["summary"]
        assert (summary["total_requests"], summary["unpriced_requests"]) == (6, 1)
        page = browser.new_context(bypass_csp=True).new_page()
        page.goto(f"{api.base}/#token={api.token}")
        page.wait_for_selector("#unpriced-warning")
        banner = page.inner_text("#unpriced-warning")
        assert "1 unpriced" in banner and "mystery-9" in banner and "gpt-4.1" not in banner
        page.goto(f"{api.base}/#/projects")
        page.wait_for_selector('#projects-table tr[data-slug="steady"]')
        assert "unpriced" not in page.inner_text('#projects-table tr[data-slug="steady"]')
        assert "unpriced" in page.inner_text('#projects-table tr[data-slug="odd"]')
        page.context.close()
    finally:
        assert meter.stop() == 0
