"""API and report benchmark on a generated 1,000,000-row ledger (targets: <= 300 ms each).

    .venv/bin/python bench/api.py [--rows 1000000] [--days 365] [--runs 20]
                                  [--out bench/results/api.json]

Generates a ledger of `--rows` calls spread evenly over the last `--days` days (12 projects,
4 providers, 11 models, 3% errors, 2% unpriced) through the real schema, so the daily rollup
is filled by its triggers as the daemon's writer would fill it. Then starts the real daemon on
it and times, over HTTP from this process:

- `GET /v1/stats?since=<date 30 days ago>` (what the dashboard asks) and `?since=30d` (a
  timestamp: the partial first day is summed from the rows), `/v1/projects`, a project's
  stats and its first page of requests;
- `halton-meter report --since 30d` as users run it (a new process each time, wall clock), and
  the same report's query alone, in process.

Also reports what the rollup triggers cost the writer per row (inserts with and without them).
Prints p50/p95/max per figure against its target and writes JSON. Asserts nothing.
Run it twice with `--days 30` to see the worst case: every row inside the 30-day window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from halton_meter.ledger.db import connect
from halton_meter.ledger.queries import Window, build_report
from halton_meter.ledger.row import INSERT_SQL, ROW_COLUMNS, utc_iso_ms
from halton_meter.timewindow import ledger_timestamp, parse_moment

ROOT = Path(__file__).resolve().parent.parent
METER = str(Path(sys.executable).parent / "halton-meter")
TARGET_MS = 300.0
GEMINI_HOST = "generativelanguage.googleapis.com"
MODELS = [
    ("anthropic", "messages", "api.anthropic.com", "claude-sonnet-4-5-20250929", 3, 15),
    ("anthropic", "messages", "api.anthropic.com", "claude-haiku-4-5-20251001", 1, 5),
    ("anthropic", "messages", "api.anthropic.com", "claude-opus-4-1-20250805", 15, 75),
    ("openai", "chat", "api.openai.com", "gpt-4.1-2025-04-14", 2, 8),
    ("openai", "responses", "api.openai.com", "gpt-5-2025-08-07", 1.25, 10),
    ("openai", "chat", "api.openai.com", "gpt-4.1-mini-2025-04-14", 0.4, 1.6),
    ("google", "generate_content", GEMINI_HOST, "gemini-2.5-pro", 1.25, 10),
    ("google", "generate_content", GEMINI_HOST, "gemini-2.5-flash", 0.3, 2.5),
    ("deepseek", "chat", "api.deepseek.com", "deepseek-chat", 0.28, 0.42),
    ("deepseek", "chat", "api.deepseek.com", "deepseek-reasoner", 0.28, 0.42),
    ("openai", "chat", "api.openai.com", "ft:gpt-4.1:acme:unpriced", None, None),
]
PROJECTS = [f"client-{n:02d}" for n in range(11)] + ["misc"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_rows(count: int, days: int, seed: int = 7) -> list[tuple[Any, ...]]:
    """Row tuples in ROW_COLUMNS order, evenly spread over [now - days, now)."""
    rng = random.Random(seed)
    now = time.time()
    span = days * 86400.0
    rows = []
    index = {name: i for i, name in enumerate(ROW_COLUMNS)}
    for n in range(count):
        started = now - span + span * n / count
        provider, api, host, model, price_in, price_out = MODELS[rng.randrange(len(MODELS))]
        tokens_in = rng.randrange(200, 20_000)
        cached = rng.randrange(0, 40_000)
        tokens_out = rng.randrange(20, 3000)
        errored = rng.random() < 0.03
        cost = None
        if price_in is not None and not errored:
            cost = int(tokens_in * price_in * 1000 + tokens_out * price_out * 1000 + cached * 100)
        row: list[Any] = [None] * len(ROW_COLUMNS)
        ms = int(started * 1000)
        values = {
            "id": f"{ms:012x}{rng.getrandbits(48):012x}",
            "requested_at": utc_iso_ms(started),
            "provider": provider,
            "api": api,
            "host": host,
            "model": model,
            "model_requested": model,
            "stream": 1,
            "input_tokens": tokens_in,
            "cache_read_tokens": cached,
            "cache_write_tokens": rng.randrange(0, 2000),
            "output_tokens": tokens_out,
            "reasoning_tokens": rng.randrange(0, tokens_out),
            "http_status": 500 if errored else 200,
            "status": "error" if errored else "ok",
            "error_class": "server" if errored else None,
            "latency_ms": rng.lognormvariate(7, 0.8),
            "ttft_ms": rng.lognormvariate(6, 0.5),
            "tokens_complete": 1,
            "project": PROJECTS[rng.randrange(len(PROJECTS))],
            "cost_nanousd": cost,
            "price_source": "catalogue" if cost is not None else None,
        }
        for name, value in values.items():
            row[index[name]] = value
        rows.append(tuple(row))
    return rows


def write_ledger(path: Path, rows: list[tuple[Any, ...]]) -> float:
    """Insert through the real schema (triggers on), in writer-sized transactions."""
    con = connect(path)
    started = time.perf_counter()
    for start in range(0, len(rows), 5000):
        con.execute("BEGIN IMMEDIATE")
        con.executemany(INSERT_SQL, rows[start : start + 5000])
        con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("ANALYZE")
    con.close()
    return elapsed


def trigger_cost(rows: list[tuple[Any, ...]], work: Path) -> dict[str, float]:
    """µs per row that the rollup triggers add to the writer (500-row batches, as it commits)."""
    sample = rows[:50_000]
    result = {}
    for name, drop in (("with_rollup", False), ("without_rollup", True)):
        path = work / f"trigger-{name}.sqlite"
        con = connect(path)
        if drop:
            for trigger in ("insert", "update", "delete"):
                con.execute(f"DROP TRIGGER daily_rollup_{trigger}")
        started = time.perf_counter()
        for start in range(0, len(sample), 500):
            con.execute("BEGIN IMMEDIATE")
            con.executemany(INSERT_SQL, sample[start : start + 500])
            con.execute("COMMIT")
        result[f"us_per_row_{name}"] = (time.perf_counter() - started) / len(sample) * 1e6
        con.close()
    return result


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[max(0, -(-95 * len(ordered) // 100) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
        "runs": len(ordered),
    }


def time_get(url: str, runs: int) -> dict[str, float]:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url, timeout=60) as answer:  # warm-up (page cache, statement cache)
        answer.read()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        with direct.open(url, timeout=60) as answer:
            answer.read()
        samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="halton-bench-api-"))
    home = work / "home"
    home.mkdir()
    print(f"generating {args.rows:,} rows over {args.days} days in {home} …", flush=True)
    rows = make_rows(args.rows, args.days)
    insert_seconds = write_ledger(home / "db.sqlite", rows)
    triggers = trigger_cost(rows, work)
    in_window = sum(
        1 for row in rows if row[1] >= ledger_timestamp(datetime.now(UTC) - timedelta(days=30))
    )
    del rows
    print(f"  written in {insert_seconds:.1f} s; {in_window:,} rows in the last 30 days")

    ports = {name: free_port() for name in ("proxy_port", "internal_port", "api_port")}
    (home / "config.toml").write_text(
        "[daemon]\n" + "".join(f"{key} = {value}\n" for key, value in ports.items())
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_HOME"] = str(home)
    log = (work / "daemon.log").open("wb")
    daemon = subprocess.Popen([METER, "daemon"], env=env, stdout=log, stderr=subprocess.STDOUT)
    results: dict[str, Any] = {}
    try:
        base = f"http://127.0.0.1:{ports['api_port']}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    base + "/health", timeout=1
                ).read()
                break
            except OSError:
                time.sleep(0.1)
        month_ago = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
        endpoints = {
            "GET /v1/stats?since=<date 30 days ago>": f"/v1/stats?since={month_ago}",
            "GET /v1/stats?since=30d": "/v1/stats?since=30d",
            "GET /v1/projects": "/v1/projects",
            "GET /v1/projects/client-03/stats?since=<date 30 days ago>": (
                f"/v1/projects/client-03/stats?since={month_ago}"
            ),
            "GET /v1/projects/client-03/requests?limit=50": (
                "/v1/projects/client-03/requests?limit=50"
            ),
        }
        for name, path in endpoints.items():
            results[name] = time_get(base + path, args.runs)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()

    report_runs = max(5, args.runs // 2)
    samples = []
    for _ in range(report_runs):
        started = time.perf_counter()
        done = subprocess.run(
            [METER, "report", "--since", "30d"], env=env, capture_output=True, timeout=120
        )
        samples.append((time.perf_counter() - started) * 1000)
        if done.returncode != 0:
            raise SystemExit(done.stderr.decode())
    results["halton-meter report --since 30d (process, wall)"] = summary(samples)
    version = subprocess.run([METER, "--version"], env=env, capture_output=True, timeout=60)
    samples = []
    for _ in range(report_runs):
        started = time.perf_counter()
        subprocess.run([METER, "--version"], env=env, capture_output=True, timeout=60)
        samples.append((time.perf_counter() - started) * 1000)
    results["halton-meter --version (process start alone, for scale)"] = summary(samples)
    con = sqlite3.connect(home / "db.sqlite")
    samples = []
    for grouped in ([], ["project", "model"]):
        samples = []
        for _ in range(report_runs):
            started = time.perf_counter()
            since = ledger_timestamp(parse_moment("30d"))
            build_report(con, Window(since=since), grouped)
            samples.append((time.perf_counter() - started) * 1000)
        label = " --by project --by model" if grouped else ""
        results[f"report --since 30d{label} (query in process)"] = summary(samples)
    con.close()

    width = max(len(name) for name in results)
    print(f"\n{'figure':<{width}}  p50 ms  p95 ms  max ms  target")
    ok = True
    for name, figures in results.items():
        timed_target = "--version" not in name
        verdict = ""
        if timed_target:
            good = figures["p50_ms"] <= TARGET_MS
            ok = ok and good
            verdict = f"<= {TARGET_MS:.0f} {'ok' if good else 'MISSED'}"
        print(
            f"{name:<{width}}  {figures['p50_ms']:>6}  {figures['p95_ms']:>6}  "
            f"{figures['max_ms']:>6}  {verdict}"
        )
    print(
        f"\nrollup triggers: {triggers['us_per_row_with_rollup']:.1f} µs/row written vs "
        f"{triggers['us_per_row_without_rollup']:.1f} without"
    )
    payload = {
        "rows": args.rows,
        "days": args.days,
        "rows_in_last_30_days": in_window,
        "ledger_bytes": (home / "db.sqlite").stat().st_size,
        "generate_insert_seconds": round(insert_seconds, 1),
        "target_ms": TARGET_MS,
        "ok": ok,
        "figures": results,
        "writer_cost": {key: round(value, 2) for key, value in triggers.items()},
        "version": version.stdout.decode().strip(),
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        # Other work on the machine slows every figure, process start-up most of all.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
