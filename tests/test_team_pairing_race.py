"""Twenty machines pairing at once into a workspace that does not exist yet: every one gets
its token in that one workspace, never `"workspace": null`. The approvals and the machines'
polls overlap (a poll waiting on an approval's transaction once read the machine as missing),
and several rounds are run, since a race shows only some of the time."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.conftest import METER
from tests.team_fixtures import TeamServer

MACHINES = 20


def pair_at_once(server: TeamServer, workspace: str, round_no: int) -> list[dict[str, Any]]:
    """20 pairing requests, then 20 approvals and 20 tight poll loops all at the same time."""
    pendings = []
    for i in range(MACHINES):
        status, pending = server.api(
            "POST",
            "/v1/pairing",
            {
                "machine_uid": f"race-{round_no}-{i}",
                "machine_name": f"race-{i}",
                "user": "ops",
                "workspace": workspace,
            },
        )
        assert status == 200, pending
        pendings.append(pending)
    start = threading.Barrier(2 * MACHINES)

    def approve(pending: dict[str, Any]) -> int:
        start.wait()
        status, answer = server.api(
            "POST", f"/v1/pairings/{pending['code']}/approve", {}, token=server.admin_token
        )
        assert status == 200, answer
        return status

    def poll(pending: dict[str, Any]) -> dict[str, Any]:
        start.wait()
        for _ in range(2000):
            status, answer = server.api(
                "POST",
                f"/v1/pairing/{pending['code']}/poll",
                {"poll_secret": pending["poll_secret"]},
            )
            assert status == 200, answer
            if answer["status"] != "pending":
                return dict(answer)
        raise AssertionError("never approved")

    with ThreadPoolExecutor(2 * MACHINES) as pool:
        polls = [pool.submit(poll, p) for p in pendings]
        approvals = [pool.submit(approve, p) for p in pendings]
        assert [a.result() for a in approvals] == [200] * MACHINES
        return [p.result() for p in polls]


def test_twenty_pairings_at_once_into_a_new_workspace(team_server: TeamServer) -> None:
    for round_no in range(5):
        workspace = f"race-{os.getpid()}-{round_no}"
        answers = pair_at_once(team_server, workspace, round_no)
        ((workspace_id,),) = team_server.sql("SELECT id FROM workspaces WHERE name = %s", workspace)
        for answer in answers:
            assert answer["status"] == "approved", answer
            assert answer["workspace"] == workspace, answer
            assert answer["workspace_id"] == str(workspace_id), answer
            # The token works, in that workspace.
            status, who = team_server.api("GET", "/v1/whoami", token=answer["token"])
            assert status == 200 and who["workspace_id"] == str(workspace_id), who
        machines = team_server.sql(
            "SELECT count(*) FROM machines WHERE workspace_id = %s AND status = 'active'",
            workspace_id,
        )
        assert machines == [(MACHINES,)]


def test_twenty_cloud_connects_at_once(team_server: TeamServer, tmp_path: Path) -> None:
    """The same with the real `cloud connect` on 20 machines (each its own home and ledger),
    approved through the API as the admin page does, as fast as the codes appear."""
    workspace = f"connect-race-{os.getpid()}"
    processes = []
    for i in range(MACHINES):
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["HALTON_METER_HOME"] = str(tmp_path / f"m{i}")
        processes.append(
            subprocess.Popen(
                [
                    METER,
                    "cloud",
                    "connect",
                    "--server",
                    team_server.url,
                    "--workspace",
                    workspace,
                    "--name",
                    f"box-{i}",
                    "--json",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )

    def approve(process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first.startswith("Pairing code: "), first
        code = first.split(": ", 1)[1].strip()
        status, answer = team_server.api(
            "POST", f"/v1/pairings/{code}/approve", {}, token=team_server.admin_token
        )
        assert status == 200, answer

    with ThreadPoolExecutor(MACHINES) as pool:
        list(pool.map(approve, processes))
    ((workspace_id,),) = team_server.sql("SELECT id FROM workspaces WHERE name = %s", workspace)
    for i, process in enumerate(processes):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert json.loads(out)["workspace"] == workspace
        saved = json.loads((tmp_path / f"m{i}" / "cloud-credentials.json").read_text())
        assert saved["workspace_id"] == str(workspace_id) and saved["workspace"] == workspace
