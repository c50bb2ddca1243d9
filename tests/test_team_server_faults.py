"""Faults between a real daemon and a real team server: after recovery every row is on the
server exactly once. The server killed in the middle of a batch, its port closed a while, the
token revoked (401) or out of scope (403), a batch replayed, the daemon killed before it learnt
its batch was stored, a pause.

One daemon and one server serve the whole module (starting them is most of a test's time);
`rig` puts both back in working order before each test, and every check compares the whole
local ledger with the server, so each test also re-checks what the earlier ones left.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.conftest import METER, FakeUpstream, Meter, wait_for
from tests.postgres import PgCluster
from tests.team_fixtures import (
    TeamServer,
    meter_cli,
    pair,
    send_calls,
    server_ids,
    start_paired_meter,
    wait_synced,
)

WORKSPACE = "faults"
MACHINE = "m1"


@dataclass
class Rig:
    server: TeamServer
    meter: Meter


@pytest.fixture(scope="module")
def shared_rig(
    fake_upstream: FakeUpstream, postgres: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    dsn = postgres.create_database(f"team_faults_{os.getpid()}")
    server = TeamServer(dsn, tmp_path_factory.mktemp("faults-server")).start()
    meter = start_paired_meter(
        fake_upstream,
        tmp_path_factory.mktemp("faults-home"),
        server,
        WORKSPACE,
        MACHINE,
        extra="batch_size = 7\n",  # several batches per test
    )
    rig = Rig(server, meter)
    yield rig
    rig.meter.stop()
    server.stop()


@pytest.fixture
def rig(shared_rig: Rig) -> Rig:
    """Server up, daemon up, paired, not paused, caught up."""
    if shared_rig.server.process is None or shared_rig.server.process.poll() is not None:
        shared_rig.server.start()
    if shared_rig.meter.process.poll() is not None:
        shared_rig.meter = start_meter_again(shared_rig.meter)
    meter = shared_rig.meter
    if meter_cli(meter, "cloud", "whoami").returncode != 0:
        pair(meter, shared_rig.server, WORKSPACE, MACHINE)
    meter_cli(meter, "cloud", "resume")
    assert_exactly_once(meter, shared_rig.server)
    return shared_rig


def cloud_status(meter: Meter) -> dict[str, Any]:
    """What `cloud status --json` prints, read in-process (polled often; the CLI is checked
    with `cli_status`)."""
    from halton_meter.cloud import sync
    from halton_meter.config import CloudSettings
    from halton_meter.ledger.db import connect
    from halton_meter.paths import Paths

    with closing(connect(meter.ledger)) as con:
        return sync.status(Paths(meter.home, True), con, CloudSettings())


def cli_status(meter: Meter) -> dict[str, Any]:
    done = meter_cli(meter, "cloud", "status", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def local_ids(meter: Meter) -> list[str]:
    import sqlite3

    with closing(sqlite3.connect(meter.ledger)) as con:
        return [row[0] for row in con.execute("SELECT id FROM requests ORDER BY rowid")]


def assert_exactly_once(meter: Meter, server: TeamServer) -> None:
    expected = local_ids(meter)
    on_server = wait_synced(server, WORKSPACE, len(expected))
    assert sorted(on_server) == sorted(expected)  # every row, none twice
    # The rollups agree with the rows.
    totals = server.sql("SELECT COALESCE(sum(requests), 0) FROM daily_rollups")
    assert int(totals[0][0]) == len(expected)


def wait_for_ingest_blocked(server: TeamServer) -> None:
    wait_for(
        lambda: server.sql(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%%INSERT INTO ledger%%'"
        ),
        60,
        "an ingest transaction waiting inside its transaction",
    )


def test_server_killed_in_the_middle_of_a_batch(rig: Rig) -> None:
    server, meter = rig.server, rig.meter
    before = len(server_ids(server, WORKSPACE))
    # Hold the rollup table so the server's ingest statement waits inside its transaction,
    # then kill the server (and its workers) while the batch is in flight.
    with psycopg.connect(server.dsn) as blocker:
        blocker.execute("LOCK TABLE daily_rollups IN EXCLUSIVE MODE")
        send_calls(meter, "kill", anthropic=20)
        meter.wait_rows("kill", 20)
        wait_for_ingest_blocked(server)
        server.kill()
        blocker.rollback()
    assert len(server_ids(server, WORKSPACE)) == before  # the cut transaction left nothing
    wait_for(lambda: cloud_status(meter)["state"] == "DEGRADED", 60, "DEGRADED")
    assert cli_status(meter)["state"] == "DEGRADED"
    server.start()
    assert_exactly_once(meter, server)
    wait_for(lambda: cloud_status(meter)["state"] == "ACTIVE", 60, "ACTIVE again")


def test_port_closed_for_a_while(rig: Rig) -> None:
    server, meter = rig.server, rig.meter
    send_calls(meter, "net", openai=2)
    meter.wait_rows("net", 2)
    assert_exactly_once(meter, server)
    server.stop()  # the port is closed now
    send_calls(meter, "net", anthropic=5)
    meter.wait_rows("net", 7)
    wait_for(lambda: cloud_status(meter)["state"] == "DEGRADED", 60, "DEGRADED")
    status = cli_status(meter)
    assert status["state"] == "DEGRADED" and "unreachable" in status["last_error"]
    assert status["unsynced_rows"] == 5 and status["pause_reason"] is None
    done = meter_cli(meter, "cloud", "sync", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["state"] == "DEGRADED"
    server.start()
    assert_exactly_once(meter, server)
    status = wait_for(lambda: (s := cloud_status(meter))["state"] == "ACTIVE" and s, 60, "ACTIVE")
    assert status["unsynced_rows"] == 0 and status["last_error"] is None
    doctor = json.loads(meter_cli(meter, "doctor", "--json").stdout)
    (cloud,) = [c for c in doctor["checks"] if c["check"] == "cloud"]
    assert cloud["status"] == "ok" and "0 unsent" in cloud["detail"], cloud


def test_revoked_token_pauses_until_paired_again(rig: Rig) -> None:
    server, meter = rig.server, rig.meter
    before = len(server_ids(server, WORKSPACE))
    server.cli("revoke", MACHINE)
    send_calls(meter, "rev", anthropic=4)
    meter.wait_rows("rev", 4)
    wait_for(lambda: cloud_status(meter)["state"] == "PAUSED", 60, "PAUSED")
    status = cli_status(meter)
    assert status["pause_reason"].startswith("unauthorised")
    assert "revoked" in status["pause_reason"]
    assert len(server_ids(server, WORKSPACE)) == before
    whoami = meter_cli(meter, "cloud", "whoami")
    assert whoami.returncode == 1 and "revoked" in whoami.stderr
    doctor = json.loads(meter_cli(meter, "doctor", "--json").stdout)
    (cloud,) = [c for c in doctor["checks"] if c["check"] == "cloud"]
    assert cloud["status"] == "inconsistent" and "4 rows wait" in cloud["detail"], cloud
    printed = (
        f"halton-meter cloud connect --server {server.url} --workspace {WORKSPACE} --name {MACHINE}"
    )
    assert cloud["fix"] == f"{printed}  # pair again", cloud
    # Doctor's advice followed as printed: the same machine, in its workspace, on the server;
    # the sync resumes where it stopped.
    answer = pair(meter, server, WORKSPACE, MACHINE, shlex.split(cloud["fix"], comments=True)[1:])
    assert answer["workspace"] == WORKSPACE
    assert_exactly_once(meter, server)
    machines = json.loads(server.cli("machines", "--json").stdout)
    assert [(m["workspace"], m["name"], m["status"], m["requests"]) for m in machines] == [
        (WORKSPACE, MACHINE, "active", len(local_ids(meter)))
    ]
    # And the short form (no workspace or name) remembers them too.
    server.cli("revoke", MACHINE)
    send_calls(meter, "rev", anthropic=1)
    wait_for(lambda: cloud_status(meter)["state"] == "PAUSED", 60, "PAUSED again")
    answer = pair(meter, server, "", "", ["cloud", "connect", "--server", server.url])
    assert (answer["workspace"], answer["machine"]) == (WORKSPACE, MACHINE)
    assert_exactly_once(meter, server)
    machines = json.loads(server.cli("machines", "--json").stdout)
    assert [(m["workspace"], m["name"], m["status"]) for m in machines] == [
        (WORKSPACE, MACHINE, "active")
    ]


def test_token_for_another_workspace_pauses_as_forbidden(rig: Rig) -> None:
    server, meter = rig.server, rig.meter
    before = len(server_ids(server, WORKSPACE))
    meter_cli(meter, "cloud", "pause")
    path = meter.home / "cloud-credentials.json"
    saved = json.loads(path.read_text())
    (other,) = server.sql("INSERT INTO workspaces (name) VALUES ('other') RETURNING id")
    try:
        path.write_text(json.dumps({**saved, "workspace_id": str(other[0])}))
        send_calls(meter, "forbid", openai=2)
        meter.wait_rows("forbid", 2)
        assert meter_cli(meter, "cloud", "resume").returncode == 0
        status = wait_for(
            lambda: (s := cloud_status(meter))["state"] == "PAUSED" and s, 60, "PAUSED"
        )
        assert status["pause_reason"].startswith("forbidden")
        assert len(server_ids(server, WORKSPACE)) == before
    finally:
        path.write_text(json.dumps(saved))
    meter_cli(meter, "cloud", "resume")
    assert_exactly_once(meter, server)


def test_batch_replayed_stores_each_row_once(rig: Rig) -> None:
    server, meter = rig.server, rig.meter
    send_calls(meter, "replay", anthropic=3, openai=3)
    meter.wait_rows("replay", 6)
    assert_exactly_once(meter, server)
    before = server.admin(f"/v1/stats?since=all&workspace={WORKSPACE}")["summary"]
    # As if the machine crashed after the server stored its batches but before it recorded
    # the answers: the whole queue goes again, concurrently from the CLI and the daemon.
    import sqlite3

    with closing(sqlite3.connect(meter.ledger)) as con:
        con.execute("UPDATE cloud_sync SET synced_rowid = 0, synced_id = NULL")
        con.commit()
    results: list[dict[str, Any]] = []

    def sync_now() -> None:
        results.append(json.loads(meter_cli(meter, "cloud", "sync", "--json").stdout))

    threads = [threading.Thread(target=sync_now) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r["state"] == "ACTIVE" and r["rows_stored"] == 0 for r in results), results
    assert_exactly_once(meter, server)
    after = server.admin(f"/v1/stats?since=all&workspace={WORKSPACE}")["summary"]
    assert after == before  # the rollups did not count the replay

    # And a batch posted twice by hand.
    saved = json.loads((meter.home / "cloud-credentials.json").read_text())
    row = server.sql(
        "SELECT id, to_char(requested_at AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\') FROM ledger LIMIT 1'
    )[0]
    batch = {
        "workspace_id": saved["workspace_id"],
        "machine_id": saved["machine_id"],
        "rows": [
            {
                "id": row[0],
                "requested_at": row[1],
                "provider": "anthropic",
                "api": "messages",
                "stream": False,
                "status": "ok",
                "tokens_complete": True,
                "project": "replay",
            }
        ],
    }
    for _ in range(2):
        status, answer = server.api("POST", "/v1/requests/batch", batch, token=saved["token"])
        assert status == 200 and answer == {"received": 1, "stored": 0, "duplicates": 1}
    assert_exactly_once(meter, server)


def test_daemon_killed_after_the_server_stored_its_batch(rig: Rig) -> None:
    """The machine crashes between the server's commit and its own note of it: on restart it
    sends the batch again, and the server stores each row once."""
    server, meter = rig.server, rig.meter
    before = len(server_ids(server, WORKSPACE))
    # Paused while the calls are written, so the six leave in one batch: without the pause the
    # sync may send the first rows alone while the others are still being written.
    assert meter_cli(meter, "cloud", "pause").returncode == 0
    send_calls(meter, "crash", anthropic=6)
    meter.wait_rows("crash", 6)
    with psycopg.connect(server.dsn) as blocker:
        blocker.execute("LOCK TABLE daily_rollups IN EXCLUSIVE MODE")
        assert meter_cli(meter, "cloud", "resume").returncode == 0
        wait_for_ingest_blocked(server)
        meter.process.kill()  # SIGKILL: the daemon never learns the answer
        meter.process.wait(10)
        blocker.rollback()  # now the server commits the batch
    wait_synced(server, WORKSPACE, before + 6)
    assert cloud_status(meter)["unsynced_rows"] == 6  # the machine does not know it was sent
    rig.meter = meter = start_meter_again(meter)
    assert_exactly_once(meter, server)
    wait_for(lambda: cloud_status(meter)["unsynced_rows"] == 0, 60, "caught up")


def test_pause_resume_and_disconnect(rig: Rig) -> None:
    server, meter = rig.server, rig.meter
    before = len(server_ids(server, WORKSPACE))
    assert meter_cli(meter, "cloud", "pause").returncode == 0
    send_calls(meter, "pause", anthropic=2)
    meter.wait_rows("pause", 2)
    status = cli_status(meter)
    assert status["state"] == "PAUSED" and status["pause_reason"] == "paused by the user"
    wait_for(lambda: cloud_status(meter)["unsynced_rows"] == 2, 5, "2 queued rows")
    assert len(server_ids(server, WORKSPACE)) == before
    assert meter_cli(meter, "cloud", "resume").returncode == 0
    assert_exactly_once(meter, server)

    done = meter_cli(meter, "cloud", "disconnect")
    assert done.returncode == 0 and "Revoked at the server" in done.stdout
    assert not (meter.home / "cloud-credentials.json").exists()
    assert cli_status(meter)["state"] == "NOT-CONFIGURED"
    machines = json.loads(server.cli("machines", "--json").stdout)
    assert [m["status"] for m in machines] == ["revoked"]
    report = json.loads(meter_cli(meter, "report", "--json").stdout)
    assert report["totals"]["requests"] == len(local_ids(meter))  # local reports keep working


def start_meter_again(meter: Meter) -> Meter:
    """Restart a daemon on its own home, config and credentials."""
    process = subprocess.Popen(
        [METER, "daemon"],
        env=meter.run_env(),
        stdout=meter.log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    state = meter.home / "daemon.json"
    wait_for(lambda: state.exists() and json.loads(state.read_text())["pid"] == process.pid, 30)
    return Meter(meter.home, meter.port, process, meter.log)
