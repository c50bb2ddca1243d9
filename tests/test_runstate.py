"""runstate.py, the contract between the edge, the daemon and the commands that manage them:
atomic writes, pid liveness by creation time, the state files, and the timeouts' order."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from halton_meter import runstate
from halton_meter.runstate import (
    DaemonState,
    EdgeState,
    check_timeout_order,
    live_pid,
    pid_alive,
    process_created,
    read_state,
    remove_own_state,
    write_atomic,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    write_atomic(target, "first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert leftovers(target.parent) == []


def test_write_atomic_modes(tmp_path: Path) -> None:
    """Without a mode the file gets what `open` gives (umask applied); with one, exactly it."""
    plain = tmp_path / "plain"
    write_atomic(plain, "x")
    reference = tmp_path / "reference"
    reference.write_text("x")
    assert stat.S_IMODE(plain.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    secret = tmp_path / "secret"
    write_atomic(secret, "token", mode=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    script = tmp_path / "script"
    write_atomic(script, "#!/bin/sh\n", mode=0o755)
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


def test_a_write_that_fails_midway_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "daemon.json"
    write_atomic(target, "old")

    def disk_gone(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(runstate.os, "fsync", disk_gone)
    with pytest.raises(OSError, match="Input/output"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_writers_in_several_threads_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "edge.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for _ in range(40):
                write_atomic(target, json.dumps({"writer": n}))
        except BaseException as error:  # collected: pytest does not see thread errors
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads(target.read_text())["writer"] in range(4)
    assert leftovers(tmp_path) == []


def test_creation_time_is_what_psutil_reports() -> None:
    for pid in (os.getpid(), os.getppid()):
        assert process_created(pid) == pytest.approx(psutil.Process(pid).create_time(), abs=0.02)


def test_a_pid_reused_by_a_later_process_is_not_alive_for_an_older_state() -> None:
    """A state file written an hour ago cannot name this process, created a moment ago."""
    created = process_created(os.getpid())
    assert created is not None
    assert pid_alive(os.getpid())
    assert pid_alive(os.getpid(), started_at=created + 1.0)  # a state written after start
    assert not pid_alive(os.getpid(), started_at=created - 3600)
    assert pid_alive(os.getpid(), started_at="not a time")  # unknown: liveness alone


def test_gone_and_zombie_processes_are_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not pid_alive(child.pid)  # exited, not yet reaped
    assert process_created(child.pid) is None
    child.wait()
    assert not pid_alive(child.pid)
    assert not pid_alive(0) and not pid_alive(-1)


def test_state_files_round_trip_and_name_a_live_pid(tmp_path: Path) -> None:
    now = time.time()
    edge = tmp_path / runstate.EDGE_STATE_FILE
    EdgeState(os.getpid(), 8081, 8090, "1.0", now, handover=True).write(edge)
    assert read_state(edge) == {
        "pid": os.getpid(),
        "port": 8081,
        "internal_port": 8090,
        "version": "1.0",
        "started_at": now,
        "handover": True,
        "drains": False,
    }
    assert live_pid(edge) == os.getpid()
    daemon = tmp_path / runstate.DAEMON_STATE_FILE
    DaemonState(os.getpid(), "1.0", 8090, True, now - 3600, api_port=None).write(daemon)
    assert read_state(daemon) == {
        "pid": os.getpid(),
        "version": "1.0",
        "listen_port": 8090,
        "behind_edge": True,
        "started_at": now - 3600,
        "api_port": None,
        "drains": False,
        "handover": False,
    }
    assert live_pid(daemon) is None  # stale: written before this process existed
    (tmp_path / "broken.json").write_text("{")
    assert read_state(tmp_path / "broken.json") is None
    assert live_pid(tmp_path / "missing.json") is None


def test_only_the_process_a_state_file_names_removes_it(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.json"
    theirs.write_text(json.dumps({"pid": os.getpid() + 1}))
    remove_own_state(theirs)
    assert theirs.exists()
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({"pid": os.getpid()}))
    remove_own_state(ours)
    assert not ours.exists()


def test_the_timeouts_order_is_checked() -> None:
    check_timeout_order()  # the shipped values
    with pytest.raises(ValueError, match="owner wait"):
        check_timeout_order(answer=0.5, owner_wait=0.5)
    with pytest.raises(ValueError, match="grace"):
        check_timeout_order(grace=30.0, stop=20.0)
    # A stop timeout at or below the longest drain would kill a draining daemon.
    with pytest.raises(ValueError, match="longest drain"):
        check_timeout_order(stop=runstate.DRAIN_SECONDS_MAX)
    with pytest.raises(ValueError, match="default drain"):
        check_timeout_order(drain=runstate.DRAIN_SECONDS_MAX + 1)
    assert runstate.STOP_TIMEOUT > runstate.DRAIN_SECONDS_MAX >= runstate.DRAIN_SECONDS


def test_the_edge_and_the_daemon_use_the_contract_constants() -> None:
    """The checked values are the ones in use, not copies that could drift."""
    from halton_meter.capture import addon
    from halton_meter.edge import listener, wire
    from halton_meter.lifecycle import supervisor

    assert listener.DAEMON_ANSWER_TIMEOUT is runstate.DAEMON_ANSWER_TIMEOUT
    assert listener.EdgeSettings.__dataclass_fields__["grace"].default == (
        runstate.EDGE_GRACE_SECONDS
    )
    assert addon.OWNER_WAIT_SECONDS is runstate.OWNER_WAIT_SECONDS
    assert addon.CLIENT_HEADER == wire.CLIENT_HEADER == "X-Halton-Client"
    assert supervisor.STOP_TIMEOUT is runstate.STOP_TIMEOUT


def test_the_contract_needs_nothing_beyond_the_standard_library() -> None:
    """The edge imports it, and the edge stays standard-library only."""
    code = (
        "import sys, halton_meter.runstate; "
        "known = {*sys.stdlib_module_names, '__main__'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] not in known))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['halton_meter', 'halton_meter.runstate']"
