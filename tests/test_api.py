"""The loopback API on a real daemon and a real ledger: the dashboard contract, exact money,
pagination that holds while rows arrive, CSV, /metrics and re-pricing."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.apihelpers import Api, openai_call, seed_rows
from tests.conftest import METER, FakeUpstream, Meter, free_port, start_meter, wait_for
from tests.fakeupstream import catalog
from tests.test_clients import GPT_4_1, SONNET_4_5, nano

CONTRACT_PATHS = {
    "/health",
    "/v1/daemon/status",
    "/v1/projects",
    "/v1/projects/{slug}",
    "/v1/stats",
    "/v1/projects/{slug}/stats",
    "/v1/projects/{slug}/requests",
    "/v1/projects/{slug}/requests.csv",
    "/metrics",
    "/v1/reprice",
}

RAW = catalog.OPENAI_CHAT_USAGE
CACHED = RAW["prompt_tokens_details"]["cached_tokens"]
WRITTEN = RAW["prompt_tokens_details"]["cache_write_tokens"]
# gpt-4.1 at its published prices: uncached input and cache writes at $2/M, cached $0.50/M,
# output $8/M (tests/test_clients.py works the same sum out for the SDKs).
GPT_CALL_NANO = int(
    nano(GPT_4_1["input"], RAW["prompt_tokens"] - CACHED)
    + nano(GPT_4_1["cached"], CACHED)
    + nano(GPT_4_1["output"], RAW["completion_tokens"])
)


@pytest.fixture(scope="module")
def api_meter(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Meter]:
    running = start_meter(tmp_path_factory.mktemp("api-home"), fake_upstream)
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def api(api_meter: Meter) -> Api:
    return Api.of(api_meter)


def test_openapi_lists_the_contract(api: Api) -> None:
    assert api.json("/health") == {"status": "ok", "version": api.json("/health")["version"]}
    spec = api.json("/openapi.json")
    assert set(spec["paths"]) >= CONTRACT_PATHS
    assert set(spec["paths"]["/v1/reprice"]) == {"post"}


def test_a_metered_call_shows_with_exact_money(
    api: Api, api_meter: Meter, project: str, tmp_path: Path
) -> None:
    assert GPT_CALL_NANO == 13_730_000  # $0.01373: 1,373 millicents exactly
    openai_call(api_meter, project, "gpt-4.1", tmp_path / "a")
    openai_call(api_meter, project, "mystery-model-9", tmp_path / "b")  # no published price
    rows = api_meter.wait_rows(project, 2)
    stats = api.json(f"/v1/projects/{project}/stats?since=today")
    summary = stats["summary"]
    assert summary["total_requests"] == 2
    assert summary["total_cost_usd_minor_units"] == 1373
    assert summary["total_cost_usd"] == "0.013730000"
    assert summary["total_cost_nanousd"] == GPT_CALL_NANO
    assert summary["unpriced_requests"] == 1
    uncached = RAW["prompt_tokens"] - CACHED - WRITTEN
    assert summary["total_input_tokens"] == 2 * uncached
    assert summary["total_cache_read_tokens"] == 2 * CACHED
    assert summary["total_cache_write_tokens"] == 2 * WRITTEN
    assert summary["total_output_tokens"] == 2 * RAW["completion_tokens"]
    reasoning = RAW["completion_tokens_details"]["reasoning_tokens"]
    assert summary["total_thinking_tokens"] == 2 * reasoning
    assert summary["cache_hit_rate"] == round(CACHED / RAW["prompt_tokens"], 4)
    assert summary["last_request_at"] == max(row["requested_at"] for row in rows)
    assert summary["active_projects"] == 1 and summary["models_in_use"] == 2
    today = datetime.now(UTC).date().isoformat()
    assert stats["by_day"] == [
        {
            "date": today,
            "requests": 2,
            "errors": 0,
            "cost_usd_minor_units": 1373,
            "cost_usd": "0.013730000",
            "cost_nanousd": GPT_CALL_NANO,
            "unpriced_requests": 1,
            "cache_hit_rate": round(CACHED / RAW["prompt_tokens"], 4),
        }
    ]
    assert stats["by_day_by_provider"] == [
        {
            "date": today,
            "provider": "openai",
            "requests": 2,
            "cost_usd_minor_units": 1373,
            "cost_usd": "0.013730000",
            "cost_nanousd": GPT_CALL_NANO,
        }
    ]
    by_model = {item["model"]: item for item in stats["by_model"]}
    assert by_model["gpt-4.1"]["cost_usd_minor_units"] == 1373
    assert by_model["gpt-4.1"]["unpriced"] is False
    # Unpriced is flagged and null, never $0.
    assert by_model["mystery-model-9"]["unpriced"] is True
    assert by_model["mystery-model-9"]["cost_usd_minor_units"] is None
    assert by_model["mystery-model-9"]["cost_usd"] is None

    page = api.json(f"/v1/projects/{project}/requests?limit=10")
    assert page["total"] == 2 and page["next_cursor"] is None
    newest, oldest = page["items"]
    assert [newest["id"], oldest["id"]] == [rows[1]["id"], rows[0]["id"]]
    assert newest["cost_usd_minor_units"] is None and newest["unpriced"] is True
    assert oldest["cost_usd_minor_units"] == 1373 and oldest["status"] == "success"
    assert oldest["thinking_tokens"] == reasoning and oldest["mode"] == "thinking"

    listing = {item["slug"]: item for item in api.json("/v1/projects")}
    assert listing[project] == api.json(f"/v1/projects/{project}")
    mine = listing[project]["stats"]
    assert mine["all_time_requests"] == 2
    assert mine["all_time_cost_usd_minor_units"] == 1373
    assert mine["cost_usd_this_month_minor_units"] == 1373
    assert mine["previous_month_cost_usd_minor_units"] == 0
    assert mine["top_model"] == "gpt-4.1" and mine["top_provider"] == "openai"
    assert mine["last_active_at"] == summary["last_request_at"]

    status = api.json("/v1/daemon/status")
    assert status["last_seen_at"] == summary["last_request_at"]
    assert status["request_count_last_hour"] >= 2
    assert api.get("/v1/projects/no-such-project").status_code == 404


def test_windows_days_and_partial_days(api: Api, api_meter: Meter, project: str) -> None:
    """Whole days come from the rollup, partial days from the rows: both must agree."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    seed_rows(
        api_meter.ledger,
        [
            {"at": day + timedelta(hours=10), "project": project, "cost_nanousd": 1_000_000},
            {"at": day + timedelta(hours=14), "project": project, "cost_nanousd": 2_000_000},
            {"at": day + timedelta(days=2, hours=1), "project": project, "cost_nanousd": 4_000_000},
            {"at": day + timedelta(days=2, hours=2), "project": project, "cost_nanousd": None},
        ],
    )
    base = f"/v1/projects/{project}/stats"
    first = day.date().isoformat()
    whole = api.json(f"{base}?since={first}")
    assert whole["summary"]["total_cost_nanousd"] == 7_000_000
    assert whole["summary"]["total_cost_usd_minor_units"] == 700
    days = [(d["date"], d["requests"], d["cost_nanousd"]) for d in whole["by_day"]]
    dates = [(day + timedelta(days=n)).date().isoformat() for n in range(4)]
    assert days == [
        (dates[0], 2, 3_000_000),
        (dates[1], 0, 0),  # a quiet day is there, as zero, so charts have no gaps
        (dates[2], 2, 4_000_000),
        (dates[3], 0, 0),
    ]
    noon = (day + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (day + timedelta(days=2, hours=1, minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    part = api.json(f"{base}?since={noon}&until={until}")["summary"]
    assert (part["total_requests"], part["total_cost_nanousd"]) == (2, 6_000_000)
    bad = api.get(f"{base}?since=yesterdayish")
    assert bad.status_code == 400 and "since" in bad.json()["detail"]


def test_pages_hold_while_rows_arrive(api: Api, api_meter: Meter, project: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    seeded = seed_rows(
        api_meter.ledger,
        [{"at": start + timedelta(seconds=n), "project": project} for n in range(25)],
    )
    expected = [row.id for row in reversed(seeded)]
    path = f"/v1/projects/{project}/requests?limit=10"
    first = api.json(path)
    seen = [item["id"] for item in first["items"]]
    # New calls land between the pages: newer ones, and one that started long ago.
    seed_rows(
        api_meter.ledger,
        [{"at": datetime.now(UTC), "project": project} for _ in range(5)]
        + [{"at": start - timedelta(hours=1), "project": project}],
    )
    cursor = first["next_cursor"]
    while cursor:
        page = api.json(f"{path}&cursor={cursor}")
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen[:25] == expected  # no row repeated, none skipped, in order
    assert len(seen) == 26  # and the late row that started earliest comes last
    assert page["total"] == 31
    assert api.get(f"{path}&cursor=not-a-cursor").status_code == 400
    other = api.json(f"/v1/projects/{project}/requests?limit=5&provider=openai")
    assert other == {"items": [], "next_cursor": None, "total": 0}


def test_csv_export_holds_every_row(api: Api, api_meter: Meter, project: str) -> None:
    moment = datetime.now(UTC) - timedelta(minutes=30)
    rows = seed_rows(
        api_meter.ledger,
        [
            {"at": moment, "project": project, "cost_nanousd": 123_456_789},
            {"at": moment + timedelta(seconds=1), "project": project, "cost_nanousd": None},
            {"at": moment + timedelta(seconds=2), "project": project, "model": 'a,"quoted"\nm'},
        ],
    )
    answer = api.get(f"/v1/projects/{project}/requests.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert [line["id"] for line in lines] == [row.id for row in reversed(rows)]
    assert lines[2]["cost_usd"] == "0.123456789" and lines[2]["cost_usd_minor_units"] == "12346"
    assert lines[1]["cost_usd"] == "" and lines[1]["unpriced"] == "True"
    assert lines[0]["model"] == 'a,"quoted"\nm'


def test_metrics_in_prometheus_text(
    api: Api, api_meter: Meter, project: str, tmp_path: Path
) -> None:
    openai_call(api_meter, project, "gpt-4.1", tmp_path / "a")
    api_meter.wait_rows(project, 1)
    answer = api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = answer.text.splitlines()
    key = f'project="{project}",provider="openai",model="gpt-4.1"'
    uncached = RAW["prompt_tokens"] - CACHED - WRITTEN
    for expected in (
        f"halton_meter_requests_total{{{key}}} 1",
        f"halton_meter_errors_total{{{key}}} 0",
        f"halton_meter_cost_usd_total{{{key}}} 0.013730000",
        f'halton_meter_tokens_total{{{key},kind="input"}} {uncached}',
        f'halton_meter_tokens_total{{{key},kind="cache_read"}} {CACHED}',
        f'halton_meter_tokens_total{{{key},kind="output"}} {RAW["completion_tokens"]}',
        "halton_meter_edge_up 0",  # standalone daemon: no edge in front
        "# TYPE halton_meter_ledger_write_lag_seconds gauge",
    ):
        assert expected in lines, expected
    written = next(x for x in lines if x.startswith("halton_meter_ledger_rows_written_total "))
    assert int(written.split()[1]) >= 1
    lag = next(x for x in lines if x.startswith("halton_meter_ledger_write_lag_seconds "))
    assert 0 <= float(lag.split()[1]) < 5


def test_reprice_with_the_token_rewrites_costs_and_stats(
    api: Api, api_meter: Meter, project: str
) -> None:
    (row,) = seed_rows(
        api_meter.ledger,
        [
            {
                "at": datetime.now(UTC) - timedelta(minutes=5),
                "project": project,
                "model": "claude-sonnet-4-5",
                "input_tokens": 1000,
                "output_tokens": 100,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "cache_write_1h_tokens": None,
                "web_search_requests": None,
                "cost_nanousd": 1,  # a stale cost
            }
        ],
    )
    expected = int(nano(SONNET_4_5["input"], 1000) + nano(SONNET_4_5["output"], 100))
    assert expected == 4_500_000
    token = {"X-Halton-Token": api.token, "Content-Type": "application/json"}
    body = {"since": "1h", "project": project}
    dry = api.post("/v1/reprice", body, **token)
    assert dry.status_code == 200, dry.text
    assert dry.json()["rows_changed"] == 1 and dry.json()["rows_written"] == 0
    (model,) = dry.json()["models"]
    assert (model["old_cost_usd"], model["new_cost_usd"]) == ("0.000000001", "0.004500000")
    stats = api.json(f"/v1/projects/{project}/stats")
    assert stats["summary"]["total_cost_nanousd"] == 1  # a dry run changes nothing
    done = api.post("/v1/reprice", {**body, "dry_run": False}, **token)
    assert done.status_code == 200 and done.json()["rows_written"] == 1
    stats = api.json(f"/v1/projects/{project}/stats")
    assert stats["summary"]["total_cost_nanousd"] == expected  # the rollup followed
    (item,) = api.json(f"/v1/projects/{project}/requests")["items"]
    assert item["id"] == row.id and item["cost_usd_minor_units"] == 450
    bad = api.post("/v1/reprice", {"since": "soon"}, **token)
    assert bad.status_code == 400


def test_project_slugs_with_slashes_and_colons(api: Api, api_meter: Meter) -> None:
    """Slugs may hold `/` and `:` (config.SLUG_RE); every project route still finds them."""
    slug = "team/app:staging"
    (row,) = seed_rows(
        api_meter.ledger, [{"at": datetime.now(UTC), "project": slug, "cost_nanousd": 10_000}]
    )
    for spelled in (slug, "team%2Fapp%3Astaging"):
        assert api.json(f"/v1/projects/{spelled}")["slug"] == slug
        stats = api.json(f"/v1/projects/{spelled}/stats")
        assert stats["summary"]["total_cost_usd_minor_units"] == 1
        page = api.json(f"/v1/projects/{spelled}/requests")
        assert [item["id"] for item in page["items"]] == [row.id]
        assert row.id in api.get(f"/v1/projects/{spelled}/requests.csv").text
    # A header is Latin-1: a slug beyond it must not break the CSV's file name.
    odd = api.get("/v1/projects/d\u00e9j\u00e0-\u4e2d\u6587/requests.csv")
    assert odd.status_code == 200 and "attachment" in odd.headers["content-disposition"]


def test_dashboard_command_opens_the_url_with_the_token(
    api: Api, api_meter: Meter, tmp_path: Path
) -> None:
    env = api_meter.run_env()
    done = subprocess.run(
        [METER, "dashboard", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info == {
        "url": f"http://127.0.0.1:{api.port}/#token={api.token}",
        "api_url": f"http://127.0.0.1:{api.port}/",
        "running": True,
        "token_file": str(api_meter.home / "api-token"),
    }
    printed = subprocess.run(
        [METER, "dashboard", "--print-url"], env=env, capture_output=True, text=True, timeout=60
    )
    assert printed.stdout.strip() == info["url"]
    # A real browser launch, with $BROWSER (which Python's webbrowser honours) as the browser.
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(0o755)
    launched = subprocess.run(
        [METER, "dashboard"],
        env={**env, "BROWSER": str(browser), "DISPLAY": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert launched.returncode == 0, launched.stderr
    assert (
        wait_for(lambda: opened.exists() and opened.read_text(), 10, "the browser") == info["url"]
    )


def test_dashboard_command_when_the_meter_is_down(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(f"[daemon]\napi_port = {free_port()}\n")
    env = {**os.environ, "HALTON_METER_HOME": str(tmp_path)}
    done = subprocess.run(
        [METER, "dashboard", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 4
    assert json.loads(done.stdout)["running"] is False
    plain = subprocess.run([METER, "dashboard"], env=env, capture_output=True, text=True)
    assert plain.returncode == 4 and "halton-meter start" in plain.stderr
    assert stat.S_IMODE((tmp_path / "api-token").stat().st_mode) == 0o600
