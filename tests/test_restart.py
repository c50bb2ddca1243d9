"""Restarting without breaking clients: the edge's socket handover, and the command the
supervisors run for a uvx install (tests/test_upgrade.py runs both through real upgrades)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from halton_meter.lifecycle import supervisor
from halton_meter.paths import Paths
from halton_meter.runstate import TAKE_OVER_ENV, pid_alive
from tests.conftest import FakeUpstream, free_port, wait_for
from tests.test_edge import EdgeProcess, clean_env, start_edge, write_edge_config


def _successor(home: Path, port: int, *, take_over: bool) -> EdgeProcess:
    env = clean_env(home)
    if take_over:
        env[TAKE_OVER_ENV] = "1"
    before = json.loads((home / "edge.json").read_text())["pid"]
    process = subprocess.Popen(
        [sys.executable, "-m", "halton_meter.edge"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(home / "successor.stderr").open("wb"),
    )

    def published() -> bool:
        if process.poll() is not None:
            raise AssertionError((home / "successor.stderr").read_text())
        return json.loads((home / "edge.json").read_text())["pid"] != before

    wait_for(published, 15, "the successor to publish edge.json")
    return EdgeProcess(home, port, process)


def _status(port: int) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: edge\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answer: dict[str, object] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return answer


def test_a_successor_takes_the_socket_and_no_connection_is_refused(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = start_edge(home, free_port(), fake_upstream)
    assert json.loads((home / "edge.json").read_text())["handover"] is True
    assert stat.S_IMODE((home / "edge.sock").stat().st_mode) & 0o077 == 0
    refused: list[str] = []
    answered = 0
    stop = threading.Event()

    def knock() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                _status(first.port)
                answered += 1
            except OSError as error:
                refused.append(repr(error))

    knocking = threading.Thread(target=knock, daemon=True)
    knocking.start()
    second = _successor(home, first.port, take_over=True)
    try:
        assert first.process.poll() is None  # both accept on the one socket for a moment
        assert first.stop() == 0
        time.sleep(0.3)
        stop.set()
        knocking.join(10)
        assert refused == [] and answered > 10, (refused, answered)
        assert _status(first.port)["pid"] == second.process.pid
        assert [e["took_over"] for e in second.events("started")] == [False, True]
        # The first one's stop left the successor's offer and state in place.
        assert (home / "edge.sock").exists()
        assert json.loads((home / "edge.json").read_text())["pid"] == second.process.pid
    finally:
        stop.set()
        second.stop()
    assert not (home / "edge.sock").exists()


def test_without_being_asked_a_second_edge_does_not_share_the_port(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """An edge started by hand next to the service one fails as before (test_edge.py); here:
    it does not quietly take the socket over, which only the supervisor asks for."""
    home = tmp_path / "home"
    first = start_edge(home, free_port(), fake_upstream)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "halton_meter.edge"],
            env=clean_env(home),
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.returncode == 1
        assert f"another Halton Meter edge (pid {first.process.pid})" in done.stderr
        assert _status(first.port)["pid"] == first.process.pid
    finally:
        first.stop()


# --- the uvx launcher ----------------------------------------------------------------------


def test_only_a_parent_cache_tag_makes_an_environment_disposable(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    archive = cache / "archive-v0" / "abc"
    archive.mkdir(parents=True)
    (cache / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    assert supervisor.in_disposable_environment(str(archive))
    tool = tmp_path / "tools" / "halton-meter"  # `uv tool install` tags the venv itself
    tool.mkdir(parents=True)
    (tool / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    assert not supervisor.in_disposable_environment(str(tool))


def test_the_uvx_launcher_is_pinned_versioned_and_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "installed_from_local_files", lambda: False)
    paths = Paths(home=tmp_path / "home", home_overridden=True)
    uv = tmp_path / "bin with space" / "uv"
    uv.parent.mkdir()
    uv.write_text("#!/bin/sh\n")
    uv.chmod(0o755)
    environ = {"UV": str(uv), "UV_CACHE_DIR": str(tmp_path / "cache"), "PATH": ""}
    script = supervisor.uvx_launcher(paths, environ)
    assert script == paths.home / "bin" / f"halton-meter-{supervisor.__version__}"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert f"'{uv}' --quiet tool run --from halton-meter=={supervisor.__version__} python" in text
    assert f"UV_CACHE_DIR={tmp_path / 'cache'}; export UV_CACHE_DIR" in text
    assert 'exec "$prefix/bin/halton-meter" "$@"' in text
    inode = script.stat().st_ino
    assert supervisor.uvx_launcher(paths, environ) == script
    assert script.stat().st_ino == inode  # unchanged content: not rewritten


def test_without_any_uv_the_user_is_told_to_install_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "installed_from_local_files", lambda: False)
    paths = Paths(home=tmp_path / "home", home_overridden=True)
    with pytest.raises(supervisor.EphemeralInstallError, match=r"uv tool install \."):
        supervisor.uvx_launcher(paths, {"PATH": str(tmp_path)})


def test_a_uvx_copy_from_a_checkout_is_never_fetched_by_name(tmp_path: Path) -> None:
    """Issue 16, item 1: the launcher would ask the package index for `halton-meter==VERSION`,
    another product's name there; a copy installed from a checkout (this test's own editable
    install: PEP 610 names a file:// URL) is told to install for good instead."""
    assert supervisor.installed_from_local_files()
    paths = Paths(home=tmp_path / "home", home_overridden=True)
    with pytest.raises(supervisor.EphemeralInstallError, match="from a checkout or a wheel"):
        supervisor.uvx_launcher(paths, {"PATH": str(tmp_path)})
    assert not (paths.home / "bin").exists()


def test_the_supervisor_replaces_the_edge_and_falls_back_when_it_cannot_hand_over(
    fake_upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    port = free_port()
    write_edge_config(home, port, free_port(), fake_upstream, 9, "")
    for key in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HALTON_METER_HOME", str(home))
    paths = Paths(home=home, home_overridden=True)
    background = supervisor.BackgroundSupervisor()
    first = background.start(supervisor.EDGE, paths)
    try:
        second = background.replace(supervisor.EDGE, paths)
        assert second != first and not pid_alive(first)
        assert _status(port)["pid"] == second
        (home / "edge.sock").unlink()  # the offer is gone: the successor cannot take over
        third = background.replace(supervisor.EDGE, paths)
        assert third != second and not pid_alive(second)
        assert _status(port)["pid"] == third
        lines = (home / "logs" / "edge.jsonl").read_text().splitlines()
        starts = [json.loads(line) for line in lines if '"started"' in line]
        assert [start["took_over"] for start in starts] == [False, True, False]
        assert json.loads((home / "edge.pid").read_text())["pid"] == third
    finally:
        background.stop(supervisor.EDGE, paths)
