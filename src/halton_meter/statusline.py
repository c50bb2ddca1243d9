"""`halton-meter statusline`: one short line of spend for an agent's status bar or a prompt.

Claude Code runs a status-line command after each message and hands it a JSON object on stdin
(`session_id`, `cwd`, `workspace.current_dir`, `cost.total_duration_ms`, …); the command's
first line of output is shown. So this must be quick and must never fail the agent's prompt:
launch.py routes here before click, the CLI table and config.toml are ever imported; the
ledger is opened read-only with no busy wait and a deadline on every query; any error at all
prints an empty line and exits 0.

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

import json
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halton_meter.attribution.folder import folder_project

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


def home() -> Path:
    """`paths.resolve_paths().home`, without importing paths.py (and with it runstate.py and
    dataclasses: tens of milliseconds). tests/test_statusline.py keeps the two in step."""
    override = os.environ.get("HALTON_METER_HOME")
    if override:
        return Path(override).expanduser().absolute()
    return Path.home() / ".halton-meter"


LEDGER_NAME = "db.sqlite"  # paths.Paths.ledger


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    try:
        if "-h" in argv or "--help" in argv:
            sys.stdout.write(USAGE)
            return 0
        if argv[:1] == ["--refresh-quota"]:
            refresh_quota(home(), home() / LEDGER_NAME)
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


def _stdin_json() -> dict[str, Any]:
    """Claude Code's JSON, when something is piped in (never waits on a terminal)."""
    stream = sys.stdin
    if stream is None or stream.isatty():
        return {}
    if os.name != "nt":
        import select

        ready, _, _ = select.select([stream], [], [], STDIN_WAIT_SECONDS)
        if not ready:
            return {}
    data = json.loads(stream.buffer.read(MAX_STDIN) or b"{}")
    return data if isinstance(data, dict) else {}


def _ancestors() -> list[int]:
    """This command's parent and a couple above it: Claude Code is one of them."""
    pids = [os.getppid()]
    for _ in range(ANCESTORS - 1):
        try:
            stat = Path(f"/proc/{pids[-1]}/stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if parent <= 1:
            break
        pids.append(parent)
    return pids


def _object(facts: dict[str, Any], key: str) -> dict[str, Any]:
    value = facts.get(key)
    return value if isinstance(value, dict) else {}


def _nano_usd(value: int) -> str:
    return f"${value / 1e9:,.2f}"


def render(fmt: str, deadline: float) -> str:
    facts = {} if fmt == "plain" else _stdin_json()
    workspace = _object(facts, "workspace")
    folder_text = workspace.get("current_dir") or facts.get("cwd") or os.getcwd()
    meter_home = home()
    ledger = meter_home / LEDGER_NAME
    if not ledger.exists():
        return ""
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=0.0)
    try:
        con.set_progress_handler(lambda: int(time.perf_counter() > deadline), 500)
        now = time.time()
        today = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        session = None
        if fmt != "plain" and facts.get("session_id"):
            session = _session(con, facts, now, today)
        project = (session or {}).get("project") or folder_project(
            Path(str(folder_text)), os.environ
        )
        spent, value, calls = con.execute(
            "SELECT COALESCE(SUM(cost_nanousd), 0), COALESCE(SUM(subscription_value_nanousd), 0),"
            " COALESCE(SUM(requests), 0) FROM daily_rollup WHERE day = ? AND project = ?",
            (today, project),
        ).fetchone()
    finally:
        con.close()
    quota = _cached_quota(meter_home, ledger, now)
    figures: dict[str, Any] = {
        "project": project,
        "day": today,
        "today": _money(int(spent), int(value), int(calls)),
        "session": session and _money(session["spent"], session["value"], session["calls"]),
        "quota": quota,
    }
    line = _line(figures)
    if fmt == "json":
        return json.dumps({**figures, "line": line}, separators=(",", ":"))
    return line


def _money(spent: int, value: int, calls: int) -> dict[str, Any]:
    return {
        "spent_usd": round(spent / 1e9, 9),
        "subscription_value_usd": round(value / 1e9, 9),
        "requests": calls,
        "_spent": spent,
        "_value": value,
    }


def _session(
    con: sqlite3.Connection, facts: dict[str, Any], now: float, today: str
) -> dict[str, Any] | None:
    """This Claude Code session's rows: made by one of our ancestors since it began."""
    cost = _object(facts, "cost")
    duration = cost.get("total_duration_ms")
    if isinstance(duration, (int, float)) and duration >= 0:
        since = datetime.fromtimestamp(now - duration / 1000 - 2, UTC)
        since_text = since.strftime("%Y-%m-%dT%H:%M:%S.000Z")
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


def _line(figures: dict[str, Any]) -> str:
    parts = [f"{figures['project']} today {_amount(figures['today'])}"]
    if figures["session"]:
        parts.append(f"session {_amount(figures['session'])}")
    quota = figures["quota"]
    if quota:
        window = str(quota["window"]).removeprefix("unified-")
        parts.append(f"{window} {round(float(quota['utilisation']) * 100)}%")
    return " · ".join(parts)


# --- the quota cache --------------------------------------------------------------------------


def _cached_quota(home: Path, ledger: Path, now: float) -> dict[str, Any] | None:
    """The fullest window from the cache; a stale or missing cache starts a refresh (in the
    background) and this line goes on with what the cache holds."""
    cache = home / QUOTA_CACHE
    try:
        age = now - cache.stat().st_mtime
        data = json.loads(cache.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        age, data = float("inf"), {}
    if age > QUOTA_REFRESH_SECONDS:
        _start_refresh(cache)
    quota = data.get("quota") if isinstance(data, dict) else None
    return quota if isinstance(quota, dict) else None


def _start_refresh(cache: Path) -> None:
    try:
        if cache.exists():
            os.utime(cache)  # the next lines see it fresh: one refresh at a time
        else:
            cache.write_text("{}", encoding="utf-8")
    except OSError:
        return
    import subprocess

    flags = 0x00000008 if os.name == "nt" else 0  # DETACHED_PROCESS
    subprocess.Popen(
        [sys.executable, "-m", "halton_meter.statusline", "--refresh-quota"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=os.name != "nt",
        creationflags=flags,
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


def refresh_quota(home: Path, ledger: Path) -> None:
    """Write the cache (atomically): the fullest window now."""
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=2.0)
    try:
        quota = fullest_window(con)
    finally:
        con.close()
    cache = home / QUOTA_CACHE
    temporary = cache.with_name(f"{QUOTA_CACHE}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"quota": quota}), encoding="utf-8")
    os.replace(temporary, cache)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
