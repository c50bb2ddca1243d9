"""A full disk under the ledger (issue 18): traffic keeps flowing, rows wait in memory up to
the documented cap and are then counted as dropped (never silently), `status` and `doctor`
say why and what to do, the rows are written once there is room, and the logs stop growing
before the disk is full.

Real file systems: a small tmpfs mounted by the test (needs root and the right to mount;
skipped cleanly otherwise), filled with a filler file until the kernel says ENOSPC.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from halton_meter import logs
from halton_meter.ledger import writer as writer_module
from halton_meter.ledger.row import LedgerRow
from halton_meter.ledger.writer import LedgerWriter
from tests.conftest import METER, FakeUpstream, start_meter, wait_for
from tests.test_ledger import sample_row

CHAT = {"model": "gpt-4.1", "stream": False, "messages": [{"role": "user", "content": "hi"}]}


def _mount(folder: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    _mount(folder, size)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of the file system (until ENOSPC); returns the filler."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        for size in (65536, 4096, 512, 1):  # then the last partial blocks
            with contextlib.suppress(OSError):
                while handle.write(b"\0" * size):
                    pass
    return filler


class Ready:
    def __init__(self, row: LedgerRow) -> None:
        self.row = row

    def to_row(self) -> LedgerRow:
        return self.row


def count_rows(ledger: Path) -> int:
    con = sqlite3.connect(ledger)
    try:
        return int(con.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
    finally:
        con.close()


def test_rows_wait_up_to_the_cap_then_are_counted_dropped_then_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAX_BACKLOG", 300)
    monkeypatch.setattr(writer_module, "RETRY_SECONDS", (0.05, 0.1, 0.2, 0.3))
    with small_disk(tmp_path / "disk") as disk:
        ledger = disk / "db.sqlite"
        writer = LedgerWriter(ledger)
        writer.start()
        writer.submit(Ready(sample_row(project="before")))
        wait_for(lambda: writer.rows_written == 1, 10, "the first row")
        filler = fill(disk)
        started = time.perf_counter()
        for _ in range(500):
            writer.submit(Ready(sample_row(project="during", raw_usage="x" * 2000)))
        assert time.perf_counter() - started < 1.0  # traffic never waits for the ledger
        wait_for(
            lambda: writer.rows_dropped == 200 and writer.unwritable_since is not None,
            20,
            "the rows past the cap dropped, the ledger found unwritable",
        )
        health = writer.health()
        assert health["writable"] is False
        assert "full" in str(health["error"]), health
        assert health["pending_rows"] == 300 and health["held_rows_cap"] == 300
        assert health["rows_dropped"] == 200
        filler.unlink()
        wait_for(lambda: writer.rows_written == 301, 20, "the held rows written")
        assert writer.health()["writable"] is True and writer.health()["error"] is None
        assert writer.close() is False  # rows were lost, and it says so
        assert count_rows(ledger) == 301


def test_logs_stop_growing_before_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule: below LOG_MIN_FREE_BYTES free, log lines are skipped and counted; once there
    is room again, one line says how many were skipped."""
    monkeypatch.setattr(logs, "LOG_MIN_FREE_BYTES", 512 * 1024)
    monkeypatch.setattr(logs, "SPACE_CHECK_SECONDS", 0.0)
    with small_disk(tmp_path / "disk", "2m") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 1024 * 1024)
        path = disk / "logs" / "daemon.jsonl"
        (handler,) = logs.process_handlers("daemon", path, console=False)
        assert isinstance(handler, logs.SpaceAwareFileHandler)
        logger = logging.getLogger("test.full-disk")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            for index in range(300):  # 300 x 10 KB: three times what is free
                logger.warning("line %d %s", index, "y" * 10_000)
            stats = os.statvfs(disk)
            free = stats.f_bavail * stats.f_frsize
            assert free >= 512 * 1024 - 20_000, free  # stopped at the threshold
            assert handler.skipped > 0
            size = path.stat().st_size
            logger.warning("one more")
            assert path.stat().st_size == size  # not growing
            filler.unlink()  # room again
            logger.warning("after")
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            assert lines[-2]["event"] == "log_lines_skipped" and lines[-2]["count"] > 0
            assert lines[-1]["message"] == "after"
        finally:
            logger.removeHandler(handler)
            handler.close()


# --- the daemon, for real --------------------------------------------------------------------


def _through(meter_port: int, bundle: Path, project: str) -> int:
    proxy = f"http://{project}:x@127.0.0.1:{meter_port}"
    answer = requests.post(
        "https://api.openai.com/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": "Bearer sk-test"},
        proxies={"https": proxy},
        verify=str(bundle),
        timeout=20,
    )
    return answer.status_code


def _cli(home: Path, *args: str) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_HOME"] = str(home)
    done = subprocess.run(
        [METER, *args, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    return done.returncode, json.loads(done.stdout)


def test_a_full_disk_under_a_running_daemon(
    fake_upstream: FakeUpstream, tmp_path: Path, project: str
) -> None:
    with small_disk(tmp_path / "home", "8m") as home:
        meter = start_meter(home, fake_upstream)
        try:
            assert _through(meter.port, meter.bundle, project) == 200
            meter.wait_rows(project, 1)
            log = home / "logs" / "daemon.jsonl"
            log_size = log.stat().st_size if log.exists() else 0
            filler = fill(home)
            for _ in range(10):  # traffic keeps flowing
                assert _through(meter.port, meter.bundle, project) == 200
            api_port = json.loads((home / "daemon.json").read_text())["api_port"]
            base = f"http://127.0.0.1:{api_port}"

            def writer_state() -> dict[str, Any]:
                status = requests.get(f"{base}/v1/daemon/status", timeout=5).json()
                state: dict[str, Any] = status["ledger_writer"]
                return state

            wait_for(lambda: writer_state()["writable"] is False, 20, "the writer to fail")
            state = writer_state()
            assert state["pending_rows"] == 10 and state["rows_dropped"] == 0
            assert "full" in state["error"]
            _, status = _cli(home, "status")
            assert "cannot be written" in status["ledger_problem"]["why"]
            assert "10 calls held in memory" in status["ledger_problem"]["why"]
            assert status["ledger_problem"]["fix"].startswith("df -h ")
            code, doctor = _cli(home, "doctor")
            (check,) = [c for c in doctor["checks"] if c["check"] == "ledger_writes"]
            assert check["status"] == "broken" and "df -h" in check["fix"]
            assert code == 2
            assert (log.stat().st_size if log.exists() else 0) == log_size  # logs wait too
            filler.unlink()
            meter.wait_rows(project, 11, timeout=30)  # written once there is room
            assert writer_state()["writable"] is True
            _, status = _cli(home, "status")
            assert status["ledger_problem"] is None
        finally:
            meter.stop()
