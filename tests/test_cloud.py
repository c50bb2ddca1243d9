"""The machine's side: `[cloud]` settings, `cloud status` with no server, the sync position
surviving a VACUUM, and `[cloud] privacy` / `hash_projects` as the server sees them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from halton_meter.cloud import sync
from halton_meter.config import ConfigError, parse_config
from halton_meter.ledger.db import connect
from halton_meter.ledger.row import new_request_id
from tests.conftest import METER, FakeUpstream
from tests.team_fixtures import TeamServer, send_calls, start_paired_meter, wait_synced
from tests.test_ledger import sample_row


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_HOME"] = str(home)
    return subprocess.run([METER, *args], env=env, capture_output=True, text=True, timeout=60)


def test_cloud_settings_are_validated() -> None:
    config = parse_config(
        '[cloud]\nprivacy = "minimal"\nhash_projects = true\nbatch_size = 100\n', Path("c.toml")
    )
    assert config.cloud.privacy == "minimal" and config.cloud.hash_projects
    assert config.cloud.batch_size == 100 and config.cloud.sync_interval_seconds == 5.0
    for text, key in [
        ('[cloud]\nprivacy = "everything"\n', "cloud.privacy"),
        ('[cloud]\nhash_projects = "yes"\n', "cloud.hash_projects"),
        ("[cloud]\nbatch_size = 5000\n", "cloud.batch_size"),
        ("[cloud]\nsync_interval_seconds = 0\n", "cloud.sync_interval_seconds"),
        ("[cloud]\nsend_bodies = true\n", "cloud.send_bodies"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, Path("c.toml"))
        assert key in str(caught.value) and "line 2" in str(caught.value)


def test_not_configured(tmp_path: Path) -> None:
    done = cli(tmp_path, "cloud", "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["state"] == "NOT-CONFIGURED" and status["server"] is None
    assert status["unsynced_rows"] == 0 and status["privacy"] == "metadata"
    for command in ("sync", "whoami", "disconnect"):
        done = cli(tmp_path, "cloud", command)
        assert done.returncode == 1 and "cloud connect --server" in done.stderr
    done = cli(tmp_path, "cloud", "connect", "--server", "http://127.0.0.1:9", "--timeout", "1")
    assert done.returncode == 1 and "pairing failed" in done.stderr
    assert not (tmp_path / "cloud-credentials.json").exists()


def test_position_survives_vacuum_renumbering(tmp_path: Path) -> None:
    """A rowid is not a declared key: VACUUM may renumber rows after deletions. The id kept
    beside the position finds the row again, so no unsent row is skipped."""
    con = connect(tmp_path / "db.sqlite")
    ids = [new_request_id() for _ in range(6)]
    for row_id in ids:
        con.execute(
            "INSERT INTO requests (id, requested_at, provider, api, host, status) "
            "VALUES (?, '2026-11-01T00:00:00.000Z', 'openai', 'chat', 'h', 'ok')",
            (row_id,),
        )
    # Rows 1-4 synced; row 2 deleted by hand; then the rows after it renumbered down, as
    # SQLite's documentation allows VACUUM to do (this SQLite keeps them; we do it by hand).
    con.execute("UPDATE cloud_sync SET synced_rowid = 4, synced_id = ?", (ids[3],))
    con.execute("DELETE FROM requests WHERE id = ?", (ids[1],))
    con.execute("UPDATE requests SET rowid = rowid - 1 WHERE rowid > 2")
    state = sync.read_state(con)
    assert sync.unsynced_rows(con, state) == 2  # ids[4] and ids[5], not ids[5] alone
    # And when the recorded row is gone too, everything goes again (the server skips copies).
    con.execute("DELETE FROM requests WHERE id = ?", (ids[3],))
    assert sync.unsynced_rows(con, state) == 4


def test_privacy_settings_as_the_server_sees_them(
    fake_upstream: FakeUpstream, team_server: TeamServer, tmp_path: Path
) -> None:
    meter = start_paired_meter(
        fake_upstream,
        tmp_path,
        team_server,
        "privacy",
        "private-box",
        extra='privacy = "minimal"\nhash_projects = true\n',
    )
    try:
        send_calls(meter, "secret-client", anthropic=1)
        meter.wait_rows("secret-client", 1)
        wait_synced(team_server, "privacy", 1)
        ((project, user_agent, response_id, tokens),) = team_server.sql(
            "SELECT l.project, l.user_agent, l.response_id, l.output_tokens FROM ledger l "
            "JOIN workspaces w ON w.id = l.workspace_id WHERE w.name = 'privacy'"
        )
        workspace_id = json.loads((meter.home / "cloud-credentials.json").read_text())[
            "workspace_id"
        ]
        assert project == sync.hash_project("secret-client", workspace_id)
        assert project.startswith("h:") and "secret" not in project
        assert user_agent is None and response_id is None
        assert tokens == 567  # the metadata that counts still arrives
        local = sqlite3.connect(meter.ledger).execute("SELECT user_agent FROM requests").fetchone()
        assert local[0]  # only what is sent is trimmed, not the local ledger
    finally:
        meter.stop()


def test_wire_rows_never_carry_raw_usage() -> None:
    assert "raw_usage" not in sync.WIRE_COLUMNS
    assert "attribution_detail" not in sync.WIRE_COLUMNS  # process ids and folders stay home
    row = {name: getattr(sample_row(), name) for name in sync.WIRE_COLUMNS}
    sent = sync.wire_row(row, parse_config("", Path("c")).cloud, "ws")
    assert set(sent) == set(sync.WIRE_COLUMNS)
    assert isinstance(sent["stream"], bool)
