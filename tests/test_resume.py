"""After an outage, metering resumes on pooled connections, and the gap stays visible.

Real processes throughout: the edge, the daemon (killed with SIGKILL and started again), the
TLS fake provider, and real pooled clients (the Anthropic and OpenAI Python SDKs on one httpx
pool each, the Anthropic TypeScript SDK on undici's pool) making calls with a think time
between them, as an agent does. Each call is marked with its own User-Agent, so its row (or
its absence) is known exactly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from halton_meter.edge.resume import Watched, offers_only_http1
from halton_meter.ledger.db import connect
from halton_meter.ledger.spans import holes, ingest
from halton_meter.ledger.spans import spans as span_rows
from halton_meter.lifecycle.environment import meter_environment
from halton_meter.unmetered import (
    SPOOL_FILE,
    TAKEN_SETTLE_SECONDS,
    UnmeteredConnection,
    append,
)
from tests.conftest import METER, ROOT, FakeUpstream, Meter, free_port, wait_for
from tests.test_edge import EdgeProcess, clean_env, start_daemon, start_edge

NODE_DIR = ROOT / "tests" / "node"
RECOVERY = 2.0  # every call sent this long after the daemon is back must have its row


@dataclass
class Stack:
    daemon: Meter
    edge: EdgeProcess
    restarted: float = 0.0  # when the daemon was started again

    def kill_daemon(self) -> None:
        self.daemon.process.kill()
        self.daemon.process.wait()

    def start_daemon(self) -> float:
        """Start the daemon again; the moment it accepts connections (measured after it
        published daemon.json, so a little late)."""
        self.restarted = time.time()
        self.daemon.process = start_daemon(self.daemon.home, self.daemon.port)

        def listening() -> float:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.daemon.port), timeout=0.2),
            ):
                return time.time()
            return 0.0

        back: float = wait_for(listening, 10, "the daemon to listen again")
        return back

    def rows_by_agent(self) -> dict[str, dict[str, Any]]:
        con = sqlite3.connect(self.daemon.ledger)
        con.row_factory = sqlite3.Row
        try:
            found = con.execute("SELECT * FROM requests").fetchall()
        except sqlite3.OperationalError:
            return {}
        finally:
            con.close()
        return {row["user_agent"]: dict(row) for row in found}

    def spans(self) -> list[dict[str, Any]]:
        con = sqlite3.connect(self.daemon.ledger)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM unmetered_spans")]
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()


@pytest.fixture
def stack(fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Stack]:
    internal = free_port()
    home = tmp_path / "home"
    edge = start_edge(home, internal, fake_upstream)
    daemon = Meter(home, internal, start_daemon(home, internal), home / "daemon.log")
    yield Stack(daemon, edge)
    assert edge.stop() == 0
    daemon.stop()


def load_env(stack: Stack, project: str) -> dict[str, str]:
    home, port = stack.edge.home, stack.edge.port
    return meter_environment(clean_env(home), port, stack.daemon.bundle, project)


@dataclass
class Client:
    process: subprocess.Popen[str]
    out: Path

    def calls(self) -> list[dict[str, Any]]:
        lines = self.out.read_text().splitlines() if self.out.exists() else []
        return sorted((json.loads(line) for line in lines), key=lambda c: c["sent"])

    def finish(self) -> list[dict[str, Any]]:
        _, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, err
        return self.calls()


def outage(
    stack: Stack, clients: list[Client], stop: Path, after: float = RECOVERY + 4.0
) -> tuple[float, float]:
    """Load until each client made 6 calls, kill -9 the daemon, 3 s without it, start it again
    (tens of seconds on a busy machine), `after` s more; (killed at, back at)."""
    for client in clients:

        def busy(client: Client = client) -> bool:
            assert client.process.poll() is None, client.process.communicate()
            return len(client.calls()) >= 6

        wait_for(busy, 60, "the clients to make calls")
    killed = time.time()
    stack.kill_daemon()
    time.sleep(3.0)
    back = stack.start_daemon()
    time.sleep(after)
    stop.touch()
    return killed, back


def check_calls(
    stack: Stack,
    calls: list[dict[str, Any]],
    killed: float,
    back: float,
    recovery: float = RECOVERY,
) -> dict[str, Any]:
    """No call failed but a stream the kill cut after its answer had begun (SIGKILL gives the
    daemon no drain, and no client retries a body half received); the only calls the SDK had
    to retry were cut by the kill itself (in flight on the daemon, or sent on a pooled
    connection to it as it died), none when the edge closed tunnels for metering to resume;
    every call sent `recovery` s after the daemon was back has its row."""
    failed = [c for c in calls if c["error"]]
    cut_by_kill = [
        c
        for c in failed
        if c["stream"] and c["sent"] <= killed <= c["ended"] and "incomplete" in c["error"]
    ]
    assert failed == cut_by_kill, failed
    retried = [c for c in calls if c["attempts"] > 1]
    at_kill = [c for c in retried if c["sent"] <= killed + 1.0 and c["ended"] >= killed]
    # While the edge tunnels, nothing is retried; after the daemon is back a call written in
    # the very instant the edge closes its idle connection is retried by the SDK (it never
    # reached the provider): counted, and measured in bench/pooled_resume.py.
    assert all(c in at_kill or c["sent"] >= back for c in retried), retried
    at_resume = [c for c in retried if c not in at_kill]
    after = [c for c in calls if c["sent"] >= back + recovery]
    deadline = time.monotonic() + 15
    while True:
        rows = stack.rows_by_agent()
        missing = [c for c in after if c["marker"] not in rows]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    summary = [(round(c["sent"] - back, 2), c.get("port"), c["marker"] in rows) for c in calls]
    if missing:
        print("MISSING", json.dumps([summary, stack.edge.status()["unmetered"]]))
    assert not missing, missing
    during = [c for c in calls if killed + 1.0 <= c["sent"] and c["ended"] < stack.restarted]
    assert len(during) >= 4 and len(after) >= 4, (len(during), len(after))
    assert not [c for c in during if c["marker"] in rows]  # nothing could be metered then
    metered_at = sorted(c["sent"] for c in calls if c["sent"] >= back and c["marker"] in rows)
    unmetered_after = [c for c in calls if c["sent"] >= back and c["marker"] not in rows]
    return {
        "calls": len(calls),
        "retried_at_the_kill": len(at_kill),
        "retried_at_resume": len(at_resume),
        "during": len(during),
        "after_recovery": len(after),
        "unmetered_after_back": len(unmetered_after),
        "last_unmetered_after_back": max((c["sent"] - back for c in unmetered_after), default=None),
        "first_metered_after_back": (metered_at[0] - back) if metered_at else None,
    }


def unmetered_connections(calls: list[dict[str, Any]], rows: dict[str, Any]) -> set[int]:
    """The client's connections (local ports) that carried no metered call."""
    ports: dict[int, bool] = {}
    for call in calls:
        port = call.get("port")
        if port is None:  # failed before it had a connection's answer (cut by the kill)
            continue
        ports[port] = ports.get(port, False) or call["marker"] in rows
    return {port for port, metered in ports.items() if not metered}


def python_client(stack: Stack, kind: str, project: str, stop: Path, *options: str) -> Client:
    out = stop.parent / f"{kind}.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.clients.pooled_load",
            kind,
            "--stop",
            str(stop),
            "--out",
            str(out),
            *options,
        ],
        env=load_env(stack, project),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Client(process, out)


def test_python_sdk_pools_resume_metering_after_kill_9(
    stack: Stack, project: str, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    clients = [python_client(stack, kind, project, stop) for kind in ("anthropic", "openai")]
    killed, back = outage(stack, clients, stop)
    calls = {
        kind: client.finish() for kind, client in zip(("anthropic", "openai"), clients, strict=True)
    }
    seen = {kind: check_calls(stack, found, killed, back) for kind, found in calls.items()}
    print(json.dumps(seen, indent=2))

    # The spans: one per connection that carried unmetered calls, to the right host. The
    # clients closed their pools, so every span is closed and spooled by now.
    rows = stack.rows_by_agent()
    truth = {
        "api.anthropic.com": unmetered_connections(calls["anthropic"], rows),
        "api.openai.com": unmetered_connections(calls["openai"], rows),
    }
    assert all(truth.values()), truth
    expected = sum(len(ports) for ports in truth.values())
    spans = wait_for(
        lambda: len(s := stack.spans()) >= expected and s, 15, f"{expected} unmetered spans"
    )
    time.sleep(0.5)
    spans = stack.spans()
    by_host = {host: [s for s in spans if s["host"] == host] for host in truth}
    assert {host: len(found) for host, found in by_host.items()} == {
        host: len(ports) for host, ports in truth.items()
    }, spans
    assert all(s["port"] == 443 and s["kind"] == "tunnel" for s in spans)
    assert all(s["closed_at"] and s["bytes_up"] > 0 and s["bytes_down"] > 0 for s in spans)
    assert all(s["opened_at"] >= iso(killed - 0.1) for s in spans)
    # The connections the edge closed for metering to resume (the clients had their pools
    # open until the end).
    assert any(s["closed_by"] == "resumed" for s in spans), spans
    status = stack.edge.status()["unmetered"]
    assert status["open"] == 0 and status["resumed"] >= 1
    shown_everywhere(stack, {host: len(ports) for host, ports in truth.items()})


BUSY_RESUME = 8.0  # a pool with 40-80 ms between calls is metered again within this (resume.py)


@pytest.mark.parametrize("stream_pause_ms", [0, 50])
def test_a_busy_pool_resumes_metering_within_a_bounded_time(
    stack: Stack, project: str, tmp_path: Path, stream_pause_ms: int
) -> None:
    """Pools never quiet for RESUME_QUIET: 4 workers (an SDK client each), 40-80 ms between
    one's calls, no SDK retries (so a call the edge's close cut would show as a failure). The
    quiet a due tunnel needs shrinks (QUIET_HALVING, BUSY_QUIET), so its tunnels are closed
    between two calls and every call sent BUSY_RESUME s after the daemon is back is metered;
    none fails but one the close met before it was answered (never forwarded; SDKs retry it).
    (One pool shared by the workers keeps its first connection busy back to back,
    with gaps under a millisecond: that one stays unmetered, bench/pooled_resume.py --busy.)
    With streams that pause 50 ms between events (every second call), the quiet never shrinks
    below 3 x 50 ms on a connection that carried one, more than the pool ever leaves: no stream
    is cut, and such connections stay unmetered (visible as spans) until the pool slows."""
    stop = tmp_path / "stop"
    options = ("--think", "0.04", "0.08", "--retries", "0", "--pool-per-worker")
    options += ("--stream-pause-ms", str(stream_pause_ms))
    client = python_client(stack, "anthropic", project, stop, *options)
    killed, back = outage(stack, [client], stop, after=BUSY_RESUME + 4.0)
    calls = client.finish()
    failed = [c for c in calls if c["error"]]
    # Without retries, a call in flight on a connection to the daemon as it was killed fails
    # (the SDK would retry it): the kill's, not the resume's.
    cut_by_kill = [c for c in failed if c["sent"] <= killed + 1.0 and c["ended"] >= killed]
    # A call written in the very instant the edge closes its idle connection gets no answer at
    # all: it never reached the provider (no row below, nothing billed), and every SDK retries
    # it by default (retries are off here only so that a cut answer would show). A stream cut
    # mid-answer, or any other failure, is a defect.
    unanswered = [
        c for c in failed if c not in cut_by_kill and "without sending a response" in c["error"]
    ]
    assert len(failed) == len(cut_by_kill) + len(unanswered), failed
    deadline = time.monotonic() + 15
    while True:
        rows = stack.rows_by_agent()
        after = [c for c in calls if c["sent"] >= back + BUSY_RESUME]
        missing = [c for c in after if c["marker"] not in rows]
        if stream_pause_ms or not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not [c for c in unanswered if c["marker"] in rows], unanswered  # never forwarded
    after = [c for c in after if c not in unanswered]  # the SDK's retry would be metered
    missing = [c for c in missing if c not in unanswered]
    unmetered_after = [
        c["sent"] - back for c in calls if c["sent"] >= back and c["marker"] not in rows
    ]
    by_port: dict[int, list[dict[str, Any]]] = {}
    for call in calls:
        by_port.setdefault(call.get("port") or 0, []).append(call)
    gaps = sorted(
        b["sent"] - a["ended"] for same in by_port.values() for a, b in itertools.pairwise(same)
    )
    print(
        f"\nbusy pool (streams pause {stream_pause_ms} ms): {len(calls)} calls, "
        f"{len(failed)} failed ({len(cut_by_kill)} by the kill), "
        f"last unmetered call sent {max(unmetered_after, default=0):.2f} s after the daemon was "
        f"back (bound {BUSY_RESUME} s), resumed {stack.edge.status()['unmetered']['resumed']}, "
        f"median gap on a connection {gaps[len(gaps) // 2] * 1000 if gaps else 0:.0f} ms"
    )
    assert len(after) >= 20
    if stream_pause_ms:
        return  # no failure above is the point
    assert not missing, missing
    assert max(unmetered_after, default=0) >= 0.25  # the pool was busy: not resumed at once


def shown_everywhere(stack: Stack, expected: dict[str, int]) -> None:
    """`report` (text and --json), `requests`, the API and /metrics show the holes."""
    env = clean_env(stack.edge.home)

    def run(*argv: str) -> str:
        done = subprocess.run([METER, *argv], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    text = " ".join(run("report", "--since", "1h").split())
    for host, count in expected.items():
        assert f"not metered: {count} connection{'s' * (count != 1)} to {host} between" in text
    answer = json.loads(run("report", "--since", "1h", "--json"))
    assert answer["complete"] is False
    assert {h["host"]: h["connections"] for h in answer["unmetered"]} == expected
    assert "not metered:" in run("requests", "--since", "1h", "--limit", "1000")
    assert json.loads(run("report", "--from", "2000-01-01", "--to", "2000-01-02", "--json"))[
        "complete"
    ]
    config = (stack.edge.home / "config.toml").read_text()
    api = f"http://127.0.0.1:{config.split('api_port = ')[1].split()[0]}"
    with urllib.request.urlopen(f"{api}/v1/unmetered?since=1h", timeout=10) as response:
        body = json.load(response)
    assert body["complete"] is False
    assert {h["host"]: h["connections"] for h in body["holes"]} == expected
    assert len(body["spans"]) == sum(expected.values())
    with urllib.request.urlopen(f"{api}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    for host, count in expected.items():
        assert f'halton_meter_unmetered_connections_total{{host="{host}"}} {count}' in metrics


def iso(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").exists(),
    reason="node and the npm test clients are installed by ./scripts/test",
)
def test_undici_pool_resumes_metering_after_kill_9(
    stack: Stack, project: str, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    out = tmp_path / "node.jsonl"
    process = subprocess.Popen(
        ["node", str(NODE_DIR / "pooled_load.mjs"), str(stop), str(out)],
        env=load_env(stack, project),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = Client(process, out)
    killed, back = outage(stack, [client], stop)
    calls = client.finish()
    seen = check_calls(stack, calls, killed, back)
    print(json.dumps(seen, indent=2))
    spans = wait_for(lambda: stack.spans(), 15, "unmetered spans")
    assert {s["host"] for s in spans} == {"api.anthropic.com"}


def test_curl_keep_alive_resumes_metering(stack: Stack, project: str, tmp_path: Path) -> None:
    """curl reusing one connection for a list of calls (HTTP/1.1: the edge leaves tunnels
    that offer HTTP/2 open, see edge/resume.py): it opens a new one when the edge closes the
    idle tunnel, and no transfer fails."""
    stack.kill_daemon()
    body = json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    # --next starts each transfer's options afresh; --rate is global, the connection is kept.
    # 2/s leaves ~0.5 s between calls, more than the edge's quiet period.
    proxy = f"http://{project}:meter@127.0.0.1:{stack.edge.port}"
    args = ["curl", "-sS", "--rate", "2/s"]
    for number in range(400):
        args += ["--http1.1", "--proxy", proxy, "--cacert", str(stack.daemon.bundle)]
        args += ["-o", os.devnull, "-w", f"%{{stderr}}{number} %{{http_code}} %{{num_connects}}\\n"]
        args += ["-H", f"User-Agent: curl-load/{number}", "-H", "content-type: application/json"]
        args += ["--data", body, "https://api.anthropic.com/v1/messages", "--next"]
    process = subprocess.Popen(
        args[:-1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(stack.edge.home),
    )
    lines: list[tuple[float, list[str]]] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:  # -w writes there, unbuffered; so do curl's errors
            lines.append((time.time(), line.split()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: len(lines) >= 8, 30, "curl's first transfers")
    back = stack.start_daemon()
    wait_for(lambda: lines and lines[-1][0] > back + RECOVERY + 3, 60, "transfers after recovery")
    process.terminate()
    process.wait(10)
    reader.join(5)
    assert all(len(words) == 3 and words[1] == "200" for _, words in lines), lines
    late = [n for at, (n, _, _) in lines if at - 0.25 > back + RECOVERY]
    assert late
    rows = wait_for(
        lambda: (r := stack.rows_by_agent()) and all(f"curl-load/{n}" in r for n in late) and r,
        15,
        "a row for every transfer after the recovery",
    )
    unmetered = [n for _, (n, _, _) in lines if f"curl-load/{n}" not in rows]
    assert len(unmetered) >= 4  # while the daemon was away, on the one connection
    # One new connection after the daemon was back: the edge closed the idle tunnel.
    assert sum(int(c) for _, (_, _, c) in lines) == 2, lines


# --- the rules, piece by piece ----------------------------------------------------------------


def client_hellos(alpns: list[list[str] | None]) -> list[bytes]:
    """Real ClientHellos from Python's ssl, one per ALPN list (None: no ALPN extension)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    seen: list[bytes] = []

    def accept() -> None:
        for _ in alpns:
            conn, _ = server.accept()
            with conn:
                seen.append(conn.recv(65536))

    thread = threading.Thread(target=accept)
    thread.start()
    for alpn in alpns:
        context = ssl.create_default_context()
        if alpn:
            context.set_alpn_protocols(alpn)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(0.5)
            with contextlib.suppress(OSError):
                context.wrap_socket(sock, server_hostname="api.anthropic.com")
    thread.join(10)
    server.close()
    return seen


def test_only_tunnels_that_cannot_be_http2_are_closed() -> None:
    http1, both, none = client_hellos([["http/1.1"], ["h2", "http/1.1"], None])
    assert offers_only_http1(http1)
    assert not offers_only_http1(both)
    assert offers_only_http1(none)  # HTTP/2 over TLS needs ALPN
    assert not offers_only_http1(http1[:60])  # a hello split over reads: left open
    assert not offers_only_http1(b"GET / HTTP/1.1\r\n\r\n")


def watched(hello: bytes) -> tuple[Watched, tuple[socket.socket, socket.socket]]:
    """A watched connection past its handshake; the edge's end of the client socket is the
    pair's first (the test writes into the second as the client)."""
    record = UnmeteredConnection("x", "api.anthropic.com", 443, "tunnel", 0.0, 0.0)
    pair = socket.socketpair()
    item = Watched(record, lambda: None, pair[0].fileno())
    item.up(hello)
    item.down(b"s" * 4000)  # ServerHello, certificate
    return item, pair


def test_the_quiet_a_due_tunnel_needs_halves_every_two_seconds_to_30_ms() -> None:
    """Published figures (docs/architecture.md): 0.25 s, halving every 2 s once due, 30 ms at
    least, never below 3x the longest pause seen inside an answer."""
    (hello,) = client_hellos([["http/1.1"]])
    item, pair = watched(hello)
    with pair[0], pair[1]:
        assert item.quiet_needed(100.0, 0.25) == 0.25  # not due yet
        item.due_since = 100.0
        expected = {100.0: 0.25, 102.0: 0.125, 104.0: 0.0625, 106.0: 0.03125, 108.0: 0.03}
        for now, quiet in expected.items():
            assert abs(item.quiet_needed(now, 0.25) - quiet) < 1e-9, (now, quiet)
        assert item.quiet_needed(1000.0, 0.25) == 0.03
        item.pause = 0.02  # a stream that pauses 20 ms between events: 60 ms
        assert abs(item.quiet_needed(1000.0, 0.25) - 0.06) < 1e-9
        # A busy due tunnel at rest after 40 ms of quiet, not after 20 ms.
        item.pause = 0.0
        item.up(b"q" * 400)  # a request
        item.down(b"a" * 2000)  # its answer
        now = item.last_down
        item.due_since = now - 60.0
        assert not item.at_rest(now + 0.02, 0.25)
        assert item.at_rest(now + 0.04, 0.25)


def test_a_waiting_call_is_never_at_rest_and_an_answered_one_is() -> None:
    (hello,) = client_hellos([["http/1.1"]])
    item, pair = watched(hello)
    item.up(b"f" * 64 + b"r" * 600)  # Finished, then the first request
    item.down(b"t" * 500)  # TLS 1.3 session tickets
    later = time.monotonic() + 60
    assert not item.at_rest(later, 0.25)  # the call still waits for its answer
    item.down(b"a" * 2000)  # the answer
    assert not item.at_rest(time.monotonic(), 0.25)  # not quiet yet
    assert item.at_rest(time.monotonic() + 0.3, 0.25)
    item.up(b"w" * 40)  # an HTTP/2-style WINDOW_UPDATE: still at rest
    assert item.at_rest(time.monotonic() + 0.3, 0.25)
    item.up(b"r" * 600)  # the next request: waiting again
    assert not item.at_rest(time.monotonic() + 60, 0.25)
    # A stream that paused 0.2 s inside its answer waits 3 x 0.2 s of quiet.
    item.down(b"e" * 100)
    time.sleep(0.2)
    item.down(b"e" * 100)
    assert not item.at_rest(time.monotonic() + 0.4, 0.25)
    assert item.at_rest(time.monotonic() + 0.8, 0.25)
    # Unread bytes from the client (a request on its way): not now.
    pair[1].send(b"x")
    assert not item.at_rest(time.monotonic() + 5, 0.25)
    for end in pair:
        end.close()


def test_an_http2_tunnel_is_never_closed() -> None:
    (hello,) = client_hellos([["h2", "http/1.1"]])
    item, pair = watched(hello)
    item.up(b"r" * 600)
    item.down(b"a" * 5000)
    assert not item.at_rest(time.monotonic() + 60, 0.25)
    for end in pair:
        end.close()


def test_spool_lines_are_stored_once_with_their_last_counts(tmp_path: Path) -> None:
    progress = UnmeteredConnection("e-1", "api.openai.com", 443, "tunnel", 1000.0, 1010.0, 5, 7)
    final = UnmeteredConnection(
        "e-1", "api.openai.com", 443, "tunnel", 1000.0, 1020.0, 9, 70, 1021.0, "resumed"
    )
    other = UnmeteredConnection("e-2", "api.openai.com", 443, "tunnel", 1005.0, 1006.0, 1, 2)
    for item in (progress, other, final):
        assert append(tmp_path, item)
    (tmp_path / SPOOL_FILE).open("ab").write(b'{"id": "broken"\n')
    con = connect(tmp_path / "db.sqlite")
    assert ingest(con, tmp_path) == 0  # renamed now, stored a round later
    assert not (tmp_path / SPOOL_FILE).exists()
    time.sleep(TAKEN_SETTLE_SECONDS + 0.1)
    assert append(tmp_path, progress)  # an old line again, in a new spool
    assert ingest(con, tmp_path) == 3
    time.sleep(TAKEN_SETTLE_SECONDS + 0.1)
    assert ingest(con, tmp_path) == 1
    rows = {r["id"]: r for r in span_rows(con, None, None)}
    assert set(rows) == {"e-1", "e-2"}
    assert (rows["e-1"]["bytes_up"], rows["e-1"]["bytes_down"]) == (9, 70)
    assert rows["e-1"]["closed_by"] == "resumed" and rows["e-2"]["closed_at"] is None
    (hole,) = holes(con, None, None)
    assert (hole.connections, hole.bytes_up + hole.bytes_down, hole.open) == (2, 82, 1)
    assert hole.describe(today="1970-01-01") == (
        "2 connections to api.openai.com between 00:16 and 00:17 UTC, 82 B"
    )
    assert holes(con, "1970-01-01T00:20:00.000Z", None) == []
    con.close()
