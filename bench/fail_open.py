"""Fail-open: what clients see while the meter restarts or crashes (issue 14).

    .venv/bin/python bench/fail_open.py [--out bench/results/fail_open.json] [--keep]

One temporary home, set up with the real `halton-meter init` in background mode (edge, daemon,
guard), in front of the local TLS fake provider (`tests/fakeupstream`) under the real host
names. The clients are this process's threads, with the real SDK stack (the Anthropic SDK over
its httpx pool), through the edge as `HTTPS_PROXY` users would.

- restart: a pooled client loop (4 threads, keep-alive, a short non-streamed call each time) and
  10 streams of about 20 s run while `halton-meter restart` replaces the daemon. Figures: failed
  requests, streams completed, rows for the streams, and LLM connections the edge tunnelled
  unmetered meanwhile (its `fallbacks` counter); the drain report of the old daemon.
- respawn: kill -9 of the edge, then of the daemon, each once the guard's standby of it is
  ready (guard.py); the time until the edge answers again (a new pid), the connections refused
  meanwhile (a client tries every 5 ms), and the time until the daemon accepts on its port
  again, each once (a second kill within 30 s would be a crash loop, with back-off).

Each figure is printed next to its target; nothing is asserted. On a loaded machine (see
`background_cpu_pct` in bench/README.md) the respawn times grow with the load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anthropic  # noqa: E402
import httpx2  # noqa: E402
from tests.conftest import METER, UPSTREAM_HOSTS, free_port  # noqa: E402
from tests.fakeupstream.certs import make_test_pki  # noqa: E402
from tests.streams import Streams  # noqa: E402

TARGETS = {
    "restart_failed_requests": 0,
    "restart_streams_completed": 10,
    "restart_unmetered_connections": 0,
    "edge_back_seconds": 1.0,
    "edge_refused_connections": 0,
    "daemon_back_seconds": 5.0,
}


class Setup:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.home = work / "meter"
        self.pki = make_test_pki(work / "pki")
        ready = work / "fake.ready"
        self.fake = subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.fakeupstream", "--port", "0"),
                *("--pki", str(self.pki.ca_cert.parent), "--ready-file", str(ready)),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while not (ready.exists() and ready.read_text().strip()):
            time.sleep(0.05)
        fake_port = int(ready.read_text().strip())
        self.home.mkdir(parents=True)
        resolve = "\n".join(f'"{h}:443" = "127.0.0.1:{fake_port}"' for h in UPSTREAM_HOSTS)
        (self.home / "config.toml").write_text(
            f"[daemon]\nproxy_port = {free_port()}\ninternal_port = {free_port()}\n"
            f'api_port = {free_port()}\n\n[upstream]\nca_bundle = "{self.pki.ca_cert}"\n\n'
            f"[upstream.resolve]\n{resolve}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.env.update(
            HOME=str(work), HALTON_METER_HOME=str(self.home), HALTON_METER_SUPERVISOR="background"
        )
        done = self.meter("init", "--json")
        if done.returncode != 0:
            raise SystemExit(f"init failed: {done.stdout}{done.stderr}")
        ports = json.loads((self.home / "effective-ports.json").read_text())
        self.port, self.internal = ports["proxy_port"], ports["internal_port"]
        self.bundle = self.home / "ca-bundle.pem"

    def meter(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [METER, *args], env=self.env, capture_output=True, text=True, timeout=180
        )

    def state(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / name).read_text())
        return data

    def edge_status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"GET /status HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            answer: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
            return answer
        except (OSError, ValueError, IndexError):
            return None

    def rows(self, project: str) -> int:
        con = sqlite3.connect(f"file:{self.home / 'db.sqlite'}?mode=ro", uri=True)
        try:
            sql = "SELECT COUNT(*) FROM requests WHERE project = ? AND tokens_complete = 1"
            return int(con.execute(sql, (project,)).fetchone()[0])
        finally:
            con.close()

    def close(self) -> None:
        self.meter("uninstall", "--yes")
        for name in ("guard.json", "edge.json", "daemon.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.kill(int(self.state(name)["pid"]), signal.SIGKILL)
        self.fake.send_signal(signal.SIGTERM)
        self.fake.wait(timeout=10)


class ClientLoop:
    """Pooled SDK clients calling without pause until stopped; every failure is kept."""

    def __init__(self, setup: Setup, threads: int = 4) -> None:
        self.setup = setup
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> ClientLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        context = ssl.create_default_context(cafile=str(self.setup.bundle))
        proxy = f"http://bench-loop:meter@127.0.0.1:{self.setup.port}"
        with httpx2.Client(proxy=proxy, verify=context, timeout=30) as http:
            client = anthropic.Anthropic(api_key="bench", http_client=http, max_retries=0)
            while not self._stop.is_set():
                self.sent += 1
                try:
                    client.messages.create(
                        model="claude-sonnet-4-5",
                        max_tokens=8,
                        messages=[{"role": "user", "content": "hi"}],
                    )
                except Exception as error:  # every client-visible failure counts
                    self.failures.append(repr(error))


def restart_under_load(setup: Setup) -> dict[str, Any]:
    before = (setup.edge_status() or {}).get("counters", {})
    proxy = f"http://bench-streams:meter@127.0.0.1:{setup.port}"
    with ClientLoop(setup) as loop:
        time.sleep(2.0)
        streams = Streams(proxy, setup.bundle, events=100).start()
        started = time.monotonic()
        done = setup.meter("restart")
        took = time.monotonic() - started
        time.sleep(3.0)
        streams.join(120)
    after = (setup.edge_status() or {}).get("counters", {})
    deadline = time.monotonic() + 20
    while setup.rows("bench-streams") < len(streams.completed) and time.monotonic() < deadline:
        time.sleep(0.1)
    drain = json.loads((setup.home / "daemon-drain.json").read_text())
    return {
        "restart_seconds": round(took, 2),
        "restart_output": done.stderr.strip().splitlines()[:1],
        "client_requests": loop.sent,
        "restart_failed_requests": len(loop.failures),
        "failures": loop.failures[:5],
        "restart_streams_completed": len(streams.completed),
        "stream_errors": streams.errors[:5],
        "stream_rows": setup.rows("bench-streams"),
        "restart_unmetered_connections": after.get("fallbacks", 0) - before.get("fallbacks", 0),
        "old_daemon_drain": drain,
    }


def standby_ready(setup: Setup, name: str, limit: float = 60.0) -> bool:
    """Wait until the guard's standby for `name` has done its imports (guard.py)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if setup.state("guard.json").get("standby", {}).get(name, {}).get("ready"):
                return True
        time.sleep(0.1)
    return False


def respawn_times(setup: Setup) -> dict[str, Any]:
    """kill -9 of the edge, then of the daemon, each once its standby is ready; while the edge
    is dead a client connects every 5 ms (each refusal counted)."""
    edge_standby = standby_ready(setup, "edge")
    edge = setup.state("edge.json")["pid"]
    os.kill(edge, signal.SIGKILL)
    killed = time.monotonic()
    refused = 0
    while True:
        try:
            answer = setup.edge_status(timeout=5.0)
        except ConnectionRefusedError:
            answer = None
        if answer is None:
            refused += 1  # edge_status swallows the error: any failure counts
        elif answer.get("pid") != edge:
            break
        time.sleep(0.005)
    edge_back = time.monotonic() - killed
    daemon_standby = standby_ready(setup, "daemon")
    time.sleep(1.0)
    daemon = setup.state("daemon.json")["pid"]
    os.kill(daemon, signal.SIGKILL)
    killed = time.monotonic()
    while True:
        try:
            fresh = setup.state("daemon.json")["pid"] != daemon
        except (OSError, ValueError):
            fresh = False
        if fresh:
            try:
                with socket.create_connection(("127.0.0.1", setup.internal), timeout=0.2):
                    break
            except OSError:
                pass
        time.sleep(0.005)
    daemon_back = time.monotonic() - killed
    guard = json.loads(setup.meter("status", "--json").stdout).get("guard")
    return {
        "edge_back_seconds": round(edge_back, 3),
        "edge_refused_connections": refused,
        "daemon_back_seconds": round(daemon_back, 3),
        "standby_ready": {"edge": edge_standby, "daemon": daemon_standby},
        "guard": guard,
    }


def verdict(name: str, value: float) -> str:
    target = TARGETS[name]
    if name.endswith("_seconds"):
        return "ok" if value < target else "MISSED"
    if name == "restart_streams_completed":
        return "ok" if value >= target else "MISSED"
    return "ok" if value <= target else "MISSED"


def background_load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fail_open.json")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fail-open-"))
    setup = Setup(work)
    try:
        figures: dict[str, Any] = {"load_average_1min": round(background_load(), 2)}
        figures["restart"] = restart_under_load(setup)
        figures["respawn"] = respawn_times(setup)
    finally:
        setup.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    figures["load_average_1min_after"] = round(background_load(), 2)
    flat = {**figures["restart"], **figures["respawn"]}
    print(
        f"load average (1 min): {figures['load_average_1min']} before, "
        f"{figures['load_average_1min_after']} after"
    )
    for name in TARGETS:
        value = flat[name]
        print(f"{name:34} {value!s:>8}  target {TARGETS[name]!s:>5}  {verdict(name, value)}")
    print(f"{'client_requests':34} {flat['client_requests']!s:>8}")
    print(f"{'stream_rows':34} {flat['stream_rows']!s:>8}")
    drain = flat["old_daemon_drain"]
    print(
        f"old daemon's drain: {drain['calls']} calls, {drain['finished']} finished, "
        f"{drain['cut']} cut, {drain['seconds']} s (handed over: {drain['handed_over']})"
    )
    figures["targets"] = TARGETS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
