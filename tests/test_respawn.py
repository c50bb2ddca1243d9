"""Nothing is left dead (issue 14, item 6): in background mode the guard (guard.py) brings a
killed edge back within 1 s and a killed daemon within 5 s, logs and counts it, and `status`
shows it; a component that keeps dying is respawned with back-off."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from halton_meter.edge.log import JsonLog
from halton_meter.guard import Guard
from halton_meter.lifecycle.install import edge_status
from tests.conftest import FakeUpstream, wait_for
from tests.test_lifecycle import Install, make_install

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def install(fake_upstream: FakeUpstream, tmp_path: Path) -> Any:
    setup = make_install(tmp_path, fake_upstream, rc_files=False)
    try:
        result = setup.init(apps=False)
        assert result["ok"], result
        yield setup
    finally:
        setup.kill_all()


def _state(install: Install, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((install.home / name).read_text())
    return data


def _guard_events(install: Install, event: str) -> list[dict[str, Any]]:
    path = install.home / "logs" / "guard.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def _standbys_ready(install: Install) -> None:
    """Both standbys started and done with their imports (the guard starts each once its
    component has run guard.STANDBY_AFTER)."""

    def ready() -> bool:
        try:
            standby = _state(install, "guard.json").get("standby", {})
        except (OSError, ValueError):
            return False
        return all(standby.get(name, {}).get("ready") for name in ("edge", "daemon"))

    wait_for(ready, 60, "the guard's standbys to be ready")


def test_a_killed_edge_is_back_within_a_second_and_counted(install: Install) -> None:
    """The guard wakes the edge's standby on the same listening socket: back well within the
    second, and a client that connects meanwhile is queued, never refused."""
    port = install.ports()["proxy_port"]
    _standbys_ready(install)
    assert _state(install, "guard.json")["holds_edge_socket"] is True
    old = _state(install, "edge.json")["pid"]
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    # At once, before any new edge can run: the kernel still accepts for the guard's copy.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as early:
        early.sendall(b"GET /status HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
        answer = early.recv(65536)
    first_answer = time.monotonic() - killed
    assert answer.startswith(b"HTTP/1.1 200"), answer

    def answering() -> bool:
        answer = edge_status(port, timeout=0.2)
        return answer is not None and answer["pid"] != old

    wait_for(answering, 10, "the edge to answer again")
    back = time.monotonic() - killed

    def guard_back() -> Any:
        return _state(install, "guard.json")["components"]["edge"]["last_back_seconds"]

    wait_for(lambda: guard_back() is not None, 10, "the guard to see the edge back")
    print(
        f"\nedge: first answer {first_answer:.3f} s after the kill (connected at once), "
        f"back {back:.3f} s (guard: {guard_back()} s), target 1.0 s, load {os.getloadavg()[0]:.1f}"
    )
    assert back < 1.0, f"the edge was back after {back:.2f} s"
    code, status = install.status()
    assert code == 0, status
    assert status["guard"]["running"] is True
    assert status["guard"]["components"]["edge"]["respawns"] == 1
    assert status["guard"]["components"]["daemon"]["respawns"] == 0
    assert status["guard"]["components"]["edge"]["last_back_seconds"] == guard_back()
    assert status["guard"]["holds_edge_socket"] is True
    (respawned,) = _guard_events(install, "respawned")
    assert (
        respawned["component"] == "edge" and respawned["pid"] == status["components"]["edge"]["pid"]
    )
    assert respawned["standby"] is True
    text = install.meter("status").stdout
    shown = f"respawned edge 1 times (back in {guard_back()} s), daemon 0 times"
    assert shown in " ".join(text.split()), text


def test_an_edge_killed_again_before_its_standby_refuses_no_connection(install: Install) -> None:
    """The second death within CRASH_WINDOW is a crash loop (0.5 s back-off) and comes before a
    new standby: the edge starts afresh. Meanwhile the guard's copy of the listening socket
    queues every client's connection, so none is refused; each is answered once it is back."""
    port = install.ports()["proxy_port"]
    _standbys_ready(install)
    for round_ in range(2):
        old = _state(install, "edge.json")["pid"]
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        answers = []
        for _ in range(5):  # clients arriving while no edge runs
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET /status HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
            answers.append(conn)
            time.sleep(0.05)
        for conn in answers:
            with conn:
                assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        back = time.monotonic() - killed
        answer = edge_status(port, timeout=2)
        assert answer is not None and answer["pid"] != old
        print(f"\nedge killed ({'standby' if round_ == 0 else 'fresh start'}): back {back:.3f} s")
    events = _guard_events(install, "respawned")
    assert [e["standby"] for e in events] == [True, False], events
    assert _guard_events(install, "died")[1]["respawn_in"] >= 0.5


def test_the_guard_lets_go_of_the_port_when_the_edge_stops_cleanly(install: Install) -> None:
    """A supervisor that does not know of the guard (an older release's, after a rollback)
    stops the edge without removing edge.pid first, then binds the port for its own edge: the
    guard's copy of the listening socket must be gone by then, and nothing respawned."""
    port = install.ports()["proxy_port"]
    _standbys_ready(install)
    assert _state(install, "guard.json")["holds_edge_socket"] is True
    old = _state(install, "edge.json")["pid"]
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: not (install.home / "edge.json").exists(), 15, "the edge to stop")
    stopped = time.monotonic()
    while True:
        with socket.socket() as own:
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the edge binds
            try:
                own.bind(("127.0.0.1", port))
                own.listen()
                break
            except OSError:
                if time.monotonic() - stopped >= 0.5:
                    held = subprocess.run(
                        ["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True
                    ).stdout
                    raise AssertionError(f"the port is still held:\n{held}") from None
                time.sleep(0.01)
    print(f"\nport free {time.monotonic() - stopped:.3f} s after the edge's clean stop")
    time.sleep(0.5)
    assert _guard_events(install, "respawned") == []
    assert _state(install, "guard.json")["holds_edge_socket"] is False


def test_a_killed_daemon_is_back_within_five_seconds_and_metering(install: Install) -> None:
    internal = install.ports()["internal_port"]
    _standbys_ready(install)
    old = _state(install, "daemon.json")["pid"]
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()

    def metering() -> bool:
        try:
            state = _state(install, "daemon.json")
        except (OSError, ValueError):
            return False
        if state["pid"] == old:
            return False
        try:
            with socket.create_connection(("127.0.0.1", internal), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(metering, 20, "the daemon to be back")
    back = time.monotonic() - killed
    print(f"\ndaemon: back {back:.3f} s, target 5.0 s, load {os.getloadavg()[0]:.1f}")
    assert back < 5.0, f"the daemon was back after {back:.2f} s"
    code, status = install.status()
    assert code == 0, status
    assert status["guard"]["components"]["daemon"]["respawns"] == 1
    # `stop` is a stop: the guard does not undo it.
    assert install.meter("stop").returncode == 0
    time.sleep(1.0)
    assert install.status()[1]["components"]["daemon"]["pid"] is None
    assert install.status()[1]["guard"]["components"]["daemon"]["respawns"] == 1


def test_a_component_that_keeps_dying_is_respawned_with_back_off(tmp_path: Path) -> None:
    """The guard's loop in this process, on a "daemon" that exits at once: respawned at once,
    then after 1, 2, 4 s (a crash loop), each logged and counted."""
    home = tmp_path / "home"
    home.mkdir()
    command = [sys.executable, "-c", "raise SystemExit(3)"]
    dead = {"pid": 999999999, "command": command, "started_at": time.time()}
    (home / "daemon.pid").write_text(json.dumps(dead))
    (home / "daemon.json").write_text(json.dumps({"pid": 999999999}))  # killed: left behind
    log = JsonLog(home / "logs" / "guard.jsonl", "info", stderr=False)
    guard = Guard(home, home / "logs", log)
    respawned_at: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < 8.5:
        before = guard.records["daemon"].respawns
        guard.tick()
        guard.reap()
        if guard.records["daemon"].respawns != before:
            respawned_at.append(time.monotonic() - started)
        time.sleep(0.02)
    log.close()
    gaps = [b - a for a, b in itertools.pairwise(respawned_at)]
    assert respawned_at[0] < 0.3 and len(respawned_at) == 4, respawned_at
    # Each gap is the back-off (1, 2, 4 s) plus the moment the process takes to exit.
    for gap, delay in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert delay <= gap < delay + 1.0, (gaps, respawned_at)
    state = json.loads((home / "guard.json").read_text())
    assert state["components"]["daemon"]["respawns"] == 4
    assert state["components"]["daemon"]["crash_loop"] == 3
    lines = (home / "logs" / "guard.jsonl").read_text().splitlines()
    assert sum('"respawned"' in line for line in lines) == 4
    assert sum('"died"' in line for line in lines) >= 4


def test_the_guard_needs_nothing_beyond_the_standard_library() -> None:
    """It must survive whatever breaks the daemon's dependencies: it loads none of them."""
    code = (
        "import sys, halton_meter.guard; "
        "known = {*sys.stdlib_module_names, '__main__'}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} - known))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['halton_meter']", done.stdout


def test_a_component_that_stopped_cleanly_is_not_respawned(tmp_path: Path) -> None:
    """An older release's supervisor removes the pid file only after the process stopped: in
    between, the pid file names a dead pid, but the state file is gone (a clean stop)."""
    home = tmp_path / "home"
    home.mkdir()
    stopped = {"pid": 999999999, "command": [sys.executable, "-c", "0"], "started_at": 1.0}
    (home / "edge.pid").write_text(json.dumps(stopped))
    log = JsonLog(home / "logs" / "guard.jsonl", "info", stderr=False)
    guard = Guard(home, home / "logs", log)
    for _ in range(10):
        guard.tick()
        time.sleep(0.02)
    log.close()
    assert guard.records["edge"].respawns == 0
