"""Stopping and restarting the daemon cuts no call (issue 14, items 1 and 2), with real
processes and the real Anthropic SDK: SIGTERM to a daemon with 10 streams in flight, `restart`
and an upgrade's `init` with 10 streams in flight through the edge: 10 of 10 complete, 10 rows,
0 client errors, and no connection handed to the edge in the meantime is tunnelled unmetered.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from halton_meter.runstate import DRAIN_FILE
from tests.conftest import FakeUpstream, start_meter, wait_for
from tests.fakeupstream import catalog
from tests.streams import Streams
from tests.test_lifecycle import Install, make_install

pytestmark = pytest.mark.timeout(300)


def _rows(ledger: Path, project: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [
            dict(row) for row in con.execute("SELECT * FROM requests WHERE project = ?", (project,))
        ]
    finally:
        con.close()


def _check_complete(ledger: Path, project: str, streams: Streams) -> None:
    """10 of 10 complete with the whole text, 0 client errors, 10 complete rows."""
    assert streams.errors == [], streams.errors
    assert sorted(streams.completed) == list(range(10))
    assert set(streams.texts) == {catalog.full_text(streams.events)}
    rows = wait_for(
        lambda: len(r := _rows(ledger, project)) >= 10 and r, 20, f"10 rows of {project}"
    )
    assert len(rows) == 10
    assert [(r["status"], r["tokens_complete"]) for r in rows] == [("ok", 1)] * 10
    assert {r["output_tokens"] for r in rows} == {catalog.ANTHROPIC_USAGE["output_tokens"]}


def test_sigterm_lets_the_streams_in_flight_finish(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    meter = start_meter(tmp_path, fake_upstream)
    streams = Streams(f"http://sigterm:meter@127.0.0.1:{meter.port}", meter.bundle).start()
    signalled = time.monotonic()
    meter.process.send_signal(signal.SIGTERM)
    assert meter.process.wait(timeout=60) == 0
    took = time.monotonic() - signalled
    streams.join()
    _check_complete(meter.ledger, "sigterm", streams)
    report = json.loads((tmp_path / DRAIN_FILE).read_text())
    assert report["pid"] == meter.process.pid
    assert (report["calls"], report["finished"], report["cut"]) == (10, 10, 0), report
    # It waited for the streams (about 3 s each), not for the 30 s limit.
    assert 0.5 < report["seconds"] < 15 and took < 20, (report, took)
    assert not (tmp_path / "daemon.json").exists()


# --- through the edge, with the background supervisor ---------------------------------------


@pytest.fixture
def install(fake_upstream: FakeUpstream, tmp_path: Path) -> Any:
    setup = make_install(tmp_path, fake_upstream, rc_files=False)
    try:
        result = setup.init(apps=False)
        assert result["ok"], result
        yield setup
    finally:
        setup.kill_all()


def _edge_counters(install: Install) -> dict[str, int]:
    from halton_meter.lifecycle.install import edge_status

    answer = edge_status(install.ports()["proxy_port"])
    assert answer is not None
    counters: dict[str, int] = answer["counters"]
    return counters


def _pid(install: Install, name: str) -> int:
    return int(json.loads((install.home / f"{name}.json").read_text())["pid"])


def test_restart_hands_the_socket_over_and_cuts_no_stream(install: Install) -> None:
    port = install.ports()["proxy_port"]
    bundle = install.home / "ca-bundle.pem"
    before = _edge_counters(install)
    old = _pid(install, "daemon")
    # 10 s streams: the new daemon takes a few seconds to start before the old one stops.
    streams = Streams(f"http://restart:meter@127.0.0.1:{port}", bundle, events=50).start()
    done = install.meter("restart")
    assert done.returncode == 0, done.stderr
    new = _pid(install, "daemon")
    assert new != old
    assert f"daemon restarted (pid {old} -> {new})" in done.stderr, done.stderr
    assert "waited" in done.stderr and "for 10 calls in flight; all finished" in done.stderr
    streams.join()
    _check_complete(install.home / "db.sqlite", "restart", streams)
    # A stream started after the restart is metered by the new daemon, and the edge never
    # fell back to an unmetered tunnel: every hand-off reached a daemon.
    after = Streams(f"http://after:meter@127.0.0.1:{port}", bundle, events=2).start()
    after.join()
    _check_complete(install.home / "db.sqlite", "after", after)
    counters = _edge_counters(install)
    assert counters["fallbacks"] == before["fallbacks"], (before, counters)
    assert counters["handoff_failures"] == before["handoff_failures"], (before, counters)
    code, status = install.status()
    assert code == 0 and status["components"]["daemon"]["pid"] == new, status


def test_an_upgrades_init_replaces_both_and_cuts_no_stream(install: Install) -> None:
    """`init` after an upgrade replaces an edge and a daemon that run another version; here the
    running ones say they run "0.0.1" (their state files), which is all `init` looks at, so the
    real replacement path runs, with 10 streams in flight through both."""
    port = install.ports()["proxy_port"]
    bundle = install.home / "ca-bundle.pem"
    before = _edge_counters(install)
    olds = {name: _pid(install, name) for name in ("edge", "daemon")}
    for name in olds:
        path = install.home / f"{name}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "version": "0.0.1"}))
    # 20 s streams: both processes are replaced while they run (each start takes seconds).
    streams = Streams(f"http://upgrade:meter@127.0.0.1:{port}", bundle, events=100).start()
    result = install.init(apps=False)
    assert sorted(result["restarted"]) == ["daemon", "edge"], result
    assert all(_pid(install, name) != pid for name, pid in olds.items())
    streams.join()
    _check_complete(install.home / "db.sqlite", "upgrade", streams)
    report = json.loads((install.home / DRAIN_FILE).read_text())
    assert report["pid"] == olds["daemon"] and report["handed_over"] is True, report
    assert (report["calls"], report["cut"]) == (10, 0), report
    counters = _edge_counters(install)
    # The new edge never tunnelled an LLM connection unmetered (its counters start at 0).
    assert counters["fallbacks"] == 0 and counters["handoff_failures"] == 0, (before, counters)
