"""A week of a heavy user's traffic, compressed into minutes: does the daemon stay flat?

    .venv/bin/python bench/soak.py                 # full: 7 days x 3,000 calls, 1M-row ledger
    .venv/bin/python bench/soak.py --quick         # 7 days x 300 calls, 100k rows (smoke run)
    .venv/bin/python bench/soak.py --calls-per-day N --prefill N --out FILE.json

Processes: the fake provider (`bench/timed_fake.py`) and the real daemon, as in bench/run.py;
the client is this process (run.py's minimal HTTP/1.1 client over TLS).

The ledger is pre-filled with generated rows (bench/api.py's generator, through the real
schema) so it passes a million rows during the run. Then each simulated day sends its calls
as a heavy user's mix: one agent at a time and bursts of parallel agents (8 at once), about a
third of the calls streamed, a few percent answered with errors (429, 500, 529 from the fake),
connections left idle with keep-alive between bursts and reused later, plus a daemon restart
(SIGTERM, then a new daemon on the same home and ledger) at the end of days 2 and 4.

Figures, printed and written to bench/results/soak.json: RSS, open files, sockets, threads,
ledger rows and size, and the meter's added latency (sequential non-streamed calls, direct and
through the meter in alternating blocks: a difference of medians), at the start (after a
warm-up) and at the end. The daemon's own figures are compared for one process: the last
daemon, from its warm-up after the last restart to the end. Targets: RSS growth <= 5 MB, no
descriptor growth, added p50 at the end within 10 % of the start, no row missing (rows added
= LLM calls sent through the meter). Nothing is asserted; each figure is shown with its
target, `ok` or `MISSED`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import api as ledger_bench  # noqa: E402  (bench/api.py: the row generator)
import run as core  # noqa: E402  (bench/run.py: client, fake and daemon start-up)

BURST = 8  # parallel agents in a burst
RESTART_AFTER_DAYS = (2, 4)
ERROR_SCENARIOS = ("error-429", "error-500", "error-529")
LATENCY_BLOCK = 25


def snapshot(procs: core.Processes) -> dict[str, Any]:
    """What the daemon holds right now, and the ledger's size."""
    process = psutil.Process(procs.meter_pid())
    ledger = procs.ledger
    wal = ledger.with_name(ledger.name + "-wal")
    return {
        "pid": process.pid,
        "rss_mb": round(process.memory_info().rss / 2**20, 1),
        "open_files": len(process.open_files()),
        "fds": process.num_fds(),
        "sockets": len(process.net_connections(kind="all")),
        "threads": process.num_threads(),
        "ledger_rows": procs.ledger_rows(),
        "ledger_mb": round(
            (ledger.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 2**20, 1
        ),
        "at": round(time.time(), 1),
    }


async def added_latency(
    direct: core.Target, meter: core.Target, requests: int, procs: core.Processes
) -> dict[str, Any]:
    """Added p50/p90 of sequential non-streamed calls (alternating blocks, one keep-alive
    connection each way), and the CPU other processes used meanwhile (% of one core)."""
    pids = [os.getpid(), procs.meter_pid()] + ([procs.fake.pid] if procs.fake else [])
    background = core.Background(pids)
    conns = {"direct": await direct.connect(), "meter": await meter.connect()}
    targets = {"direct": direct, "meter": meter}
    samples: dict[str, list[float]] = {"direct": [], "meter": []}
    for name in samples:  # warm-up
        for _ in range(LATENCY_BLOCK):
            await targets[name].call(conns[name], core.SMALL)
    while len(samples["meter"]) < requests:
        for name in samples:
            for _ in range(LATENCY_BLOCK):
                began = time.perf_counter()
                await targets[name].call(conns[name], core.SMALL)
                samples[name].append(time.perf_counter() - began)
    core.close_all(list(conns.values()))
    figures = {f"{n}_p50_ms": core.ms(core.pct(v, 50)) for n, v in samples.items()}
    figures |= {f"{n}_p90_ms": core.ms(core.pct(v, 90)) for n, v in samples.items()}
    figures["added_p50_ms"] = round(figures["meter_p50_ms"] - figures["direct_p50_ms"], 3)
    figures["added_p90_ms"] = round(figures["meter_p90_ms"] - figures["direct_p90_ms"], 3)
    figures["background_cpu_pct"] = background.percent()
    return figures


class Day:
    """One simulated day of calls through the meter."""

    def __init__(self, meter: core.Target, rng: random.Random, calls: int) -> None:
        self.meter = meter
        self.rng = rng
        self.calls = calls
        self.sent = 0  # LLM calls sent through the meter (each must become a row)
        self.failed = 0  # calls whose connection failed (no answer at all)
        self.idle: list[core.HttpConnection] = []

    def request(self) -> tuple[bytes, bool]:
        roll = self.rng.random()
        headers = {}
        if roll < 0.04:
            headers["x-fake-scenario"] = self.rng.choice(ERROR_SCENARIOS)
        stream = 0.04 <= roll < 0.37
        if stream:
            headers["x-fake-events"] = str(self.rng.randrange(5, 60))
        return core.chat_request(stream=stream, headers=headers), stream

    async def agent(self, calls: int) -> None:
        """One agent: a connection (an idle one reused when there is one), calls in a row."""
        conn = self.idle.pop() if self.idle else await self.meter.connect()
        for _ in range(calls):
            raw, stream = self.request()
            self.sent += 1
            try:
                await self.meter.call(conn, raw, sse=stream)
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                self.failed += 1
                conn.close()
                conn = await self.meter.connect()
        if self.rng.random() < 0.5:
            self.idle.append(conn)  # kept alive, idle, for a later agent
        else:
            conn.close()

    async def run(self, idle_seconds: float) -> None:
        while self.sent < self.calls:
            left = self.calls - self.sent
            if self.rng.random() < 0.3:  # a burst of parallel agents
                each = max(1, min(left // BURST, self.rng.randrange(3, 12)))
                await asyncio.gather(*(self.agent(each) for _ in range(BURST)))
            else:
                await self.agent(min(left, self.rng.randrange(1, 20)))
            if self.rng.random() < 0.1:
                await asyncio.sleep(idle_seconds)  # the user steps away; connections idle
        core.close_all(self.idle)
        self.idle = []


def prefill(procs: core.Processes, rows: int) -> float:
    """Generated rows through the real schema, in chunks (memory stays small)."""
    started = time.perf_counter()
    chunk = 100_000
    for index, start in enumerate(range(0, rows, chunk)):
        count = min(chunk, rows - start)
        ledger_bench.write_ledger(procs.ledger, ledger_bench.make_rows(count, 30, seed=7 + index))
    return round(time.perf_counter() - started, 1)


def verdicts(result: dict[str, Any]) -> list[tuple[str, Any, str, bool]]:
    baseline, end = result["daemon_baseline"], result["end"]
    rss_growth = round(end["rss_mb"] - baseline["rss_mb"], 1)
    start_p50 = result["latency_start"]["added_p50_ms"]
    end_p50 = result["latency_end"]["added_p50_ms"]
    # Within 10 % of the start; an added p50 below 0.1 ms is inside the noise either way.
    allowed = max(abs(start_p50) * 0.10, 0.1)
    missing = result["rows_expected"] - result["rows_added"]
    fresh_p50 = result["latency_fresh_daemon"]["added_p50_ms"]
    # Threads are shown in the snapshots, not checked: worker pools start and retire threads.
    checks: list[tuple[str, Any, str, bool]] = [
        ("rss_growth_mb", rss_growth, "<= 5", rss_growth <= 5),
        ("fd_growth", end["fds"] - baseline["fds"], "<= 0", end["fds"] <= baseline["fds"]),
        (
            "socket_growth",
            end["sockets"] - baseline["sockets"],
            "<= 0",
            end["sockets"] <= baseline["sockets"],
        ),
        (
            "added_p50_change_ms",
            round(end_p50 - start_p50, 3),
            f"within ±{allowed:.3f}",
            abs(end_p50 - start_p50) <= allowed,
        ),
        (
            "aged_vs_fresh_p50_ms",
            round(end_p50 - fresh_p50, 3),
            f"within ±{max(abs(fresh_p50) * 0.10, 0.1):.3f}",
            abs(end_p50 - fresh_p50) <= max(abs(fresh_p50) * 0.10, 0.1),
        ),
        ("rows_missing", missing, "0", missing == 0),
    ]
    if result["config"]["prefill"] >= 900_000:  # the full run: the ledger past a million rows
        rows = end["ledger_rows"]
        checks.append(("ledger_rows_end", rows, "> 1,000,000", rows > 1_000_000))
    return checks


async def soak(args: argparse.Namespace, procs: core.Processes) -> dict[str, Any]:
    direct = core.Target(
        "direct", ("127.0.0.1", procs.fake_port), False, core.client_context(procs.pki / "ca.pem")
    )
    bundle = procs.home / "ca-bundle.pem"
    meter = core.Target("meter", ("127.0.0.1", procs.meter_port), True, core.client_context(bundle))
    rng = random.Random(args.seed)
    result: dict[str, Any] = {"config": vars(args).copy(), "days": []}
    await Day(meter, rng, args.warmup).run(0.0)
    procs.wait_ledger(args.prefill + meter.requests)
    result["latency_start"] = await added_latency(direct, meter, args.latency_requests, procs)
    procs.wait_ledger(args.prefill + meter.requests)
    result["start"] = result["daemon_baseline"] = snapshot(procs)
    print(f"start: {result['start']} {result['latency_start']}", flush=True)
    failed = 0
    baseline_day = 1  # the daemon's first full day of the mix is its warm-up
    for number in range(1, args.days + 1):
        day = Day(meter, rng, args.calls_per_day)
        began = time.monotonic()
        await day.run(args.idle_seconds)
        await asyncio.sleep(1.0)  # the daemon sees the day's last closes before the snapshot
        failed += day.failed
        figures: dict[str, Any] = {
            "day": number,
            "calls": day.sent,
            "failed": day.failed,
            "seconds": round(time.monotonic() - began, 1),
            **snapshot(procs),
        }
        if number in RESTART_AFTER_DAYS and number < args.days:
            procs.wait_ledger(args.prefill + meter.requests)
            code = procs.stop_meter()
            procs.start_meter()  # same home and ledger, new ports
            meter.address = ("127.0.0.1", procs.meter_port)
            figures["restart_exit_code"] = code
            await Day(meter, rng, args.warmup).run(0.0)  # the new daemon's warm-up
            procs.wait_ledger(args.prefill + meter.requests)
            result["after_restart"] = snapshot(procs)
            baseline_day = number + 1  # its first full day completes its warm-up
        if number == baseline_day:
            result["daemon_baseline"] = figures | {"baseline": f"end of day {number}"}
        result["days"].append(figures)
        print(f"day {number}: {figures}", flush=True)
    result["latency_end"] = await added_latency(direct, meter, args.latency_requests, procs)
    procs.wait_ledger(args.prefill + meter.requests, settle=10)
    await asyncio.sleep(1.0)
    result["end"] = snapshot(procs)
    # Control: a fresh daemon on the same ledger, measured right after. Aged and fresh alike
    # means the week cost nothing; a start/end difference then comes from the machine.
    procs.stop_meter()
    procs.start_meter()
    meter.address = ("127.0.0.1", procs.meter_port)
    await Day(meter, rng, args.warmup).run(0.0)
    result["latency_fresh_daemon"] = await added_latency(
        direct, meter, args.latency_requests, procs
    )
    procs.wait_ledger(args.prefill + meter.requests, settle=10)
    result["end_rows_after_control"] = procs.ledger_rows()
    result["rows_expected"] = meter.requests  # every LLM call answered through the meter
    result["rows_added"] = result["end_rows_after_control"] - args.prefill
    result["calls_failed"] = failed  # connections that failed before an answer
    result["answers_not_200"] = meter.errors  # the errors the fake was asked for
    checks = verdicts(result)
    result["checks"] = {name: {"value": v, "target": t, "ok": ok} for name, v, t, ok in checks}
    print(f"end: {result['end']} {result['latency_end']}")
    print(f"fresh daemon, same ledger, right after: {result['latency_fresh_daemon']}")
    for name, value, target, ok in checks:
        print(f"  {name:<22} {value!s:>12}  target {target:<14} {'ok' if ok else 'MISSED'}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="7 x 300 calls, 100k-row ledger")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--calls-per-day", type=int, default=3000)
    parser.add_argument("--prefill", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "soak.json")
    args = parser.parse_args()
    if args.quick:
        args.calls_per_day, args.prefill, args.warmup = 300, 100_000, 100
    work = Path(tempfile.mkdtemp(prefix="halton-soak-"))
    procs = core.Processes(work)
    started = time.time()
    try:
        procs.start_fake()
        procs.home.mkdir(parents=True, exist_ok=True)
        fill_seconds = prefill(procs, args.prefill)
        print(f"ledger pre-filled with {args.prefill} rows in {fill_seconds} s", flush=True)
        procs.start_meter()
        result = asyncio.run(soak(args, procs))
        result["prefill_seconds"] = fill_seconds
        result["wall_seconds"] = round(time.time() - started, 1)
        result["machine"] = core.machine()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"written to {args.out}")
    finally:
        procs.stop()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
