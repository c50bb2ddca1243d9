"""Git branch and commit reach the team: calls from two real git repositories on different
branches, through a real daemon paired with a real team server on a real PostgreSQL, arrive
with the branch and HEAD commit the machine recorded; `/v1/stats` has `by_branch` and the CSV
export groups by branch, from the rollups. A batch from an older machine, which sends neither
column, is still stored (under `(none)`, as the machine's `report --by branch` names it).

Costs from GPT-4.1's published prices (tests/test_git_costs.py works one call out by hand:
$0.013730).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import FakeUpstream, Meter
from tests.postgres import PgCluster
from tests.team_fixtures import TeamServer, meter_cli, start_paired_meter, wait_synced
from tests.test_attribution import git_repo
from tests.test_git_costs import CALL_NANO, commit, git, on_branch
from tests.test_team_server_ingest import row

WORKSPACE = "git-branches"


def calls_from(meter: Meter, repo: Path, count: int) -> None:
    """The repository's own script makes the calls, so the daemon finds its process, its
    working folder, and the repository's HEAD."""
    done = subprocess.run(
        [sys.executable, str(repo / "chat_once.py"), str(count)],
        cwd=repo,
        env=meter.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == str(count), done.stderr


def old_machine_batch(
    team_server: TeamServer, credentials: dict[str, Any], project: str
) -> tuple[int, Any]:
    """What a machine from before ledger migration 10 sends: no git columns at all."""
    old = row(project=project, cost_nanousd=1)
    assert "git_branch" not in old and "git_commit" not in old
    body = {
        "workspace_id": credentials["workspace_id"],
        "machine_id": credentials["machine_id"],
        "rows": [old],
    }
    return team_server.api("POST", "/v1/requests/batch", body, token=credentials["token"])


def test_branch_and_commit_reach_the_team_server(
    fake_upstream: FakeUpstream, team_server: TeamServer, tmp_path: Path
) -> None:
    alpha = git_repo(tmp_path / "alpha")
    git(alpha, "checkout", "-q", "-b", "main")
    commit(alpha, "base.txt")
    alpha_head = on_branch(alpha, "feature-a")
    beta = git_repo(tmp_path / "beta")
    git(beta, "checkout", "-q", "-b", "main")
    commit(beta, "base.txt")
    beta_head = on_branch(beta, "feature-b")

    meter = start_paired_meter(fake_upstream, tmp_path / "home", team_server, WORKSPACE, "dev")
    try:
        calls_from(meter, alpha, 2)
        calls_from(meter, beta, 1)
        meter.wait_rows("alpha", 2)
        meter.wait_rows("beta", 1)
        wait_synced(team_server, WORKSPACE, 3)

        stored = team_server.sql(
            "SELECT l.project, l.git_branch, l.git_commit, l.cost_nanousd FROM ledger l "
            "JOIN workspaces w ON w.id = l.workspace_id WHERE w.name = %s ORDER BY 1",
            WORKSPACE,
        )
        assert stored == [
            ("alpha", "feature-a", alpha_head, CALL_NANO),
            ("alpha", "feature-a", alpha_head, CALL_NANO),
            ("beta", "feature-b", beta_head, CALL_NANO),
        ]

        # An older machine's batch: no git columns, still stored, under (none).
        credentials = json.loads((meter.home / "cloud-credentials.json").read_text())
        status, answer = old_machine_batch(team_server, credentials, "legacy")
        assert status == 200 and answer["stored"] == 1, answer
        ((branch, commit_id),) = team_server.sql(
            "SELECT git_branch, git_commit FROM ledger WHERE project = 'legacy'"
        )
        assert (branch, commit_id) == (None, None)

        # GPT-4.1 at $2 in and $8 out per million: the ingest test row's 1,000 in + 100 out.
        legacy_nano = 1000 * 2000 + 100 * 8000
        stats = team_server.admin(f"/v1/stats?since=30d&workspace={WORKSPACE}")
        by_branch = {i["branch"]: (i["requests"], i["cost_nanousd"]) for i in stats["by_branch"]}
        assert by_branch == {
            "feature-a": (2, 2 * CALL_NANO),
            "feature-b": (1, CALL_NANO),
            "(none)": (1, legacy_nano),
        }
        assert [i["branch"] for i in stats["by_branch"]] == ["feature-a", "feature-b", "(none)"]
        assert stats["summary"]["total_cost_nanousd"] == 3 * CALL_NANO + legacy_nano
        # One project: the same figures from the finest rollup's path.
        only_alpha = team_server.admin(f"/v1/projects/alpha/stats?since=30d&workspace={WORKSPACE}")
        assert [(i["branch"], i["requests"]) for i in only_alpha["by_branch"]] == [("feature-a", 2)]

        # The machine's own report by branch says the same.
        local = json.loads(meter_cli(meter, "report", "--by", "branch", "--json").stdout)
        mine = {g["key"]["branch"]: g["requests"] for g in local["groups"]}
        assert mine == {"feature-a": 2, "feature-b": 1}

        # The CSV export by branch (and project), from daily_branch_rollups.
        exported = team_server.admin(
            f"/v1/export.csv?group_by=branch,project&since=30d&workspace={WORKSPACE}"
        )
        lines = list(csv.DictReader(io.StringIO(exported)))
        assert [(r["branch"], r["project"], r["requests"]) for r in lines] == [
            ("(none)", "legacy", "1"),
            ("feature-a", "alpha", "2"),
            ("feature-b", "beta", "1"),
        ]
        status, refused = team_server.api(
            "GET",
            f"/v1/export.csv?group_by=branch,model&workspace={WORKSPACE}",
            token=team_server.admin_token,
        )
        assert status == 400 and "branch" in str(refused)

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(f"{team_server.url}/?since=30d&workspace={WORKSPACE}")
        request.add_header("cookie", f"halton_admin={team_server.admin_token}")
        with opener.open(request, timeout=10) as response:
            page = response.read().decode()
        assert "By git branch" in page and "feature-a" in page
    finally:
        meter.stop()


def test_minimal_privacy_sends_no_branch(
    fake_upstream: FakeUpstream, team_server: TeamServer, tmp_path: Path
) -> None:
    """`[cloud] privacy = "minimal"`: a branch's name can say what the work is about."""
    repo = git_repo(tmp_path / "gamma")
    git(repo, "checkout", "-q", "-b", "secret-feature")
    commit(repo, "base.txt")
    workspace = "git-minimal"
    meter = start_paired_meter(
        fake_upstream,
        tmp_path / "home",
        team_server,
        workspace,
        "quiet",
        extra='privacy = "minimal"\n',
    )
    try:
        calls_from(meter, repo, 1)
        (local,) = meter.wait_rows("gamma", 1)
        assert local["git_branch"] == "secret-feature"  # kept on the machine
        wait_synced(team_server, workspace, 1)
        found = team_server.sql(
            "SELECT l.git_branch, l.git_commit FROM ledger l "
            "JOIN workspaces w ON w.id = l.workspace_id WHERE w.name = %s",
            workspace,
        )
        assert found == [(None, None)]
    finally:
        meter.stop()


def test_migration_7_puts_the_sums_stored_before_under_none(postgres: PgCluster) -> None:
    """A server upgraded from migration 6: every day's sums it held reappear in the branch
    rollup, under (none) (no row stored before had a branch), so `by_branch` adds up."""
    import psycopg

    from halton_meter.teamserver import schema

    dsn = postgres.create_database(f"team_git_migration_{os.getpid()}")
    with psycopg.connect(dsn, autocommit=True) as con:
        before = [m for m in schema.MIGRATIONS if m[0] <= 6]
        saved = schema.MIGRATIONS
        schema.MIGRATIONS = before
        try:
            assert schema.migrate(con) == [1, 2, 3, 4, 5, 6]
        finally:
            schema.MIGRATIONS = saved
        space = con.execute("SELECT id FROM workspaces WHERE name = 'default'").fetchone()
        assert space is not None
        measures = ", ".join(schema.ROLLUP_MEASURES)
        for day, machine, project, model, requests in (
            ("2026-11-20", "00000000-0000-0000-0000-000000000001", "web", "gpt-4.1", 3),
            ("2026-11-20", "00000000-0000-0000-0000-000000000001", "web", "o3", 2),
            ("2026-11-21", "00000000-0000-0000-0000-000000000002", "api", "gpt-4.1", 4),
        ):
            values = [requests * 10 if m == "cost_nanousd" else requests for m in
                      schema.ROLLUP_MEASURES]  # fmt: skip
            con.execute(
                f"INSERT INTO daily_rollups (workspace_id, day, machine_id, project, provider, "
                f"model, {measures}, last_request_at) VALUES (%s, %s, %s, %s, 'openai', %s, "
                f"{', '.join('%s' for _ in values)}, now())",
                (space[0], day, machine, project, model, *values),
            )
        assert schema.migrate(con) == [m[0] for m in schema.MIGRATIONS if m[0] > 6]
        found = con.execute(
            "SELECT day::text, machine_id::text, project, branch, requests, cost_nanousd "
            "FROM daily_branch_rollups ORDER BY day, project"
        ).fetchall()
        assert found == [
            ("2026-11-20", "00000000-0000-0000-0000-000000000001", "web", "(none)", 5, 50),
            ("2026-11-21", "00000000-0000-0000-0000-000000000002", "api", "(none)", 4, 40),
        ]
        columns = {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger'"
            ).fetchall()
        }
        assert {"git_branch", "git_commit"} <= columns
        assert schema.migrate(con) == []  # applied once
