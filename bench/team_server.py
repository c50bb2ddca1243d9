"""Team server benchmark: ingest throughput with 20 machines pushing at once, and a 30-day team
rollup over 10,000,000 ledger rows.

    .venv/bin/python bench/team_server.py                 # full run (10 M rows: ~5-10 min)
    .venv/bin/python bench/team_server.py --quick         # 1 M rows, fewer batches
    .venv/bin/python bench/team_server.py --out FILE.json # default bench/results/team_server.json

Setup: a fresh PostgreSQL cluster (Debian's postgresql, started as in the tests but with its
default durability: fsync and synchronous_commit on), the real `halton-meter server run`
process, and 20 machines, each a real SQLite ledger drained by the real sync client
(`cloud.sync.drain`, 500-row batches) on its own thread of this process.

1. Ingest: every machine pushes its whole queue at once; rows/s = rows stored / wall time.
   Target >= 5,000 rows/s. Per-batch latency p50/p99 from the client side.
2. Rollup: 10 M rows spread over 30 days, 20 machines, 200 projects, 6 models are generated
   in PostgreSQL with generate_series (INSERT ... SELECT, no client round trips), then the
   daily rollups (and the two coarser tables, from them) are rebuilt (timed, the same sums
   ingest keeps up to date),
   then `GET /v1/stats?since=30d` is timed over HTTP (p50/max of 10). Target <= 1 s. For
   scale, the same totals straight from the raw ledger rows are timed once.
It prints figures and writes JSON; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from tests.postgres import start_cluster  # noqa: E402

from halton_meter.cloud import sync  # noqa: E402
from halton_meter.cloud.credentials import Credentials  # noqa: E402
from halton_meter.config import CloudSettings  # noqa: E402
from halton_meter.ledger.db import connect  # noqa: E402
from halton_meter.ledger.row import INSERT_SQL, ROW_COLUMNS  # noqa: E402
from halton_meter.teamserver import accounts, pairing  # noqa: E402
from halton_meter.teamserver.schema import migrate  # noqa: E402

METER = str(Path(sys.executable).parent / "halton-meter")
OWN_ROOTS: list[int] = [os.getpid()]  # + the server and the postmaster, once started
MACHINES = 20
PROJECTS = 200


class CpuMeter:
    """CPU used on this machine by processes outside the benchmark (other work skews the
    figures on a shared machine), in % of one core, like bench/run.py's background_cpu_pct."""

    def __init__(self, own_roots: list[int]) -> None:
        import psutil

        self._psutil = psutil
        self._roots = own_roots

    def _own(self) -> float:
        total = 0.0
        seen: set[int] = set()
        for root in self._roots:
            try:
                process = self._psutil.Process(root)
                family = [process, *process.children(recursive=True)]
            except self._psutil.Error:
                continue
            for member in family:
                if member.pid in seen:
                    continue
                seen.add(member.pid)
                try:
                    times = member.cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
                except self._psutil.Error:
                    pass
        return total

    def start(self) -> None:
        times = self._psutil.cpu_times()
        self._busy = times.user + times.system + times.nice
        self._own_start = self._own()
        self._wall = time.perf_counter()

    def background_pct(self) -> float:
        times = self._psutil.cpu_times()
        busy = times.user + times.system + times.nice - self._busy
        own = self._own() - self._own_start
        return round(max(0.0, busy - own) / (time.perf_counter() - self._wall) * 100, 1)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(dsn: str, port: int, home: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(HALTON_METER_SERVER_DSN=dsn, HALTON_METER_HOME=str(home))
    config = home / "server.toml"
    config.write_text(f"[server]\nport = {port}\npool_size = {MACHINES + 2}\n")
    process = subprocess.Popen(
        [METER, "server", "run", "--config", str(config)],
        env=env,
        stdout=(home / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError((home / "server.log").read_text())


def make_ledger(path: Path, machine: int, rows: int) -> None:
    con = connect(path)
    start_ms = int(time.time() * 1000) - rows * 50
    values = []
    for i in range(rows):
        ms = start_ms + i * 50
        values.append(
            {
                "id": f"{ms:012x}{machine:04x}{i:08x}",
                "requested_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000))
                + f".{ms % 1000:03d}Z",
                "provider": "anthropic" if i % 2 else "openai",
                "api": "messages" if i % 2 else "chat",
                "host": "api.anthropic.com" if i % 2 else "api.openai.com",
                "model": "claude-sonnet-4-5" if i % 2 else "gpt-4.1",
                "model_requested": None,
                "stream": True,
                "input_tokens": 1000 + i % 500,
                "cache_read_tokens": 2000,
                "cache_write_tokens": 300,
                "cache_write_1h_tokens": 0,
                "output_tokens": 400 + i % 100,
                "reasoning_tokens": None,
                "web_search_requests": None,
                "http_status": 200,
                "status": "ok",
                "error_class": None,
                "provider_error_code": None,
                "latency_ms": 900.0 + i % 300,
                "ttft_ms": 150.0,
                "tokens_complete": True,
                "response_id": f"resp-{machine}-{i}",
                "service_tier": None,
                "user_agent": "claude-cli/2.0",
                "project": f"project-{i % 12}",
                "cost_nanousd": 1_234_567,
                "price_source": "genai-prices bench",
                "provider_cost_usd": None,
                "raw_usage": None,
            }
        )
    con.execute("BEGIN IMMEDIATE")
    con.executemany(INSERT_SQL, [tuple(v.get(c) for c in ROW_COLUMNS) for v in values])
    con.execute("COMMIT")
    con.close()


def pair_machine(dsn: str, url: str, ledger: Path, name: str) -> Credentials:
    from halton_meter.cloud.http import request_json

    con = connect(ledger)
    uid = sync.read_state(con).machine_uid
    _, pending = request_json(
        "POST", f"{url}/v1/pairing", {"machine_uid": uid, "machine_name": name, "user": name}
    )
    with psycopg.connect(dsn, autocommit=True) as pg:
        pairing.approve(pg, pending["code"])
    _, answer = request_json(
        "POST", f"{url}/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )
    con.close()
    return Credentials(
        url,
        answer["token"],
        answer["workspace_id"],
        answer["workspace"],
        answer["machine_id"],
        name,
        name,
        "now",
    )


def bench_ingest(dsn: str, url: str, work: Path, rows_per_machine: int) -> dict[str, Any]:
    ledgers = []
    for machine in range(MACHINES):
        path = work / f"machine-{machine}.sqlite"
        make_ledger(path, machine, rows_per_machine)
        ledgers.append((path, pair_machine(dsn, url, path, f"machine-{machine}")))
    settings = CloudSettings(batch_size=500)
    latencies: list[float] = []
    results: list[sync.DrainResult] = []
    lock = threading.Lock()
    barrier = threading.Barrier(MACHINES + 1)

    def push(path: Path, credentials: Credentials) -> None:
        con = connect(path)
        barrier.wait()
        while True:
            started = time.perf_counter()
            result = sync.drain(con, credentials, settings, max_batches=1)
            with lock:
                if result.rows_sent:
                    latencies.append((time.perf_counter() - started) * 1000)
                results.append(result)
            if result.rows_sent == 0 or result.state != sync.ACTIVE:
                break
        con.close()

    threads = [threading.Thread(target=push, args=item) for item in ledgers]
    for thread in threads:
        thread.start()
    cpu = CpuMeter(OWN_ROOTS)
    cpu.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    stored = sum(r.rows_stored for r in results)
    failures = [r.error for r in results if r.state != sync.ACTIVE]
    with psycopg.connect(dsn) as pg:
        on_server = pg.execute("SELECT count(*) FROM ledger").fetchone()[0]  # type: ignore[index]
    return {
        "machines": MACHINES,
        "rows": MACHINES * rows_per_machine,
        "rows_stored": stored,
        "rows_on_server": on_server,
        "batch_rows": 500,
        "seconds": round(elapsed, 2),
        "rows_per_second": round(stored / elapsed),
        "batch_ms_p50": round(percentile(latencies, 50), 1),
        "batch_ms_p99": round(percentile(latencies, 99), 1),
        "failures": failures[:5],
        "background_cpu_pct": cpu.background_pct(),
        "target_rows_per_second": 5000,
    }


GENERATE_SQL = """
INSERT INTO ledger (workspace_id, machine_id, id, requested_at, provider, api, host, model,
    stream, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, http_status,
    status, latency_ms, tokens_complete, project, machine_cost_nanousd, cost_nanousd,
    price_source)
SELECT %(workspace)s, (%(machines)s::uuid[])[1 + g %% 20], 'gen' || g,
    now() - (g::double precision / %(total)s) * interval '30 days',
    (ARRAY['anthropic','openai','google'])[1 + (g / 3) %% 3], 'messages', 'bench.host',
    (ARRAY['claude-sonnet-4-5','gpt-4.1','gemini-2.5-flash','claude-haiku-4-5','gpt-4.1-mini',
           'gemini-2.5-pro'])[1 + (g / 3) %% 6],
    true, 1000 + g %% 500, 2000, 300, 400 + g %% 100, 200,
    CASE WHEN g %% 50 = 0 THEN 'error' ELSE 'ok' END, 900 + g %% 300, true,
    'project-' || ((g / 7) %% %(projects)s), 1234567, 1234567 + g %% 7, 'generated'
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
"""

REBUILD_SQL = """
INSERT INTO daily_rollups (workspace_id, day, machine_id, project, provider, model, requests,
    errors, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
    cost_nanousd, unpriced_requests, machine_cost_nanousd, machine_unpriced_requests,
    latency_ms_sum, latency_count, last_request_at)
SELECT workspace_id, (requested_at AT TIME ZONE 'UTC')::date, machine_id, project, provider,
    COALESCE(model, model_requested, '(unknown)'), count(*), count(*) FILTER (WHERE status <> 'ok'),
    COALESCE(sum(input_tokens), 0), COALESCE(sum(cache_read_tokens), 0),
    COALESCE(sum(cache_write_tokens), 0), COALESCE(sum(output_tokens), 0),
    COALESCE(sum(reasoning_tokens), 0), COALESCE(sum(cost_nanousd), 0),
    count(*) FILTER (WHERE cost_nanousd IS NULL), COALESCE(sum(machine_cost_nanousd), 0),
    count(*) FILTER (WHERE machine_cost_nanousd IS NULL), COALESCE(sum(latency_ms), 0),
    count(latency_ms), max(requested_at)
FROM ledger WHERE workspace_id = %(workspace)s GROUP BY 1, 2, 3, 4, 5, 6
"""


def bench_rollup(dsn: str, url: str, admin: str, total: int) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from halton_meter.teamserver.schema import (
        coarser_rollup_statements,
        ensure_partitions,
        month_start,
    )

    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("INSERT INTO workspaces (name) VALUES ('bench-rollup')")
        workspace = pg.execute("SELECT id FROM workspaces WHERE name = 'bench-rollup'").fetchone()[
            0
        ]  # type: ignore[index]
        machines = []
        for i in range(MACHINES):
            row = pg.execute(
                "INSERT INTO machines (workspace_id, machine_uid, name, user_name) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (workspace, f"gen-{i}", f"gen-machine-{i}", f"user-{i % 7}"),
            ).fetchone()
            machines.append(row[0])  # type: ignore[index]
        today = datetime.now(UTC)
        ensure_partitions(
            pg, {month_start((today - timedelta(days=d)).date()) for d in range(0, 32)}
        )
        started = time.perf_counter()
        chunk = 1_000_000
        for start in range(0, total, chunk):
            pg.execute(
                GENERATE_SQL,
                {
                    "workspace": workspace,
                    "machines": machines,
                    "total": total,
                    "projects": PROJECTS,
                    "start": start,
                    "stop": min(total, start + chunk) - 1,
                },
            )
            print(f"  generated {min(total, start + chunk):,} rows", flush=True)
        generate_seconds = time.perf_counter() - started
        pg.execute("VACUUM ANALYZE ledger")
        started = time.perf_counter()
        pg.execute(REBUILD_SQL, {"workspace": workspace})
        for table in ("daily_machine_rollups", "daily_project_rollups"):
            pg.execute(coarser_rollup_statements(table)[1])  # filled from daily_rollups
        rebuild_seconds = time.perf_counter() - started
        pg.execute("VACUUM ANALYZE daily_rollups")
        pg.execute("VACUUM ANALYZE daily_machine_rollups")
        pg.execute("VACUUM ANALYZE daily_project_rollups")
        rollup_rows = pg.execute(
            "SELECT count(*) FROM daily_rollups WHERE workspace_id = %s", (workspace,)
        ).fetchone()[0]  # type: ignore[index]
        coarse_rows = [
            pg.execute(
                f"SELECT count(*) FROM {table} WHERE workspace_id = %s", (workspace,)
            ).fetchone()[0]  # type: ignore[index]
            for table in ("daily_machine_rollups", "daily_project_rollups")
        ]
        started = time.perf_counter()
        raw = pg.execute(
            "SELECT count(*), sum(cost_nanousd) FROM ledger WHERE workspace_id = %s "
            "AND requested_at >= now() - interval '30 days'",
            (workspace,),
        ).fetchone()
        raw_seconds = time.perf_counter() - started

    timings = []
    answer: dict[str, Any] = {}
    for _ in range(10):
        request = urllib.request.Request(f"{url}/v1/stats?since=30d&workspace=bench-rollup")
        request.add_header("authorization", f"Bearer {admin}")
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "ledger_rows": total,
        "generate_seconds": round(generate_seconds, 1),
        "rollup_rebuild_seconds": round(rebuild_seconds, 1),
        "daily_rollup_rows": rollup_rows,
        "machine_rollup_rows": coarse_rows[0],
        "project_rollup_rows": coarse_rows[1],
        "stats_30d_ms_p50": round(statistics.median(timings), 1),
        "stats_30d_ms_max": round(max(timings), 1),
        "stats_30d_requests": answer["summary"]["total_requests"],
        "raw_rows_in_30d": raw[0] if raw else None,  # type: ignore[index]
        "raw_scan_30d_seconds": round(raw_seconds, 2),
        "target_ms": 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/team_server.json")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (ledgers, log).")
    args = parser.parse_args()
    rows_per_machine = 2_000 if args.quick else 10_000
    total = 1_000_000 if args.quick else 10_000_000

    cluster = start_cluster()
    work = Path(tempfile.mkdtemp(prefix="halton-bench-team-"))
    server = None
    try:
        dsn = cluster.dsn()
        with psycopg.connect(dsn, autocommit=True) as pg:
            migrate(pg)
            admin = accounts.create_admin_token(pg, "bench")
        port = free_port()
        server = start_server(dsn, port, work)
        OWN_ROOTS.append(server.pid)
        postmaster = (cluster.data / "postmaster.pid").read_text().split()[0]
        OWN_ROOTS.append(int(postmaster))
        url = f"http://127.0.0.1:{port}"
        print(f"ingest: {MACHINES} machines x {rows_per_machine:,} rows ...", flush=True)
        ingest = bench_ingest(dsn, url, work, rows_per_machine)
        print(
            f"  {ingest['rows_per_second']:,} rows/s (target >= 5,000: "
            f"{'ok' if ingest['rows_per_second'] >= 5000 else 'MISSED'}), batch p50 "
            f"{ingest['batch_ms_p50']} ms p99 {ingest['batch_ms_p99']} ms, "
            f"{ingest['rows_on_server']:,} rows on the server; background CPU "
            f"{ingest['background_cpu_pct']}% of a core",
            flush=True,
        )
        print(f"rollup: generating {total:,} rows over 30 days ...", flush=True)
        rollup = bench_rollup(dsn, url, admin, total)
        print(
            f"  /v1/stats?since=30d p50 {rollup['stats_30d_ms_p50']} ms max "
            f"{rollup['stats_30d_ms_max']} ms (target <= 1000: "
            f"{'ok' if rollup['stats_30d_ms_max'] <= 1000 else 'MISSED'}) over "
            f"{rollup['stats_30d_requests']:,} requests in {rollup['daily_rollup_rows']:,} "
            f"rollup rows; raw 30-day scan {rollup['raw_scan_30d_seconds']} s; rollup rebuild "
            f"{rollup['rollup_rebuild_seconds']} s",
            flush=True,
        )
        result = {
            "benchmark": "team_server",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "postgresql": cluster.bin_dir.parent.name,
            "quick": args.quick,
            "ingest": ingest,
            "rollup": rollup,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        cluster.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
