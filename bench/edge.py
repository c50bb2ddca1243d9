"""What the edge hop costs: the same client with and without the edge in front, in one run.

    .venv/bin/python bench/edge.py [--requests 1000] [--out bench/results/edge.json]

Processes (each its own subprocess): the fake provider (`bench/timed_fake.py`), the real
daemon (listening on what is the edge's internal port), and the real edge
(`python -m halton_meter.edge`) in front of it. The client is this process: run.py's minimal
HTTP/1.1 client over TLS, keep-alive, one request at a time.

- tunnelled: `GET /` on example.org (not an LLM host), direct to the fake against through the
  edge's CONNECT tunnel. Also the set-up of a new connection (TCP, CONNECT, TLS, first
  request), where the edge's routing decision and its outgoing connect happen: direct,
  through the daemon alone (which tunnels non-LLM hosts itself, as before the edge), and
  through the edge. Any proxy adds the CONNECT round trip to a set-up.
- metered: a small OpenAI chat call, direct to the fake, through the daemon alone, and through
  the edge (handed to the daemon). The edge's own cost is edge minus daemon. Also the set-up
  of a new metered connection (TCP, CONNECT, TLS with the meter's CA, first request), through
  the daemon alone and through the edge: the handoff's connect to the daemon shows here.

Blocks of 25 requests alternate between the paths, so drift hits all of them alike. Added
latency is a difference of percentiles (nearest-rank), not of single requests. Nothing is
asserted: each figure is printed next to its target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as core  # noqa: E402  (bench/run.py: client, fake and daemon start-up)

BLOCK = 25
TARGET_MS = 0.5
TUNNEL_HOST = "example.org"
LLM_HOST = core.HOST  # api.openai.com


async def open_via(
    address: tuple[str, int], host: str, context: ssl.SSLContext, *, tunnel: bool
) -> core.HttpConnection:
    """A keep-alive TLS connection to `host`: direct, or through a CONNECT to `address`."""
    connect_head = (
        f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n"
        "Proxy-Authorization: Basic YmVuY2g6bWV0ZXI=\r\n\r\n"  # bench:meter
    )
    return await core.open_connection(address, host, context, connect_head if tunnel else None)


def get_request(host: str) -> bytes:
    return f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: halton-bench/1\r\n\r\n".encode()


async def timed(conn: core.HttpConnection, raw: bytes) -> float:
    began = time.perf_counter()
    reply = await conn.request(raw)
    if reply.status != 200:
        raise RuntimeError(f"status {reply.status}")
    return time.perf_counter() - began


async def alternate(
    paths: dict[str, Callable[[], Awaitable[float]]], requests: int, warmup: int = 50
) -> dict[str, list[float]]:
    """`requests` samples per path, in alternating blocks, after a warm-up of each."""
    for measure in paths.values():
        for _ in range(warmup):
            await measure()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    while len(next(iter(samples.values()))) < requests:
        for name, measure in paths.items():
            for _ in range(BLOCK):
                samples[name].append(await measure())
    return samples


def summary(samples: dict[str, list[float]]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, values in samples.items():
        figures[f"{name}_p50_ms"] = core.ms(core.pct(values, 50))
        figures[f"{name}_p99_ms"] = core.ms(core.pct(values, 99))
    return figures


def added(figures: dict[str, float], path: str, base: str) -> dict[str, float]:
    return {
        f"{path}_vs_{base}_added_p50_ms": round(
            figures[f"{path}_p50_ms"] - figures[f"{base}_p50_ms"], 3
        ),
        f"{path}_vs_{base}_added_p99_ms": round(
            figures[f"{path}_p99_ms"] - figures[f"{base}_p99_ms"], 3
        ),
    }


# --- processes -----------------------------------------------------------------------------


def resolve_lines(fake_port: int) -> str:
    return "\n".join(
        f'"{host}:443" = "127.0.0.1:{fake_port}"'
        for host in ("api.openai.com", "api.anthropic.com", TUNNEL_HOST)
    )


def start_daemon(procs: core.Processes) -> None:
    """run.py's `start_meter`, with example.org resolved too, so the daemon alone can be
    compared with the edge for a tunnel's set-up. It listens on the edge's internal port."""
    procs.meter_port = core.free_port()
    procs.home.mkdir(parents=True, exist_ok=True)
    (procs.home / "config.toml").write_text(
        f"[daemon]\nproxy_port = {procs.meter_port}\ninternal_port = {core.free_port()}\n"
        f'api_port = {core.free_port()}\n\n[upstream]\nca_bundle = "{procs.pki / "ca.pem"}"\n\n'
        f"[upstream.resolve]\n{resolve_lines(procs.fake_port)}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_HOME"] = str(procs.home)
    log = (procs.work / "daemon.log").open("ab")
    procs.meter = subprocess.Popen(
        [str(core.VENV_BIN / "halton-meter"), "daemon"], env=env, stdout=log, stderr=log
    )
    state = procs.home / "daemon.json"

    def started() -> bool:
        if procs.meter is not None and procs.meter.poll() is not None:
            raise RuntimeError(f"daemon exited: {(procs.work / 'daemon.log').read_text()}")
        return state.exists()

    core.wait_until(started, 60, "the meter daemon")


def start_edge(work: Path, fake_port: int, pki: Path, internal_port: int) -> tuple[Any, int]:
    home = work / "edge-home"
    home.mkdir(parents=True, exist_ok=True)
    port = core.free_port()
    resolve = resolve_lines(fake_port)
    (home / "config.toml").write_text(
        f"[daemon]\nproxy_port = {port}\ninternal_port = {internal_port}\n"
        f'api_port = {core.free_port()}\n\n[upstream]\nca_bundle = "{pki / "ca.pem"}"\n\n'
        f"[upstream.resolve]\n{resolve}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_HOME"] = str(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "halton_meter.edge"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(work / "edge.log").open("ab"),
    )

    def started() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"edge exited: {(work / 'edge.log').read_text()}")
        return (home / "edge.json").exists()

    core.wait_until(started, 30, "the edge")
    return process, port


def edge_status(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: edge\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    result: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return result


# --- scenarios -----------------------------------------------------------------------------


async def tunnelled(
    fake: tuple[str, int],
    daemon: tuple[str, int],
    edge: tuple[str, int],
    pki: Path,
    requests: int,
) -> dict[str, float]:
    context = core.client_context(pki / "ca.pem")
    request = get_request(TUNNEL_HOST)
    direct = await open_via(fake, TUNNEL_HOST, context, tunnel=False)
    via_edge = await open_via(edge, TUNNEL_HOST, context, tunnel=True)
    samples = await alternate(
        {"direct": lambda: timed(direct, request), "edge": lambda: timed(via_edge, request)},
        requests,
    )
    direct.close()
    via_edge.close()

    async def setup(address: tuple[str, int], tunnel: bool) -> float:
        began = time.perf_counter()
        conn = await open_via(address, TUNNEL_HOST, context, tunnel=tunnel)
        await timed(conn, request)
        elapsed = time.perf_counter() - began
        conn.close()
        return elapsed

    connections = await alternate(
        {
            "setup_direct": lambda: setup(fake, False),
            "setup_daemon": lambda: setup(daemon, True),
            "setup_edge": lambda: setup(edge, True),
        },
        max(100, requests // 5),
        warmup=10,
    )
    figures = summary(samples) | summary(connections)
    figures |= added(figures, "edge", "direct") | added(figures, "setup_edge", "setup_direct")
    return figures | added(figures, "setup_edge", "setup_daemon")


async def metered(
    fake: tuple[str, int],
    daemon: tuple[str, int],
    edge: tuple[str, int],
    pki: Path,
    bundle: Path,
    requests: int,
) -> dict[str, float]:
    direct = await open_via(fake, LLM_HOST, core.client_context(pki / "ca.pem"), tunnel=False)
    meter_context = core.client_context(bundle)
    via_daemon = await open_via(daemon, LLM_HOST, meter_context, tunnel=True)
    via_edge = await open_via(edge, LLM_HOST, meter_context, tunnel=True)
    samples = await alternate(
        {
            "direct": lambda: timed(direct, core.SMALL),
            "daemon": lambda: timed(via_daemon, core.SMALL),
            "edge": lambda: timed(via_edge, core.SMALL),
        },
        requests,
    )
    for conn in (direct, via_daemon, via_edge):
        conn.close()

    async def setup(address: tuple[str, int]) -> float:
        began = time.perf_counter()
        conn = await open_via(address, LLM_HOST, meter_context, tunnel=True)
        await timed(conn, core.SMALL)
        elapsed = time.perf_counter() - began
        conn.close()
        return elapsed

    connections = await alternate(
        {"setup_daemon": lambda: setup(daemon), "setup_edge": lambda: setup(edge)},
        max(50, requests // 10),
        warmup=10,
    )
    figures = summary(samples) | summary(connections)
    figures |= added(figures, "edge", "daemon") | added(figures, "edge", "direct")
    return figures | added(figures, "setup_edge", "setup_daemon")


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"


async def bench(args: argparse.Namespace, procs: core.Processes, edge_port: int) -> dict[str, Any]:
    fake = ("127.0.0.1", procs.fake_port)
    edge = ("127.0.0.1", edge_port)
    daemon = ("127.0.0.1", procs.meter_port)
    before = edge_status(edge_port)["counters"]
    tunnel = await tunnelled(fake, daemon, edge, procs.pki, args.requests)
    rows_before = procs.ledger_rows()
    meter = await metered(
        fake, daemon, edge, procs.pki, procs.home / "ca-bundle.pem", args.requests // 2
    )
    after = edge_status(edge_port)["counters"]
    checks = {
        "tunnelled_added_p50_ms": (tunnel["edge_vs_direct_added_p50_ms"], TARGET_MS),
        "metered_edge_added_p50_ms": (meter["edge_vs_daemon_added_p50_ms"], TARGET_MS),
    }
    setups = max(50, args.requests // 2 // 10)
    setups = -(-setups // BLOCK) * BLOCK + 10  # whole blocks, plus the warm-up
    sent = 2 * (args.requests // 2 + 50) + 2 * setups  # daemon and edge paths, with warm-ups
    return {
        "tunnelled": tunnel,
        "metered": meter,
        "checks": {
            name: {"value": value, "target": target, "met": value <= target}
            for name, (value, target) in checks.items()
        },
        "sanity": {
            "edge_connections": after["connections"] - before["connections"],
            "edge_handed_off": after["handed_off"] - before["handed_off"],
            "edge_tunnelled": after["tunnelled"] - before["tunnelled"],
            "edge_fallbacks": after["fallbacks"] - before["fallbacks"],
            "metered_requests_sent": sent,
            "ledger_rows_added": procs.wait_ledger(rows_before + sent) - rows_before,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="samples per tunnelled path")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "edge.json")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="halton-bench-edge-"))
    procs = core.Processes(work)
    edge_process = None
    info = core.machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    try:
        procs.start_fake()
        start_daemon(procs)  # listens on meter_port: the edge's internal port
        edge_process, edge_port = start_edge(work, procs.fake_port, procs.pki, procs.meter_port)
        result = asyncio.run(bench(args, procs, edge_port))
    finally:
        if edge_process is not None and edge_process.poll() is None:
            edge_process.send_signal(signal.SIGTERM)
            edge_process.wait(15)
        procs.stop()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    for section in ("tunnelled", "metered", "sanity"):
        print(f"\n== {section}")
        for key, value in result[section].items():
            print(f"  {key:38} {value}")
    print("\n== targets")
    for name, check in result["checks"].items():
        mark = verdict(check["value"], check["target"])
        print(f"  {name:38} {check['value']:.3f} ms (target <= {check['target']}) {mark}")
    result["machine"] = info
    result["requests"] = args.requests
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
