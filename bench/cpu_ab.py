"""CPU per metered call, A against B, on a busy machine: the figure that noise moves least.

    PYTHONPATH=src .venv/bin/python bench/cpu_ab.py --calls 4000 --pairs 2 \\
        --a "PYTHONPATH=/tmp/before/src" --b ""

Each side is a fresh fake + daemon + edge (run.py's `Processes`) with the environment
assignments given added; the 16-client closed loop of scenario 4 sends `--calls` calls after a
warm-up, and the daemon's and the edge's CPU (user + system, all threads) is divided by the
calls. Sides alternate A, B, A, B… so drift hits both; more sides (`--side`, repeated) make a
round-robin. `PYTHONPATH=DIR/src` as a side's environment runs another tree's daemon (for
instance a `git archive` of an earlier commit). Latency and calls/s are printed too, but
on a shared machine they mostly measure the neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as core  # noqa: E402


def parse_env(text: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in text.split() if "=" in item]
    return {key: value for key, value in pairs}


async def measure(procs: core.Processes, calls: int) -> dict[str, Any]:
    meter = core.Target(
        "meter",
        ("127.0.0.1", procs.meter_port),
        True,
        core.client_context(procs.home / "ca-bundle.pem"),
    )
    await core.closed_loop(meter, core.CLOSED_CLIENTS, count=1000)  # warm-up
    pids = {"daemon": procs.meter_pid()}
    if (edge := procs.edge_pid()) is not None:
        pids["edge"] = edge
    before = {name: core._cpu_seconds(pid) for name, pid in pids.items()}
    latencies: list[float] = []
    count, elapsed = await core.closed_loop(
        meter, core.CLOSED_CLIENTS, count=calls, latencies=latencies
    )
    figures: dict[str, Any] = {
        f"{name}_cpu_ms_per_call": round((core._cpu_seconds(pid) - before[name]) * 1000 / count, 3)
        for name, pid in pids.items()
    }
    figures["rps"] = round(count / elapsed, 1)
    figures["p50_ms"] = core.ms(core.pct(latencies, 50))
    figures["p99_ms"] = core.ms(core.pct(latencies, 99))
    figures["daemon_rss_mb"] = procs.rss_mb()
    figures["edge_rss_mb"] = procs.edge_rss_mb()
    await asyncio.to_thread(procs.wait_ledger, meter.requests)
    figures["rows_missing"] = meter.requests - procs.ledger_rows()
    return figures


def one(env: dict[str, str], calls: int, edge: bool) -> dict[str, Any]:
    saved = dict(os.environ)
    os.environ.update(env)
    work = Path(tempfile.mkdtemp(prefix="halton-ab-"))
    procs = core.Processes(work, edge=edge)
    try:
        procs.start_fake()
        procs.start_meter()
        return asyncio.run(measure(procs, calls))
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="", help="environment for side A: 'K=V K2=V2'")
    parser.add_argument("--b", default="", help="environment for side B")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument(
        "--side", action="append", default=[], help="more sides (C, D…), in turn after B"
    )
    parser.add_argument("--no-edge", action="store_true")
    args = parser.parse_args()
    sides = [args.a, args.b, *args.side]
    for _ in range(args.pairs):
        for index, text in enumerate(sides):
            figures = one(parse_env(text), args.calls, not args.no_edge)
            print("ABCDEFGH"[index], repr(text), json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
