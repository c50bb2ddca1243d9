"""`halton-meter statusline`: one short line of spend for an agent's status bar or a prompt.

Claude Code runs a status-line command after each message and hands it a JSON object on stdin
(`session_id`, `cwd`, `workspace.current_dir`, `cost.total_duration_ms`, …); the command's
first line of output is shown. So this must be quick and must never fail the agent's prompt:
launch.py routes here before click, the CLI table and config.toml are ever imported; the
ledger is opened read-only with no busy wait and a deadline on every query; any error at all
prints an empty line and exits 0.

The process has 50 ms in all, most of it the interpreter starting (bench/statusline.py), so
this module imports only os, sys, time and sqlite3 for the usual line: no pathlib, json, re,
datetime or typing. Claude Code's JSON and the quota cache are read with SQLite's own JSON
functions on the ledger connection; `json` is imported for `--format json` only.

What the line says, read from the ledger:
- the project's money spent today (UTC day, the daily rollup), with the API-equivalent value
  of subscription calls beside it when there are any;
- this session's spend: rows made by the Claude Code process that runs this command (its pid
  is in each row's attribution) since the session began (now minus `total_duration_ms`);
- the fullest quota window (ledger/quota.py). Reading it costs more than the whole budget, so
  it comes from a small cache file the line refreshes in a detached child every
  `QUOTA_REFRESH_SECONDS`.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

from halton_meter.attribution.folder import folder_project

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

FORMATS = ("claude", "plain", "json")
QUOTA_CACHE = "statusline-quota.json"
QUOTA_REFRESH_SECONDS = 30.0
# Queries stop (and the line is empty) past this many seconds after the command started.
QUERY_BUDGET_SECONDS = 0.035
STDIN_WAIT_SECONDS = 0.02
MAX_STDIN = 1 << 20
ANCESTORS = 3  # the command runs under Claude Code, perhaps through a shell or two
USAGE = (
    "usage: halton-meter statusline [--format claude|plain|json]\n"
    "Print one line of spend for Claude Code's status line (JSON on stdin), a shell prompt\n"
    "(--format plain, the current folder) or another tool (--format json). See docs/cli.md.\n"
)
# What the line takes from Claude Code's JSON, as SQLite JSON paths.
FACTS = {
    "session_id": "$.session_id",
    "current_dir": "$.workspace.current_dir",
    "cwd": "$.cwd",
    "duration_ms": "$.cost.total_duration_ms",
}


def home() -> str:
    """`paths.resolve_paths().home`, without importing paths.py (and with it pathlib,
    runstate.py and dataclasses: tens of milliseconds). tests/test_statusline.py keeps the two
    in step."""
    override = os.environ.get("HALTON_METER_HOME")
    if override:
        return os.path.abspath(os.path.expanduser(override))
    return os.path.join(os.path.expanduser("~"), ".halton-meter")


LEDGER_NAME = "db.sqlite"  # paths.Paths.ledger


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    try:
        if "-h" in argv or "--help" in argv:
            sys.stdout.write(USAGE)
            return 0
        if argv[:1] == ["--refresh-quota"]:
            refresh_quota(home(), os.path.join(home(), LEDGER_NAME))
            return 0
        output = render(_format(argv), started + QUERY_BUDGET_SECONDS)
    except BaseException:  # the agent's prompt must never see a failure
        output = ""
    try:
        sys.stdout.write(output + "\n")
        sys.stdout.flush()
    except OSError:
        pass
    return 0


def _format(argv: list[str]) -> str:
    value = "claude"
    for index, argument in enumerate(argv):
        if argument.startswith("--format="):
            value = argument.split("=", 1)[1]
        elif argument == "--format" and index + 1 < len(argv):
            value = argv[index + 1]
    if value not in FORMATS:
        raise ValueError(value)
    return value


def _stdin_text() -> str:
    """Claude Code's JSON, when something is piped in (never waits on a terminal)."""
    stream = sys.stdin
    if stream is None or stream.isatty():
        return ""
    if os.name != "nt":
        import select

        ready, _, _ = select.select([stream], [], [], STDIN_WAIT_SECONDS)
        if not ready:
            return ""
    return stream.buffer.read(MAX_STDIN).decode("utf-8")


def _facts(con: sqlite3.Connection, text: str) -> dict[str, Any]:
    """The fields the line uses from Claude Code's JSON, read by SQLite (json_extract): the
    `json` module's import (and `re`'s under it) would cost more than the query. Malformed
    JSON raises, so the line is empty, as before."""
    if not text.strip():
        return {}
    columns = ", ".join(f"json_extract(:text, '{path}')" for path in FACTS.values())
    row = con.execute(f"SELECT json_type(:text), {columns}", {"text": text}).fetchone()
    if row[0] != "object":
        return {}
    return dict(zip(FACTS, row[1:], strict=True))


def _ancestors() -> list[int]:
    """This command's parent and a couple above it: Claude Code is one of them."""
    pids = [os.getppid()]
    for _ in range(ANCESTORS - 1):
        try:
            with open(f"/proc/{pids[-1]}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if parent <= 1:
            break
        pids.append(parent)
    return pids


def _nano_usd(value: int) -> str:
    return f"${value / 1e9:,.2f}"


def _utc(seconds: float, pattern: str) -> str:
    return time.strftime(pattern, time.gmtime(seconds))


def render(fmt: str, deadline: float) -> str:
    stdin = "" if fmt == "plain" else _stdin_text()
    meter_home = home()
    ledger = os.path.join(meter_home, LEDGER_NAME)
    if not os.path.exists(ledger):
        return ""
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=0.0)
    try:
        con.set_progress_handler(lambda: int(time.perf_counter() > deadline), 500)
        facts = _facts(con, stdin)
        folder = facts.get("current_dir") or facts.get("cwd") or os.getcwd()
        now = time.time()
        today = _utc(now, "%Y-%m-%d")
        session = None
        if facts.get("session_id"):
            session = _session(con, facts.get("duration_ms"), now, today)
        project = (session or {}).get("project") or folder_project(str(folder), os.environ)
        spent, value, calls = con.execute(
            "SELECT COALESCE(SUM(cost_nanousd), 0), COALESCE(SUM(subscription_value_nanousd), 0),"
            " COALESCE(SUM(requests), 0) FROM daily_rollup WHERE day = ? AND project = ?",
            (today, project),
        ).fetchone()
        quota_text, window, utilisation = _cached_quota(con, meter_home, now)
    finally:
        con.close()
    figures: dict[str, Any] = {
        "project": project,
        "day": today,
        "today": _money(int(spent), int(value), int(calls)),
        "session": session and _money(session["spent"], session["value"], session["calls"]),
    }
    line = _line(figures, window, utilisation)
    if fmt != "json":
        return line
    import json  # only here: with `re` under it, it costs more than the rest of the line

    figures["quota"] = json.loads(quota_text) if quota_text else None
    return json.dumps({**figures, "line": line}, separators=(",", ":"))


def _money(spent: int, value: int, calls: int) -> dict[str, Any]:
    return {
        "spent_usd": round(spent / 1e9, 9),
        "subscription_value_usd": round(value / 1e9, 9),
        "requests": calls,
        "_spent": spent,
        "_value": value,
    }


def _session(
    con: sqlite3.Connection, duration: object, now: float, today: str
) -> dict[str, Any] | None:
    """This Claude Code session's rows: made by one of our ancestors since it began."""
    if isinstance(duration, (int, float)) and duration >= 0:
        since_text = _utc(now - duration / 1000 - 2, "%Y-%m-%dT%H:%M:%S.000Z")
    else:
        since_text = today + "T00:00:00.000Z"
    pids = _ancestors()
    marks = ", ".join("?" for _ in pids)
    found = con.execute(
        "SELECT project, "
        "SUM(CASE WHEN billing = 'subscription' THEN 0 ELSE COALESCE(cost_nanousd, 0) END), "
        "SUM(CASE WHEN billing = 'subscription' THEN COALESCE(cost_nanousd, 0) ELSE 0 END), "
        "COUNT(*) FROM requests WHERE requested_at >= ? "
        "AND CASE WHEN json_valid(attribution_detail) THEN "
        f"json_extract(attribution_detail, '$.pid') END IN ({marks}) "
        "GROUP BY project ORDER BY MAX(requested_at) DESC",
        (since_text, *pids),
    ).fetchall()
    if not found:
        return None
    return {
        "project": found[0][0],
        "spent": sum(int(row[1]) for row in found),
        "value": sum(int(row[2]) for row in found),
        "calls": sum(int(row[3]) for row in found),
    }


def _amount(money: dict[str, Any]) -> str:
    text = _nano_usd(money.pop("_spent"))
    value = money.pop("_value")
    if value:
        text += f" (+{_nano_usd(value)} plan)"
    return text


def _line(figures: dict[str, Any], window: object, utilisation: object) -> str:
    parts = [f"{figures['project']} today {_amount(figures['today'])}"]
    if figures["session"]:
        parts.append(f"session {_amount(figures['session'])}")
    if window is not None and isinstance(utilisation, (int, float)):
        parts.append(f"{str(window).removeprefix('unified-')} {round(float(utilisation) * 100)}%")
    return " · ".join(parts)


# --- the quota cache --------------------------------------------------------------------------


def _cached_quota(
    con: sqlite3.Connection, home: str, now: float
) -> tuple[str | None, object, object]:
    """The fullest window from the cache: its JSON text, its name and how full it is (read by
    SQLite, like Claude Code's JSON). A stale or missing cache starts a refresh (in the
    background) and this line goes on with what the cache holds."""
    cache = os.path.join(home, QUOTA_CACHE)
    try:
        age = now - os.stat(cache).st_mtime
        with open(cache, encoding="utf-8") as handle:
            text = handle.read(MAX_STDIN)
    except (OSError, ValueError):
        age, text = float("inf"), ""
    if age > QUOTA_REFRESH_SECONDS:
        _start_refresh(cache)
    if not text.strip():
        return None, None, None
    quota, window, utilisation = con.execute(
        "SELECT json_extract(:t, '$.quota'), json_extract(:t, '$.quota.window'), "
        "json_extract(:t, '$.quota.utilisation') "
        "WHERE json_valid(:t) AND json_type(:t, '$.quota') = 'object'",
        {"t": text},
    ).fetchone() or (None, None, None)
    return quota, window, utilisation


def _start_refresh(cache: str) -> None:
    try:
        if os.path.exists(cache):
            os.utime(cache)  # the next lines see it fresh: one refresh at a time
        else:
            with open(cache, "w", encoding="utf-8") as handle:
                handle.write("{}")
    except OSError:
        return
    command = [sys.executable, "-m", "halton_meter.statusline", "--refresh-quota"]
    if hasattr(os, "posix_spawn"):
        # Not subprocess: its import (with locale, re, threading) costs this line ~10 ms.
        null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
        os.posix_spawn(sys.executable, command, os.environ, file_actions=null, setsid=True)
        return
    import subprocess

    subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        creationflags=0x00000008,  # DETACHED_PROCESS (Windows)
    )


def fullest_window(con: sqlite3.Connection) -> dict[str, Any] | None:
    """The current (not expired) quota window nearest to full, over every account."""
    from halton_meter.ledger.quota import quota_view

    best: dict[str, Any] | None = None
    for account in quota_view(con):
        for window in account.windows:
            if window.expired:
                continue
            if best is None or window.utilisation > best["utilisation"]:
                best = {
                    "provider": account.provider,
                    "account": account.account,
                    "window": window.name,
                    "utilisation": window.utilisation,
                    "resets_at": window.resets_at,
                }
    return best


def refresh_quota(home: str | Path, ledger: str | Path) -> None:
    """Write the cache (atomically): the fullest window now. A detached child of the line:
    it may take its time and import what it needs."""
    import json

    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=2.0)
    try:
        quota = fullest_window(con)
    finally:
        con.close()
    cache = os.path.join(home, QUOTA_CACHE)
    temporary = f"{cache}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"quota": quota}))
    os.replace(temporary, cache)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
