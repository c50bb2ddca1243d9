"""`reconcile --workspace/--project/--api-key` and `[reconcile]` workspace/project/api_key:
the provider's report scoped with its own filters (Anthropic `workspace_ids[]`,
`api_key_ids[]`; OpenAI `project_ids`, `api_key_ids`), compared with the ledger.

The organisation's report holds this machine's workspace (what the ledger saw) and another
team's (three times as much): unscoped the ledger has less, scoped it matches. The fake filters
as the providers do and refuses parameters an endpoint does not take (the cost reports have no
key filter), so the parameters sent and the pages read are checked here.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from halton_meter.config import ConfigError, load_config
from halton_meter.paths import Paths
from halton_meter.reconcile import run
from halton_meter.reconcile.fetch import FetchError, Transport
from halton_meter.reconcile.schedule import ReconcileLoop
from tests.conftest import FakeUpstream, write_meter_config
from tests.test_reconcile import (
    ANTHROPIC_KEY,
    GPT4O,
    HAIKU,
    OPENAI_KEY,
    SONNET,
    by_key,
    control,
    dataset,
    days_ago,
    fill_ledger,
    provider_rows,
    reconcile_cli,
    set_reports,
)

MINE, THEIRS = "wrkspc_01MachineA", "wrkspc_01OtherTeam"
MY_PROJECT, OTHER_PROJECT = "proj_MachineA", "proj_OtherTeam"
MY_KEY_ID, OTHER_KEY_ID = "apikey_01MachineA", "apikey_01OtherTeam"


@pytest.fixture
def home(tmp_path: Path, fake_upstream: FakeUpstream) -> Path:
    home = tmp_path / "home"
    write_meter_config(home, 18081, fake_upstream)
    return home


def tagged(report: dict[str, Any], **fields: str) -> dict[str, Any]:
    """The same rows, each marked with these report dimensions (workspace_id, project_id...)."""
    out = copy.deepcopy(report)
    for name in ("usage", "cost"):
        for row in out[name]:
            row.update(fields)
    return out


def merged(*reports: dict[str, Any]) -> dict[str, Any]:
    return {
        "usage": [row for r in reports for row in r["usage"]],
        "cost": [row for r in reports for row in r["cost"]],
        "page_size": 2,
    }


def queries(fake: FakeUpstream, path: str) -> list[dict[str, list[str]]]:
    seen = control(fake).requests()
    found = [urlsplit(r["path"]) for r in seen if r["path"].startswith(path)]
    return [parse_qs(parts.query) for parts in found]


def anthropic_org(days: list[str]) -> dict[str, Any]:
    """This machine's workspace and key (what the ledger holds) and another team's, 3x."""
    mine = tagged(
        provider_rows("anthropic", days, [SONNET, HAIKU]),
        workspace_id=MINE,
        api_key_id=MY_KEY_ID,
    )
    scale = {(d, m): Decimal(3) for d in days for m in (SONNET, HAIKU)}
    other = tagged(
        provider_rows("anthropic", days, [SONNET, HAIKU], scale=scale),
        workspace_id=THEIRS,
        api_key_id=OTHER_KEY_ID,
    )
    return merged(mine, other)


def test_a_workspace_scope_compares_that_workspace_only(
    home: Path,
    fake_upstream: FakeUpstream,
) -> None:
    days = [days_ago(3), days_ago(2), days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET, HAIKU], days)
    set_reports(fake_upstream, dataset(anthropic=anthropic_org(days)))

    # The whole organisation: the other team's traffic is what the ledger did not see.
    whole = reconcile_cli(
        home, "--provider", "anthropic", "--json", ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY
    )
    assert whole.returncode == 6, whole.stderr
    verdicts = {row["verdict"] for row in by_key(json.loads(whole.stdout), "anthropic").values()}
    assert verdicts == {"ledger_has_less"}

    control(fake_upstream).reset()
    done = reconcile_cli(home, "--workspace", MINE, "--json", ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    assert list(payload["providers"]) == ["anthropic"]  # --workspace names the provider
    summary = payload["providers"]["anthropic"]
    assert summary["scope"] == {"workspaces": [MINE]} and summary["cost_compared"] is True
    found = by_key(payload, "anthropic")
    assert set(found) == {(d, m) for d in days for m in (SONNET, HAIKU)}
    assert {row["verdict"] for row in found.values()} == {"matches"}

    # The usage report filtered by workspace_ids[] on every page; the cost report (which has
    # no filter) grouped by workspace as well; seven daily buckets two to a page: 4 pages each.
    usage = queries(fake_upstream, "/v1/organizations/usage_report/messages")
    cost = queries(fake_upstream, "/v1/organizations/cost_report")
    assert len(usage) == 4 and len(cost) == 4
    assert all(q["workspace_ids[]"] == [MINE] and q["group_by[]"] == ["model"] for q in usage)
    assert sum("page" in q for q in usage) == 3 and sum("page" in q for q in cost) == 3
    for q in cost:
        assert sorted(q["group_by[]"]) == ["description", "workspace_id"]
        assert "workspace_ids[]" not in q

    text = reconcile_cli(home, "--workspace", MINE, ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY)
    assert text.returncode == 0
    assert f"Scope: the provider's report for workspace {MINE}" in text.stdout
    line = run.status_line(run.load(home))
    assert line == (
        f"anthropic (workspace {MINE}): matches the provider's report for the last 7 days"
    )


def test_an_api_key_scope_compares_tokens_not_cost(
    home: Path,
    fake_upstream: FakeUpstream,
) -> None:
    days = [days_ago(2), days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET], days)
    org = anthropic_org(days)
    set_reports(fake_upstream, dataset(anthropic=org))
    control(fake_upstream).reset()

    done = reconcile_cli(
        home,
        "--provider",
        "anthropic",
        "--api-key",
        MY_KEY_ID,
        "--json",
        ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY,
    )
    payload = json.loads(done.stdout)
    summary = payload["providers"]["anthropic"]
    assert summary["scope"] == {"api_keys": [MY_KEY_ID]}
    assert summary["cost_compared"] is False and summary["cost_difference_usd"] is None
    found = by_key(payload, "anthropic")
    # The key also ran haiku, which this ledger never saw: that is the only difference.
    assert {k: r["verdict"] for k, r in found.items()} == {
        **{(d, SONNET): "matches" for d in days},
        **{(d, HAIKU): "ledger_has_less" for d in days},
    }
    assert done.returncode == 6
    for row in found.values():
        assert row["cost_usd"]["provider"] is None
    assert found[(days[0], SONNET)]["tokens"]["input"] == {"ledger": 4800, "provider": 4800}

    usage = queries(fake_upstream, "/v1/organizations/usage_report/messages")
    assert len(usage) == 4 and all(q["api_key_ids[]"] == [MY_KEY_ID] for q in usage)
    assert queries(fake_upstream, "/v1/organizations/cost_report") == []  # cannot be split
    assert "cost not compared" in (run.status_line(run.load(home)) or "")


def test_a_project_scope_filters_openai_usage_and_costs(
    home: Path,
    fake_upstream: FakeUpstream,
) -> None:
    days = [days_ago(2), days_ago(1)]
    fill_ledger(home, "openai", [GPT4O], days)
    mine = tagged(provider_rows("openai", days, [GPT4O]), project_id=MY_PROJECT)
    scale = {(d, GPT4O): Decimal(2) for d in days}
    other = tagged(provider_rows("openai", days, [GPT4O], scale=scale), project_id=OTHER_PROJECT)
    set_reports(fake_upstream, dataset(openai=merged(mine, other)))
    control(fake_upstream).reset()

    done = reconcile_cli(home, "--project", MY_PROJECT, "--json", OPENAI_ADMIN_KEY=OPENAI_KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    found = by_key(payload, "openai")
    assert {row["verdict"] for row in found.values()} == {"matches"}
    assert all(row["requests"] == {"ledger": 4, "provider": 4} for row in found.values())
    usage = queries(fake_upstream, "/v1/organization/usage/completions")
    cost = queries(fake_upstream, "/v1/organization/costs")
    # 7 buckets, page_size 2: 4 pages of each, every one filtered.
    assert len(usage) == 4 and len(cost) == 4
    assert all(q["project_ids"] == [MY_PROJECT] for q in usage + cost)
    assert sum("page" in q for q in usage + cost) == 6

    # Without the scope, the other project's traffic is unseen.
    whole = reconcile_cli(home, "--provider", "openai", "--json", OPENAI_ADMIN_KEY=OPENAI_KEY)
    assert whole.returncode == 6
    verdicts = {row["verdict"] for row in by_key(json.loads(whole.stdout), "openai").values()}
    assert verdicts == {"ledger_has_less"}


def test_a_scope_the_provider_does_not_have_is_a_usage_error(home: Path) -> None:
    done = reconcile_cli(home, "--provider", "openai", "--workspace", MINE)
    assert done.returncode == 2 and "OpenAI has projects, not workspaces" in done.stderr
    done = reconcile_cli(home, "--provider", "anthropic", "--project", MY_PROJECT)
    assert done.returncode == 2 and "Anthropic has workspaces, not projects" in done.stderr
    done = reconcile_cli(home, "--api-key", MY_KEY_ID, ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY,
                         OPENAI_ADMIN_KEY=OPENAI_KEY)  # fmt: skip
    assert done.returncode == 2 and "--api-key names one provider's key" in done.stderr


def test_the_reconcile_table_scopes_the_scheduled_run(
    home: Path,
    fake_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    days = [days_ago(2), days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET, HAIKU], days)
    set_reports(fake_upstream, dataset(anthropic=anthropic_org(days)))
    config_path = home / "config.toml"
    base = config_path.read_text()
    config_path.write_text(
        base + f'\n[reconcile]\nenabled = true\nproviders = ["anthropic"]\nworkspace = "{MINE}"\n'
    )
    config = load_config(Paths(home, True))
    assert config.reconcile.workspace == (MINE,)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ANTHROPIC_KEY)
    state = ReconcileLoop(home, home / "db.sqlite", config.reconcile, config.upstream).run_once()
    summary = state["providers"]["anthropic"]
    assert summary["matches"] is True and summary["scope"] == {"workspaces": [MINE]}

    # An api_key with two providers cannot say whose key it is: the run says so, no fetch.
    config_path.write_text(base + f'\n[reconcile]\nenabled = true\napi_key = "{MY_KEY_ID}"\n')
    config = load_config(Paths(home, True))
    state = ReconcileLoop(home, home / "db.sqlite", config.reconcile, config.upstream).run_once()
    assert state["providers"]["anthropic"]["error"] == "scope"
    assert "set providers to that provider only" in state["providers"]["anthropic"]["message"]

    # A workspace for OpenAI alone: the same scope error, nothing fetched.
    config_path.write_text(
        base + f'\n[reconcile]\nenabled = true\nproviders = ["openai"]\nworkspace = "{MINE}"\n'
    )
    config = load_config(Paths(home, True))
    monkeypatch.setenv("OPENAI_ADMIN_KEY", OPENAI_KEY)
    state = ReconcileLoop(home, home / "db.sqlite", config.reconcile, config.upstream).run_once()
    assert state["providers"]["openai"]["error"] == "scope"
    assert "OpenAI has projects, not workspaces" in state["providers"]["openai"]["message"]

    # A key where an id belongs is refused by the config check (a key never goes on disk
    # through us; the user's own file is theirs, but the meter will not read it as an id).
    config_path.write_text(base + '\n[reconcile]\napi_key = "sk-ant-admin01-oops"\n')
    with pytest.raises(ConfigError, match="not a key id"):
        load_config(Paths(home, True))


def test_an_openai_key_scope_and_the_fake_refusing_what_a_report_does_not_take(
    home: Path, fake_upstream: FakeUpstream
) -> None:
    days = [days_ago(2), days_ago(1)]
    fill_ledger(home, "openai", [GPT4O], days)
    mine = tagged(provider_rows("openai", days, [GPT4O]), api_key_id="key_MachineA")
    other = tagged(provider_rows("openai", days, [GPT4O]), api_key_id="key_OtherTeam")
    set_reports(fake_upstream, dataset(openai=merged(mine, other)))
    control(fake_upstream).reset()

    done = reconcile_cli(
        home, "--provider", "openai", "--api-key", "key_MachineA", "--json",
        OPENAI_ADMIN_KEY=OPENAI_KEY,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)["providers"]["openai"]
    assert summary["scope"] == {"api_keys": ["key_MachineA"]} and summary["cost_compared"] is False
    usage = queries(fake_upstream, "/v1/organization/usage/completions")
    assert len(usage) == 4 and all(q["api_key_ids"] == ["key_MachineA"] for q in usage)
    assert queries(fake_upstream, "/v1/organization/costs") == []

    # The fake answers as the providers document: no key filter on either cost report.
    upstream = load_config(Paths(home, True)).upstream
    transport = Transport(upstream)
    start = str(int(datetime.now(UTC).timestamp()) - 86400)
    with pytest.raises(FetchError, match="400"):
        transport.get_json(
            "https://api.openai.com/v1/organization/costs",
            [("start_time", start), ("api_key_ids", "key_MachineA")],
            {"authorization": f"Bearer {OPENAI_KEY}"},
        )
    with pytest.raises(FetchError, match="400"):
        transport.get_json(
            "https://api.anthropic.com/v1/organizations/cost_report",
            [("starting_at", f"{days[0]}T00:00:00Z"), ("workspace_ids[]", MINE)],
            {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        )
