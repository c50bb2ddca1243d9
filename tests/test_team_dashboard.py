"""The local dashboard's own files served by a real team server on a real PostgreSQL, with rows
from two real daemons paired through the CLI: the team endpoints answer field for field as the
local API does, and in Debian's headless chromium the overview's totals are the sum over both
machines, the machine filter narrows them to one, and a project page loads with its requests
and CSV export. Screenshots go to tests/artifacts/team-dashboard/ (not in git).

Expected costs are worked out by hand in tests/test_team_server.py (published prices)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.apihelpers import Api
from tests.conftest import ROOT, FakeUpstream, Meter
from tests.team_fixtures import TeamServer, send_calls, start_paired_meter, wait_synced
from tests.test_dashboard import ARGS, CHROMIUM, chart_totals
from tests.test_team_server import gpt41_call_nanousd, sonnet_call_nanousd

ARTIFACTS = ROOT / "tests" / "artifacts" / "team-dashboard"
WORKSPACE = "dashboard-team"


@dataclass
class Team:
    server: TeamServer
    alice: Api
    bob: Api
    machine_ids: dict[str, str]  # name -> the server's machine id

    def get(self, path: str, **params: str) -> Any:
        query = "&".join(f"{k}={v}" for k, v in {"workspace": WORKSPACE, **params}.items())
        return self.server.admin(f"{path}{'&' if '?' in path else '?'}{query}")


@pytest.fixture(scope="module")
def team(
    fake_upstream: FakeUpstream, team_server: TeamServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    home = tmp_path_factory.mktemp("team-dashboard")
    meters: list[Meter] = []
    try:
        for name in ("alice-laptop", "bob-desktop"):
            meters.append(
                start_paired_meter(fake_upstream, home / name, team_server, WORKSPACE, name)
            )
        alice, bob = meters
        send_calls(alice, "web", anthropic=3, openai=2)
        send_calls(bob, "web", anthropic=1)
        send_calls(bob, "api", openai=4)
        alice.wait_rows("web", 5)
        bob.wait_rows("web", 1)
        bob.wait_rows("api", 4)
        wait_synced(team_server, WORKSPACE, 10)
        status = team_server.admin(f"/v1/team/status?workspace={WORKSPACE}")
        ids = {m["name"]: m["machine_id"] for m in status["machines"]}
        yield Team(team_server, Api.of(alice), Api.of(bob), ids)
    finally:
        for meter in meters:
            meter.stop()


def same_fields(local: Any, team: Any, where: str = "") -> None:
    """Every field the local API gives is in the team's answer with the same value (the team
    may add its own: machines, users, the machines' own cost)."""
    if isinstance(local, dict):
        assert isinstance(team, dict), where
        for key, value in local.items():
            assert key in team, f"{where}.{key} missing from the team server's answer"
            same_fields(value, team[key], f"{where}.{key}")
    elif isinstance(local, list):
        assert isinstance(team, list) and len(team) == len(local), where
        for index, (mine, theirs) in enumerate(zip(local, team, strict=True)):
            same_fields(mine, theirs, f"{where}[{index}]")
    elif isinstance(local, float):
        assert team == pytest.approx(local, abs=0.05), where
    else:
        assert team == local, where


def keyed(items: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: tuple(str(item[k]) for k in keys))


def test_team_endpoints_answer_as_the_local_api(team: Team) -> None:
    """One machine's figures on the team server (machine filter) are its local API's, field
    by field; the whole team's are the sum of both machines'."""
    month = datetime.now(UTC).date().replace(day=1).isoformat()
    for name, local in (("alice-laptop", team.alice), ("bob-desktop", team.bob)):
        machine = team.machine_ids[name]
        for path in ("/v1/stats", f"/v1/stats?since={month}"):
            mine, theirs = local.json(path), team.get(path, machine=machine)
            # The order of equal-cost providers is not part of the contract.
            for group, keys in (("by_provider", ("provider",)), ("by_day_by_provider", ())):
                if keys:
                    mine[group], theirs[group] = (
                        keyed(mine[group], *keys),
                        keyed(theirs[group], *keys),
                    )
            same_fields(mine, theirs, f"{name} {path}")
        projects = local.json("/v1/projects")
        same_fields(projects, team.get("/v1/projects", machine=machine), f"{name} projects")
        for project in projects:
            slug = project["slug"]
            for path in (f"/v1/projects/{slug}", f"/v1/projects/{slug}/stats"):
                same_fields(local.json(path), team.get(path, machine=machine), f"{name} {path}")
            path = f"/v1/projects/{slug}/requests?limit=3"
            mine, theirs = local.json(path), team.get(path, machine=machine)
            assert (mine["next_cursor"] is None) == (theirs["next_cursor"] is None)
            del mine["next_cursor"], theirs["next_cursor"]
            same_fields(mine, theirs, f"{name} {path}")
            assert {item["machine"] for item in theirs["items"]} == {name}
            local_csv = local.get(f"/v1/projects/{slug}/requests.csv").text
            status, team_csv = team.server.api(
                "GET",
                f"/v1/projects/{slug}/requests.csv?workspace={WORKSPACE}&machine={machine}",
                token=team.server.admin_token,
            )
            assert status == 200
            local_rows = list(csv.DictReader(io.StringIO(local_csv)))
            team_rows = list(csv.DictReader(io.StringIO(team_csv)))
            same_fields(local_rows, team_rows, f"{name} {slug} CSV")

    # Both machines: the team's summary is the sum of the two local ones.
    both = team.get("/v1/stats")["summary"]
    local_summaries = [api.json("/v1/stats")["summary"] for api in (team.alice, team.bob)]
    for key in ("total_requests", "total_cost_nanousd", "total_output_tokens", "total_errors"):
        assert both[key] == sum(s[key] for s in local_summaries), key
    assert both["total_cost_nanousd"] == 4 * sonnet_call_nanousd() + 6 * gpt41_call_nanousd()


def test_team_dashboard_in_chromium(team: Team) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/test does)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sonnet, gpt = sonnet_call_nanousd(), gpt41_call_nanousd()
    server = team.server
    # A manager's read-only view: a viewer of this workspace is all the dashboard needs.
    viewer = server.cli("account-add", "manager", "--workspace", WORKSPACE).stdout.strip()
    assert viewer.startswith("hmv_")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            # Without a token the page says how to log in, and shows no figure.
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{server.url}/dashboard/?workspace={WORKSPACE}")
            page.wait_for_selector("#login-link")
            assert "account's token" in page.inner_text("main")
            context.close()

            context = browser.new_context(
                viewport={"width": 1280, "height": 1100}, accept_downloads=True
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("requestfailed", lambda request: errors.append(request.url))
            page.goto(f"{server.url}/dashboard/?workspace={WORKSPACE}#token={viewer}")
            page.wait_for_selector("#chart-spend-30d")
            page.wait_for_selector("#machines-table")
            assert "#token" not in page.url and f"workspace={WORKSPACE}" in page.url
            # The overview adds up both machines: 10 calls, 4 Sonnet + 6 GPT-4.1.
            assert page.inner_text("#card-requests .value") == "10"
            totals = chart_totals(page, "chart-spend-30d")
            assert totals == pytest.approx(
                {"anthropic": 4 * sonnet / 1e9, "openai": 6 * gpt / 1e9}, abs=1e-5
            )
            machines = _table(page, "#machines-table")
            assert {row[0]: row[1] for row in machines} == {
                "alice-laptop": "5",
                "bob-desktop": "5",
            }
            assert "Team server" in page.inner_text("footer")
            page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

            # Projects, then a project page with both machines' requests.
            page.click('nav a[data-nav="projects"]')
            page.wait_for_selector('#projects-table tr[data-slug="web"]')
            assert [row[0] for row in _table(page, "#projects-table")] == ["web", "api"]
            page.click('#projects-table tr[data-slug="web"] a')
            page.wait_for_selector("#requests-table")
            page.wait_for_selector("#chart-cache")
            assert page.inner_text("#card-project-requests .value") == "6"
            assert chart_totals(page, "chart-requests") == {"requests": 6}
            requests = _table(page, "#requests-table")
            assert sorted(row[1] for row in requests) == ["alice-laptop"] * 5 + ["bob-desktop"]
            assert page.locator("#reprice-panel").count() == 0  # re-pricing is local only
            assert "null" not in page.inner_text("main")
            assert "undefined" not in page.inner_text("main")
            page.screenshot(path=str(ARTIFACTS / "project.png"), full_page=True)

            with page.expect_download() as download_info:
                page.click("#csv-export")
            saved = download_info.value.path()
            rows = list(csv.DictReader(io.StringIO(Path(saved).read_text())))
            assert len(rows) == 6 and {row["project"] for row in rows} == {"web"}
            assert sum(int(row["cost_nanousd"]) for row in rows) == 4 * sonnet + 2 * gpt
            assert errors == []  # under the page's CSP, the CSV download included
            context.close()

            # The machine filter narrows every figure to one machine. (Playwright's polling
            # waits evaluate strings, which the page's CSP forbids: this part bypasses it.)
            context = browser.new_context(viewport={"width": 1280, "height": 1100}, bypass_csp=True)
            page = context.new_page()
            page.goto(f"{server.url}/dashboard/?workspace={WORKSPACE}#token={viewer}")
            page.wait_for_selector("#machines-table")
            page.select_option("#machine-filter", team.machine_ids["bob-desktop"])
            page.wait_for_function(
                "document.querySelectorAll('#machines-table tbody tr').length === 1"
            )
            assert page.inner_text("#card-requests .value") == "5"
            assert chart_totals(page, "chart-spend-30d") == pytest.approx(
                {"anthropic": sonnet / 1e9, "openai": 4 * gpt / 1e9}, abs=1e-5
            )
            page.screenshot(path=str(ARTIFACTS / "overview-bob.png"), full_page=True)
            page.select_option("#machine-filter", "")
            page.wait_for_function(
                "document.querySelectorAll('#machines-table tbody tr').length === 2"
            )

            context.close()
        finally:
            browser.close()


def _table(page: Any, selector: str) -> list[list[str]]:
    rows: list[list[str]] = page.evaluate(
        """(selector) => [...document.querySelectorAll(`${selector} tbody tr`)].map(
            (tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent.trim()))""",
        selector,
    )
    return rows
