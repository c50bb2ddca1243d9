"""`halton-meter statusline`: Claude Code's documented stdin JSON in, one line of spend out,
fast, and an empty line (exit 0) whenever anything is wrong."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from halton_meter.ledger.db import connect
from halton_meter.ledger.row import INSERT_QUOTA_SQL, INSERT_SQL, new_request_id, utc_iso_ms
from halton_meter.providers import ratelimits
from tests.test_ledger import sample_row

METER = str(Path(sys.executable).with_name("halton-meter"))

# Claude Code's status-line input as its docs show it (code.claude.com/docs/en/statusline).
CLAUDE_INPUT = {
    "hook_event_name": "Status",
    "session_id": "abc123-session",
    "transcript_path": "/home/user/.claude/projects/acme/abc123.jsonl",
    "cwd": "/home/user/acme",
    "model": {"id": "claude-sonnet-4-5-20250929", "display_name": "Sonnet 4.5"},
    "workspace": {"current_dir": "/home/user/acme", "project_dir": "/home/user/acme"},
    "version": "2.0.14",
    "output_style": {"name": "default"},
    "cost": {
        "total_cost_usd": 0.01234,
        "total_duration_ms": 600000,  # the session began ten minutes ago
        "total_api_duration_ms": 2300,
        "total_lines_added": 156,
        "total_lines_removed": 23,
    },
    "exceeds_200k_tokens": False,
}

# Sonnet 4.5's published prices (USD per million tokens): input 3, output 15.
SONNET_INPUT, SONNET_OUTPUT = 3, 15


def _nano(input_tokens: int, output_tokens: int) -> int:
    return (input_tokens * SONNET_INPUT + output_tokens * SONNET_OUTPUT) * 1000  # per token: /1e6


def _statusline(
    home: Path, *args: str, stdin: str | None = None, cwd: Path | None = None
) -> tuple[str, float]:
    env = {**os.environ, "HALTON_METER_HOME": str(home)}
    env.pop("HALTON_PROJECT", None)
    started = time.perf_counter()
    done = subprocess.run(
        [METER, "statusline", *args],
        input=(stdin or "").encode(),
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=30,
        check=False,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"", done.stderr
    return done.stdout.decode(), elapsed


def _ledger(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    con = connect(home / "db.sqlite")
    now = time.time()
    me = json.dumps({"pid": os.getpid(), "process": "claude", "cwd": "/home/user/acme"})
    other = json.dumps({"pid": 1, "process": "python3", "cwd": "/home/user/acme"})
    rows = [
        # This session (our pid plays Claude Code's): 1,000 in + 200 out, and 2,000 in + 100 out.
        sample_row(project="acme", input_tokens=1000, output_tokens=200,
                   cost_nanousd=_nano(1000, 200), attribution_detail=me, billing="api"),
        sample_row(project="acme", input_tokens=2000, output_tokens=100,
                   cost_nanousd=_nano(2000, 100), attribution_detail=me, billing="api"),
        # Another process in the same project today: counts for the project, not the session.
        sample_row(project="acme", input_tokens=10000, output_tokens=1000,
                   cost_nanousd=_nano(10000, 1000), attribution_detail=other, billing="api"),
        # Our pid, but before the session began (an hour ago): not this session.
        sample_row(project="acme", requested_at=utc_iso_ms(now - 3600), input_tokens=5,
                   output_tokens=5, cost_nanousd=_nano(5, 5), attribution_detail=other),
        # Another project: neither.
        sample_row(project="elsewhere", input_tokens=99999, output_tokens=9999,
                   cost_nanousd=_nano(99999, 9999), attribution_detail=other, billing="api"),
    ]  # fmt: skip
    rows = [replace(row, id=new_request_id()) for row in rows]
    # The hour-old row must not cross midnight UTC out of "today" for the test to be exact.
    if rows[3].requested_at[:10] != rows[0].requested_at[:10]:
        rows[3] = replace(rows[3], requested_at=rows[0].requested_at[:10] + "T00:00:00.001Z")
    quota = replace(
        rows[0],
        quota_account="acct-1",
        quota_headers=ratelimits.dumps(
            {
                "anthropic-ratelimit-": {
                    "unified-5h-utilization": "0.62",
                    "unified-5h-reset": str(int(now) + 3600),
                    "unified-7d-utilization": "0.31",
                    "unified-7d-reset": str(int(now) + 86400),
                }
            }
        ),
    )
    with con:
        con.executemany(INSERT_SQL, [row.values() for row in rows])
        values = (quota.id, quota.requested_at, "anthropic", "acct-1", quota.quota_headers)
        con.execute(INSERT_QUOTA_SQL, values)
    con.close()


def test_claude_code_input_prints_today_session_and_fullest_window(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _ledger(home)
    # The quota figure comes from a cache; fill it the way the line's background child does.
    subprocess.run(
        [sys.executable, "-m", "halton_meter.statusline", "--refresh-quota"],
        env={**os.environ, "HALTON_METER_HOME": str(home)},
        check=True,
    )
    out, elapsed = _statusline(home, stdin=json.dumps(CLAUDE_INPUT))
    print(f"statusline took {elapsed * 1000:.1f} ms")
    # Today for acme: 13,000 in + 1,300 out + the hour-old 5 + 5 (all API-billed):
    # 13,005 x $3/M + 1,305 x $15/M = $0.039015 + $0.019575 = $0.05859 → $0.06.
    # The session: 3,000 in + 300 out = $0.009 + $0.0045 = $0.0135 → $0.01.
    assert out == "acme today $0.06 · session $0.01 · 5h 62%\n"

    data = json.loads(_statusline(home, "--format", "json", stdin=json.dumps(CLAUDE_INPUT))[0])
    assert data["project"] == "acme"
    assert data["today"] == {"spent_usd": 0.05859, "subscription_value_usd": 0.0, "requests": 4}
    assert data["session"] == {"spent_usd": 0.0135, "subscription_value_usd": 0.0, "requests": 2}
    assert data["quota"]["window"] == "unified-5h" and data["quota"]["utilisation"] == 0.62


def test_plain_format_for_shell_prompts_uses_the_current_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _ledger(home)
    folder = tmp_path / "work" / "acme"
    folder.mkdir(parents=True)
    out, _ = _statusline(home, "--format", "plain", cwd=folder)
    assert out.startswith("acme today $0.06")  # no session outside an agent
    assert "session" not in out


def _wait_for_refreshes(home: Path, timeout: float = 30.0) -> None:
    """Until no detached quota-cache refresh (`statusline --refresh-quota`) for `home` runs."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    def running() -> bool:
        for process in psutil.process_iter(["cmdline"]):
            if "--refresh-quota" not in (process.info["cmdline"] or []):
                continue
            try:
                if process.environ().get("HALTON_METER_HOME") == str(home):
                    return True
            except psutil.Error:
                continue
        return False

    deadline = time.monotonic() + timeout
    while running():
        assert time.monotonic() < deadline, "a quota-cache refresh did not end"
        time.sleep(0.05)


def test_missing_or_locked_ledger_prints_an_empty_line(tmp_path: Path) -> None:
    # Correctness only: how fast the line is, is bench/statusline.py's to measure (p50/p95
    # against 50 ms beside the interpreter's own start-up), not a timing assert under load.
    home = tmp_path / "home"
    home.mkdir()
    out, elapsed = _statusline(home, stdin=json.dumps(CLAUDE_INPUT))
    print(f"missing ledger: {elapsed * 1000:.1f} ms")
    assert out == "\n"

    _ledger(home)
    holder = sqlite3.connect(home / "db.sqlite", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        out, elapsed = _statusline(home, stdin=json.dumps(CLAUDE_INPUT))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    print(f"locked ledger: {elapsed * 1000:.1f} ms")
    assert out == "\n"

    out, _ = _statusline(home, stdin="{not json")
    assert out == "\n"
    folder = tmp_path / "acme"
    folder.mkdir()
    out, _ = _statusline(home, stdin="[1, 2]", cwd=folder)  # JSON, not Claude Code's object
    assert out == "acme today $0.06\n"  # the current folder's project, no session
    out, _ = _statusline(home, "--format", "nonsense")
    assert out == "\n"
    _wait_for_refreshes(home)  # an earlier line's detached refresh would overwrite the cache
    (home / "statusline-quota.json").write_text("{broken", encoding="utf-8")
    out, _ = _statusline(home, stdin=json.dumps(CLAUDE_INPUT))
    assert out == "acme today $0.06 · session $0.01\n"  # a broken cache only loses the quota


# What the line's process must not load: each costs milliseconds of its 50 (bench/statusline.py).
# (`datetime` is not here: sqlite3 itself imports it.)
HEAVY_MODULES = (
    "click", "rich", "mitmproxy", "fastapi", "uvicorn", "genai_prices", "halton_meter.pricing",
    "halton_meter.cli", "halton_meter.config", "halton_meter.paths", "tomlkit", "psutil",
    "json", "re", "pathlib", "typing", "dataclasses", "threading", "opentelemetry",
    # The quota cache's refresh is started with os.posix_spawn where there is one.
    *(("subprocess", "locale") if hasattr(os, "posix_spawn") else ()),
)  # fmt: skip

PROBE = """
import sys
before = set(sys.modules)
sys.argv = ["halton-meter", "statusline", *sys.argv[1:]]
from halton_meter import launch
try:
    launch.main()
except SystemExit:
    pass
sys.stderr.write("\\n".join(sorted(set(sys.modules) - before)))
"""


def test_the_line_loads_no_heavy_module(tmp_path: Path) -> None:
    """The console script's statusline path, run as Claude Code runs it, with every part of
    the line exercised (stdin JSON, session, quota cache): the modules it loaded."""
    home = tmp_path / "home"
    _ledger(home)
    quota = {"quota": {"provider": "anthropic", "account": "acct-1", "window": "unified-5h",
                       "utilisation": 0.62, "resets_at": None}}  # fmt: skip
    (home / "statusline-quota.json").write_text(json.dumps(quota), encoding="utf-8")
    env = {**os.environ, "HALTON_METER_HOME": str(home)}
    env.pop("HALTON_PROJECT", None)
    folder = tmp_path / "acme"
    folder.mkdir()
    cache = home / "statusline-quota.json"
    for args in ([], ["--format", "plain"], ["stale cache"]):
        if args == ["stale cache"]:  # the line starts the cache's refresh in the background
            args = []
            cache.write_text(json.dumps({"quota": {**quota["quota"], "utilisation": 0.5}}))
            os.utime(cache, (time.time() - 3600, time.time() - 3600))
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            input=json.dumps(CLAUDE_INPUT).encode(),
            capture_output=True,
            env=env,
            cwd=folder,
            timeout=30,
            check=True,
        )
        loaded = set(done.stderr.decode().split())
        assert done.stdout.decode().startswith("acme today $0.06 · ")
        assert "sqlite3" in loaded and "halton_meter.statusline" in loaded  # the probe works
        heavy = sorted(name for name in loaded if name.split(".")[0] in HEAVY_MODULES
                       or name in HEAVY_MODULES)  # fmt: skip
        assert heavy == [], heavy
    # The refresh the last line started wrote the fullest window from the ledger again (62 %).
    deadline = time.monotonic() + 30
    while "0.62" not in cache.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert json.loads(cache.read_text())["quota"]["utilisation"] == 0.62


def test_init_apps_offers_the_status_line_and_uninstall_takes_it_back(tmp_path: Path) -> None:
    from halton_meter.lifecycle import agent_statusline, install
    from halton_meter.paths import Paths

    user = tmp_path / "user"
    (user / ".claude").mkdir(parents=True)
    settings = user / ".claude" / "settings.json"
    settings.write_text(json.dumps({"model": "opus", "theme": "dark"}))
    paths = Paths(home=tmp_path / "home", home_overridden=True)
    paths.home.mkdir()
    undo = install._Undo()
    asked: list[str] = []

    # Not on a terminal: nothing is written.
    outcome, _ = install._offer_statusline(paths, user, None, undo.write)
    assert outcome == "skipped" and "statusLine" not in settings.read_text()
    # Declined: nothing is written.
    outcome, _ = install._offer_statusline(
        paths, user, lambda q: asked.append(q) or False, undo.write
    )
    assert outcome == "skipped" and "statusLine" not in settings.read_text()
    # Yes: our entry is added, the rest of the file kept.
    outcome, detail = install._offer_statusline(paths, user, lambda q: True, undo.write)
    assert outcome == "changed", detail
    data = json.loads(settings.read_text())
    assert data["model"] == "opus" and data["theme"] == "dark"
    assert data["statusLine"]["type"] == "command"
    assert data["statusLine"]["command"].endswith(" statusline")
    # Asked again: already there, no question.
    assert install._offer_statusline(paths, user, None, undo.write)[0] == "ok"

    # uninstall's part: our key goes, the user's settings stay.
    assert agent_statusline.remove(paths.home) == f"{settings} (statusLine)"
    assert json.loads(settings.read_text()) == {"model": "opus", "theme": "dark"}
    assert not (paths.home / agent_statusline.STATE_FILE).exists()


def test_someone_elses_status_line_is_never_replaced(tmp_path: Path) -> None:
    from halton_meter.lifecycle import install
    from halton_meter.paths import Paths

    user = tmp_path / "user"
    (user / ".claude").mkdir(parents=True)
    settings = user / ".claude" / "settings.json"
    mine = {"statusLine": {"type": "command", "command": "~/.claude/mine.sh"}}
    settings.write_text(json.dumps(mine))
    paths = Paths(home=tmp_path / "home", home_overridden=True)
    paths.home.mkdir()
    outcome, detail = install._offer_statusline(paths, user, lambda q: True, install._Undo().write)
    assert outcome == "ok" and "left alone" in detail
    assert json.loads(settings.read_text()) == mine


def test_a_settings_file_init_created_is_removed_by_uninstall(tmp_path: Path) -> None:
    from halton_meter.lifecycle import agent_statusline, install
    from halton_meter.paths import Paths

    user = tmp_path / "user"
    (user / ".claude").mkdir(parents=True)
    paths = Paths(home=tmp_path / "home", home_overridden=True)
    paths.home.mkdir()
    outcome, _ = install._offer_statusline(paths, user, lambda q: True, install._Undo().write)
    assert outcome == "changed"
    assert agent_statusline.remove(paths.home) is not None
    assert not (user / ".claude" / "settings.json").exists()


def test_the_status_lines_home_is_the_meters(tmp_path: Path, monkeypatch: Any) -> None:
    from halton_meter import statusline
    from halton_meter.paths import resolve_paths

    monkeypatch.setenv("HALTON_METER_HOME", str(tmp_path / "h"))
    assert Path(statusline.home()) == resolve_paths().home
    assert Path(statusline.home()) / statusline.LEDGER_NAME == resolve_paths().ledger
    monkeypatch.delenv("HALTON_METER_HOME")
    assert Path(statusline.home()) == resolve_paths().home
