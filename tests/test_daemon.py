"""The daemon as a process: start-up failures, the CA, shutdown under load, upstream proxy."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import threading
import time
from pathlib import Path

import httpx2
from cryptography import x509

from tests.conftest import METER, FakeUpstream, start_meter, wait_for
from tests.fakeupstream import catalog
from tests.fakeupstream.client import FakeUpstreamControl


def test_busy_port_fails_with_advice(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    (tmp_path / "config.toml").write_text(f"[daemon]\nproxy_port = {port}\n")
    env = {**os.environ, "HALTON_METER_HOME": str(tmp_path)}
    done = subprocess.run([METER, "daemon"], env=env, capture_output=True, text=True, timeout=60)
    holder.close()
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr and "proxy_port" in done.stderr


def test_ca_is_private_named_and_reused(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    first = start_meter(tmp_path, fake_upstream)
    assert first.stop() == 0
    folder = tmp_path / "mitmproxy"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "mitmproxy-ca.pem").stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate((folder / "mitmproxy-ca-cert.pem").read_bytes())
    assert "Halton Meter" in certificate.subject.rfc4514_string()
    second = start_meter(tmp_path, fake_upstream)
    assert second.stop() == 0
    again = x509.load_pem_x509_certificate((folder / "mitmproxy-ca-cert.pem").read_bytes())
    assert again.fingerprint(again.signature_hash_algorithm) == certificate.fingerprint(  # type: ignore[arg-type]
        certificate.signature_hash_algorithm  # type: ignore[arg-type]
    )
    assert not (tmp_path / "daemon.json").exists()  # removed on a clean stop


def test_sigterm_under_load_loses_no_row(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    marker = f"sigterm-{time.monotonic_ns()}"  # the fake is shared: count only our requests
    meter = start_meter(tmp_path, fake_upstream)
    context = ssl.create_default_context(cafile=str(meter.bundle))
    completed: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def client(worker: int) -> None:
        with httpx2.Client(
            proxy=f"http://load@127.0.0.1:{meter.port}", verify=context, timeout=10
        ) as http:
            while not stop.is_set():
                try:
                    response = http.post(
                        "https://api.anthropic.com/v1/messages",
                        headers={
                            "x-fake-delay-ms": "5",
                            "x-fake-events": "4",
                            "x-test-marker": marker,
                        },
                        json={
                            "model": "claude-sonnet-4-5",
                            "max_tokens": 8,
                            "stream": True,
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    )
                except httpx2.HTTPError as error:
                    errors.append(repr(error))
                    return
                if response.status_code == 200 and b"message_stop" in response.content:
                    completed.append(worker)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(completed) >= 100 or errors, 60, "100 completed calls")
    assert not errors
    meter.process.send_signal(signal.SIGTERM)
    assert meter.process.wait(timeout=30) == 0
    stop.set()
    for thread in threads:
        thread.join(15)
    con = sqlite3.connect(meter.ledger)
    rows, complete = con.execute("SELECT COUNT(*), SUM(tokens_complete) FROM requests").fetchone()
    # Every call whose full response reached the client has its complete row, and every call
    # the upstream saw has a row (those cut by the shutdown are incomplete, not missing).
    assert complete >= len(completed)
    seen = FakeUpstreamControl(fake_upstream.port, fake_upstream.pki).requests()
    upstream_saw = sum(1 for r in seen if r["headers"].get("x-test-marker") == marker)
    assert upstream_saw >= len(completed)
    assert rows >= upstream_saw


def test_call_in_flight_at_shutdown_gets_its_row(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """A call still running when the drain ends (here after 1 s; the stream takes 12 s) is cut
    and recorded as cut; the drain report says so."""
    meter = start_meter(tmp_path, fake_upstream, daemon_extra="drain_seconds = 1")
    context = ssl.create_default_context(cafile=str(meter.bundle))
    got_first = threading.Event()

    def slow_stream() -> None:
        with (
            httpx2.Client(
                proxy=f"http://slow:meter@127.0.0.1:{meter.port}", verify=context, timeout=30
            ) as http,
            http.stream(
                "POST",
                "https://api.anthropic.com/v1/messages",
                headers={"x-fake-delay-ms": "300", "x-fake-events": "40"},
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 8,
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            ) as response,
        ):
            try:
                for _ in response.iter_bytes():
                    got_first.set()
            except httpx2.HTTPError:
                pass

    thread = threading.Thread(target=slow_stream)
    thread.start()
    assert got_first.wait(15)
    meter.process.send_signal(signal.SIGTERM)
    assert meter.process.wait(timeout=30) == 0
    thread.join(15)
    (row,) = meter.rows("slow")
    assert (row["tokens_complete"], row["status"], row["error_class"]) == (0, "error", "network")
    assert row["input_tokens"] == catalog.ANTHROPIC_USAGE["input_tokens"]  # what had arrived
    report = json.loads((tmp_path / "daemon-drain.json").read_text())
    assert (report["calls"], report["finished"], report["cut"]) == (1, 0, 1), report
    assert 1.0 <= report["seconds"] < 3.0 and report["limit"] == 1.0, report


def _corporate_proxy(upstream_port: int, seen: list[tuple[str, str]]) -> tuple[int, socket.socket]:
    """A tiny CONNECT proxy with Basic auth that sends every tunnel to the fake upstream."""
    server = socket.create_server(("127.0.0.1", 0))

    def pipe(a: socket.socket, b: socket.socket) -> None:
        sockets = [a, b]
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (b if source is a else a).sendall(data)

    def handle(client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        lines = head.decode().split("\r\n")
        target = lines[0].split()[1]
        auth = next(
            (
                line.split(":", 1)[1].strip()
                for line in lines
                if line.lower().startswith("proxy-authorization:")
            ),
            "",
        )
        seen.append((target, auth))
        upstream = socket.create_connection(("127.0.0.1", upstream_port))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipe(client, upstream)
        client.close()
        upstream.close()

    def accept() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], server


def test_upstream_proxy_carries_intercepted_and_tunnelled_traffic(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    seen: list[tuple[str, str]] = []
    port, server = _corporate_proxy(fake_upstream.port, seen)
    home = tmp_path / "home"
    meter = start_meter(
        home, fake_upstream, upstream_extra=f'proxy = "http://alice:s3cret@127.0.0.1:{port}"'
    )
    try:
        for url in ("https://api.openai.com/v1/embeddings", "https://example.org/"):
            done = subprocess.run(
                [
                    METER,
                    "run",
                    "-p",
                    "corp",
                    "--",
                    "curl",
                    "-sS",
                    "-o",
                    os.devnull,
                    url,
                    "--data",
                    '{"model":"m","input":"x"}',
                ],
                env=meter.run_env(),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
        meter.wait_rows("corp", 1)
    finally:
        meter.stop()
        server.close()
    expected_auth = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert ("api.openai.com:443", expected_auth) in seen
    assert ("example.org:443", expected_auth) in seen


def test_upstream_proxy_gets_its_own_credentials_on_plain_http(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """A plain-HTTP request carries the project in Proxy-Authorization to the meter; the
    corporate proxy must get the corporate credentials instead, and the project must stick."""
    seen: list[tuple[str, str]] = []
    port, server = _corporate_proxy(fake_upstream.port, seen)
    meter = start_meter(
        tmp_path / "home",
        fake_upstream,
        upstream_extra=f'proxy = "http://alice:s3cret@127.0.0.1:{port}"',
    )
    try:
        subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                os.devnull,
                "--max-time",
                "5",
                "--proxy",
                f"http://acme:meter@127.0.0.1:{meter.port}",
                "http://example.org/",
            ],
            capture_output=True,
            timeout=30,
        )
    finally:
        meter.stop()
        server.close()
    expected_auth = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert seen and all(auth == expected_auth for _, auth in seen)


def test_sigint_also_stops_cleanly(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    meter = start_meter(tmp_path, fake_upstream)
    meter.process.send_signal(signal.SIGINT)
    assert meter.process.wait(timeout=30) == 0
    assert not (tmp_path / "daemon.json").exists()


def test_listens_on_loopback_only(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    meter = start_meter(tmp_path, fake_upstream)
    try:
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{meter.port}"], capture_output=True, text=True
        )
        if listening.returncode == 0 and listening.stdout.strip():
            addresses = {line.split()[3] for line in listening.stdout.splitlines()}
            assert addresses == {f"127.0.0.1:{meter.port}"}
        else:  # no ss here: check with psutil instead
            import psutil

            local = {
                c.laddr
                for c in psutil.net_connections("tcp")
                if c.status == "LISTEN" and c.laddr.port == meter.port
            }
            assert {address.ip for address in local} == {"127.0.0.1"}
    finally:
        meter.stop()
