"""The edge, for real: its own process in front of a real daemon, a fake provider behind both.

Edge and daemon share one home and one config.toml, as installed: the daemon runs with
`--behind-edge`, so it listens on [daemon] internal_port. Both reach the fake under the real
provider names through `[upstream] resolve`. Clients trust the daemon's ca-bundle.pem, which
holds the meter's CA and the fake's test CA, so a request succeeds whether the edge handed it
to the daemon or tunnelled it straight to the fake.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from halton_meter.edge.health import DaemonHealth
from halton_meter.edge.wire import WireError, parse_request
from tests.conftest import (
    METER,
    ROOT,
    UPSTREAM_HOSTS,
    FakeUpstream,
    Meter,
    free_port,
    wait_for,
)

CHAT = {"model": "gpt-4.1", "stream": False, "messages": [{"role": "user", "content": "hi"}]}
PLAIN_HOSTS = ("plain.test", "plain-two.test")


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_HOME"] = str(home)
    return env


# --- processes -----------------------------------------------------------------------------


def start_daemon(home: Path, port: int) -> subprocess.Popen[bytes]:
    """The real daemon on `port` (its config is already written); waits until it listens."""
    (home / "daemon.json").unlink(missing_ok=True)  # a kill -9 leaves the old one behind
    log = (home / "daemon.log").open("ab")
    process = subprocess.Popen(
        [METER, "daemon", "--behind-edge"],
        env=clean_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited: {(home / 'daemon.log').read_text()}")
        return (home / "daemon.json").exists()

    wait_for(started, 30, "the daemon to start")
    return process


def write_edge_config(
    home: Path, port: int, internal_port: int, upstream: FakeUpstream, plain_port: int, extra: str
) -> None:
    resolve = [f'"{host}:443" = "127.0.0.1:{upstream.port}"' for host in UPSTREAM_HOSTS]
    resolve += [f'"{host}:80" = "127.0.0.1:{plain_port}"' for host in PLAIN_HOSTS]
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f"""[daemon]
proxy_port = {port}
internal_port = {internal_port}
api_port = {free_port()}

[upstream]
ca_bundle = "{upstream.pki.ca_cert}"
{extra}

[upstream.resolve]
{chr(10).join(resolve)}
"""
    )


@dataclass
class EdgeProcess:
    home: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.home / "logs" / "edge.jsonl"

    def status(self) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: edge\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        result: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
        return result

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [e for e in map(json.loads, lines) if e["event"] == name]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)


def start_edge(
    home: Path,
    internal_port: int,
    upstream: FakeUpstream,
    plain_port: int = 9,
    extra: str = "",
) -> EdgeProcess:
    port = free_port()
    write_edge_config(home, port, internal_port, upstream, plain_port, extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "halton_meter.edge"],
        env=clean_env(home),
        stdout=subprocess.DEVNULL,
        stderr=(home / "edge.stderr").open("wb"),
    )

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"edge exited: {(home / 'edge.stderr').read_text()}")
        return (home / "edge.json").exists()

    wait_for(started, 15, "the edge to start")
    return EdgeProcess(home, port, process)


class _Echo(BaseHTTPRequestHandler):
    """Plain-HTTP origin: answers with what it received, keep-alive."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
        payload = json.dumps(
            {
                "line": self.requestline,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
                "peer": self.client_address[1],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def plain_origin() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@dataclass
class Stack:
    daemon: Meter
    edge: EdgeProcess

    def restart_daemon(self) -> None:
        self.daemon.process = start_daemon(self.daemon.home, self.daemon.port)


@pytest.fixture(scope="module")
def stack(
    fake_upstream: FakeUpstream, plain_origin: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    internal = free_port()
    home = tmp_path_factory.mktemp("stack")
    edge = start_edge(home, internal, fake_upstream, plain_origin)
    daemon = Meter(home, internal, start_daemon(home, internal), home / "daemon.log")
    yield Stack(daemon, edge)
    assert edge.stop() == 0
    assert not (edge.home / "edge.json").exists()
    daemon.stop()


# --- clients -------------------------------------------------------------------------------


def basic(project: str) -> str:
    return "Basic " + base64.b64encode(f"{project}:meter".encode()).decode()


def https_via(
    stack: Stack, host: str, path: str, project: str, body: dict[str, Any] | None = None
) -> tuple[int, bytes, str]:
    """One request on a new connection through the edge: (status, body, certificate issuer)."""
    context = ssl.create_default_context(cafile=str(stack.daemon.bundle))
    conn = http.client.HTTPSConnection("127.0.0.1", stack.edge.port, context=context, timeout=10)
    conn.set_tunnel(host, 443, headers={"Proxy-Authorization": basic(project)})
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-test"}
        conn.request("POST" if data else "GET", path, body=data, headers=headers)
        response = conn.getresponse()
        content = response.read()
        assert conn.sock is not None
        return response.status, content, issuer_of(conn.sock)
    finally:
        conn.close()


def https_via_edge(port: int, upstream: FakeUpstream, path: str) -> tuple[int, bytes, str]:
    """A GET to api.openai.com through an edge with no daemon behind it, trusting the fake."""
    context = ssl.create_default_context(cafile=str(upstream.pki.ca_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    conn.set_tunnel("api.openai.com", 443)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert conn.sock is not None
        return response.status, response.read(), issuer_of(conn.sock)
    finally:
        conn.close()


def issuer_of(sock: socket.socket) -> str:
    cert: Any = sock.getpeercert()  # type: ignore[attr-defined]
    return str(dict(item[0] for item in cert["issuer"])["commonName"])


def raw_request(port: int, head: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
            data += chunk
    return data


def iso(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- tests ---------------------------------------------------------------------------------


def test_llm_host_is_handed_to_the_daemon_and_metered(stack: Stack, project: str) -> None:
    status, body, issuer = https_via(stack, "api.openai.com", "/v1/chat/completions", project, CHAT)
    assert status == 200, body
    assert "choices" in json.loads(body)
    assert issuer == "Halton Meter local CA"  # decrypted by the daemon, not the edge
    (row,) = stack.daemon.wait_rows(project, 1)
    assert (row["project"], row["api"], row["model"]) == (project, "chat", "gpt-4.1")
    state = stack.edge.status()
    assert state["mode"] == "metering" and state["counters"]["handed_off"] >= 1


def test_curl_through_the_edge_is_metered(stack: Stack, project: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            str(tmp_path / "out"),
            "--proxy",
            f"http://{project}:meter@127.0.0.1:{stack.edge.port}",
            "--cacert",
            str(stack.daemon.bundle),
            "https://api.anthropic.com/v1/messages",
            "-H",
            "content-type: application/json",
            "--data",
            json.dumps(
                {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 64,
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                }
            ),
        ],
        env=clean_env(stack.edge.home),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "message_stop" in (tmp_path / "out").read_text()
    (row,) = stack.daemon.wait_rows(project, 1)
    assert row["provider"] == "anthropic"


def test_other_hosts_are_tunnelled_by_the_edge(stack: Stack, project: str) -> None:
    before = stack.edge.status()["counters"]
    status, body, issuer = https_via(stack, "example.org", "/", project)
    assert (status, body) == (200, b"hello from example.org")
    assert issuer == "Halton Meter Test Upstream CA"  # the server's own certificate
    after = stack.edge.status()["counters"]
    assert after["tunnelled"] == before["tunnelled"] + 1
    assert after["handed_off"] == before["handed_off"]
    time.sleep(0.3)
    assert stack.daemon.rows(project) == []


def test_plain_http_is_forwarded_without_proxy_authorization(stack: Stack, project: str) -> None:
    accepted = stack.edge.status()["counters"]["connections"]
    conn = http.client.HTTPConnection("127.0.0.1", stack.edge.port, timeout=10)
    auth = {"Proxy-Authorization": basic(project), "X-Halton-Client": "spoofed"}
    seen = []
    for host, method, body in (
        ("plain.test", "GET", None),
        ("plain-two.test", "POST", iter([b"abc", b"def"])),  # chunked
        ("plain.test", "POST", b"x" * 300_000),
    ):
        conn.request(
            method, f"http://{host}/echo?q=1", body=body, headers=auth, encode_chunked=True
        )
        response = conn.getresponse()
        assert response.status == 200
        seen.append(json.loads(response.read()))
    conn.close()
    assert [s["line"].split()[:2] for s in seen] == [
        ["GET", "/echo?q=1"],
        ["POST", "/echo?q=1"],
        ["POST", "/echo?q=1"],
    ]
    assert [s["headers"]["host"] for s in seen] == ["plain.test", "plain-two.test", "plain.test"]
    assert all("proxy-authorization" not in s["headers"] for s in seen)
    assert all("x-halton-client" not in s["headers"] for s in seen)
    assert seen[1]["body"] == "abcdef" and len(seen[2]["body"]) == 300_000
    # One client connection carried all three requests (plus this status request's own).
    assert stack.edge.status()["counters"]["connections"] == accepted + 2


def test_own_listeners_are_refused(stack: Stack) -> None:
    edge, internal = stack.edge.port, stack.daemon.port
    for head in (
        f"CONNECT 127.0.0.1:{edge} HTTP/1.1\r\n\r\n",
        f"CONNECT localhost:{internal} HTTP/1.1\r\n\r\n",
        f"CONNECT [::ffff:127.0.0.1]:{internal} HTTP/1.1\r\n\r\n",
        f"CONNECT 127.1:{edge} HTTP/1.1\r\n\r\n",
        f"GET http://0x7f.1:{internal}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET http://2130706433:{edge}/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        assert raw_request(edge, head).startswith(b"HTTP/1.1 403"), head


def test_unreachable_target_gets_502(stack: Stack) -> None:
    closed = free_port()
    answer = raw_request(stack.edge.port, f"CONNECT 127.0.0.2:{closed} HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502")


HOSTILE_TARGETS = [
    b"\xff\xfe\x00:443",  # getaddrinfo: ValueError('embedded null character')
    b"a" * 5000 + b":443",  # the idna codec: UnicodeEncodeError (label too long)
    b"a." * 130 + b"b:443",  # a name over 253 characters
    b"a..b:443",  # an empty label (idna again)
    b"host:\xb2",  # a port of "2" superscript: str.isdigit says yes, int says no
    b"host:" + b"9" * 5000,  # over int's 4,300 digits
    b"[fe80::1%\x00]:443",
]


@pytest.mark.parametrize("target", HOSTILE_TARGETS, ids=range(len(HOSTILE_TARGETS)))
def test_hostile_connect_targets_get_400(stack: Stack, target: bytes) -> None:
    """Regression (issue 18): these CONNECTs used to end in an unhandled error and a
    connection closed without an answer."""
    for head in (
        b"CONNECT " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://" + target + b"/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", stack.edge.port), timeout=10) as sock:
            sock.sendall(head)
            data = b""
            while chunk := sock.recv(4096):  # the edge closes after answering
                data += chunk
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (head[:60], data[:200])
        assert len(data) < 1024  # the 5,000 characters are not echoed back
    assert not stack.edge.events("connection_error")
    assert stack.edge.status()["counters"]["active"] == 1  # only the status request itself


def test_killing_the_daemon_never_fails_a_request(stack: Stack, project: str) -> None:
    """kill -9 between two requests of a sequential run: every request succeeds (tunnelled
    straight to the fake while the daemon is away), and metering resumes soon after the
    daemon is back."""
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()
    turn = threading.Lock()  # held during each request: the kill lands between two

    def run() -> None:
        while not stop.is_set():
            with turn:
                began = time.time()
                try:
                    status, body, _ = https_via(
                        stack, "api.openai.com", "/v1/chat/completions", project, CHAT
                    )
                    ok = status == 200 and "choices" in json.loads(body)
                    results.append((began, 200 if ok else status, ""))
                except Exception as error:
                    results.append((began, 0, repr(error)))
            time.sleep(0.01)

    switches_before = stack.edge.status()["counters"]["switches"]
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        wait_for(lambda: len(results) >= 5, 10, "requests before the kill")
        with turn:
            stack.daemon.process.kill()
            stack.daemon.process.wait()
            killed_at = len(results)
        wait_for(lambda: len(results) >= killed_at + 10, 10, "requests while the daemon is down")
        stack.restart_daemon()

        def listening() -> float:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", stack.daemon.port), timeout=0.2),
            ):
                return time.time()
            return 0.0

        back = wait_for(listening, 10, "the daemon to listen again")
        wait_for(
            lambda: any(r["requested_at"] >= iso(back) for r in stack.daemon.rows(project)),
            5,
            "a metered row after the restart",
        )
    finally:
        stop.set()
        worker.join(15)

    failures = [r for r in results if r[1] != 200]
    assert not failures, failures
    rows = stack.daemon.rows(project)
    first = min(r["requested_at"] for r in rows if r["requested_at"] >= iso(back))
    resumed = dt.datetime.fromisoformat(first).timestamp() - back
    print(f"metering resumed {resumed:.3f} s after the daemon was back")
    assert resumed <= 1.5, f"metering resumed {resumed:.2f} s after the daemon was back"
    assert len(rows) < len(results)  # the ones while it was down went unmetered
    counters = stack.edge.status()["counters"]
    assert counters["switches"] >= switches_before + 2
    assert counters["fallbacks"] >= 10 and counters["handoff_failures"] >= 1
    modes = [e["mode"] for e in stack.edge.events("switch")]
    assert modes[-2:] == ["passthrough", "metering"]


def test_corporate_proxy_carries_the_tunnels(
    fake_upstream: FakeUpstream, tmp_path: Path, project: str
) -> None:
    from tests.test_daemon import _corporate_proxy

    seen: list[tuple[str, str]] = []
    proxy_port, server = _corporate_proxy(fake_upstream.port, seen)
    edge = start_edge(
        tmp_path,
        free_port(),  # no daemon: LLM hosts are tunnelled too
        fake_upstream,
        extra=f'proxy = "http://alice:s3cret@127.0.0.1:{proxy_port}"',
    )
    try:
        for url in ("https://example.org/", "https://api.openai.com/v1/models"):
            done = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "-o",
                    os.devnull,
                    "--proxy",
                    f"http://{project}:meter@127.0.0.1:{edge.port}",
                    "--cacert",
                    str(fake_upstream.pki.ca_cert),
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
    finally:
        assert edge.stop() == 0
        server.close()
    corporate = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert ("example.org:443", corporate) in seen
    assert ("api.openai.com:443", corporate) in seen


def test_sigterm_lets_open_tunnels_finish(
    fake_upstream: FakeUpstream, tmp_path: Path, project: str
) -> None:
    edge = start_edge(tmp_path, free_port(), fake_upstream)
    sock = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
    sock.sendall(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(fake_upstream.pki.ca_cert))
    tls = context.wrap_socket(sock, server_hostname="example.org")
    edge.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # No new connections; the open tunnel still carries a request.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", edge.port), timeout=1).close()
    tls.sendall(b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n")
    received = b""
    while chunk := tls.recv(65536):
        received += chunk
    tls.close()
    assert received.endswith(b"hello from example.org")
    assert edge.process.wait(timeout=10) == 0
    assert not (tmp_path / "edge.json").exists()
    assert [e["event"] for e in map(json.loads, edge.log.read_text().splitlines())][-1] == (
        "stopped"
    )


def test_a_busy_port_exits_1_naming_it(
    stack: Stack, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    busy = holder.getsockname()[1]
    home = tmp_path / "home"
    write_edge_config(home, busy, free_port(), fake_upstream, 9, "")
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from halton_meter.cli.edge_cmd import edge; edge()"],
            env=clean_env(home),
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
    finally:
        holder.close()
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{busy}" in done.stderr
    assert "held by another program" in done.stderr and "proxy_port" in done.stderr

    # A second edge on the same home and port: it names the running one and leaves it alone.
    second = subprocess.run(
        [sys.executable, "-m", "halton_meter.edge"],
        env=clean_env(stack.edge.home),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert second.returncode == 1
    assert f"another Halton Meter edge (pid {stack.edge.process.pid})" in second.stderr
    assert (stack.edge.home / "edge.json").exists()


class _FakeDaemon:
    """Stands in for the daemon's interception listener: records each head it is handed,
    then answers the CONNECT and echoes (or, with `hang_up`, closes without a word)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.heads: list[bytes] = []
        self.hang_up = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                head += chunk
            if not head or self.hang_up:
                return  # a probe, or a daemon that dies on the spot
            self.heads.append(head)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            while data := conn.recv(65536):
                conn.sendall(data)


def test_the_daemon_gets_the_head_as_sent_plus_the_client_address(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    daemon = _FakeDaemon()
    edge = start_edge(tmp_path, daemon.port, fake_upstream)
    try:
        head = (
            "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n"
            f"Proxy-Authorization: {basic('acme')}\r\nX-Halton-Client: 10.0.0.1:1\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
            sock.sendall(head.encode())
            assert sock.recv(4096) == b"HTTP/1.1 200 Connection established\r\n\r\n"
            sock.sendall(b"ping")
            assert sock.recv(4096) == b"ping"
            client = sock.getsockname()
        expected = head.replace("X-Halton-Client: 10.0.0.1:1\r\n", "")
        expected = expected[:-2] + f"X-Halton-Client: {client[0]}:{client[1]}\r\n\r\n"
        assert daemon.heads == [expected.encode()]

        # A daemon that accepts and dies before answering: the same client is tunnelled.
        daemon.hang_up = True
        status, _, issuer = https_via_edge(edge.port, fake_upstream, "/v1/models")
        assert status == 200 and issuer == "Halton Meter Test Upstream CA"
        counters = edge.status()["counters"]
        assert counters["handoff_failures"] == 1 and counters["fallbacks"] == 1
        assert edge.events("switch")[-1]["mode"] == "passthrough"
    finally:
        assert edge.stop() == 0
        daemon.server.close()


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ("CONNECT api.openai.com:443 HTTP/1.1", ("CONNECT", "api.openai.com", 443, "")),
        ("CONNECT API.OpenAI.com.:443 HTTP/1.1", ("CONNECT", "api.openai.com", 443, "")),
        ("CONNECT [::1]:8081 HTTP/1.1", ("CONNECT", "::1", 8081, "")),
        ("GET http://Example.org/a?b=1 HTTP/1.1", ("GET", "example.org", 80, "/a?b=1")),
        ("POST http://[::1]:8090 HTTP/1.0", ("POST", "::1", 8090, "/")),
        ("GET /status HTTP/1.1", ("GET", "", 0, "/status")),
    ],
)
def test_request_heads_name_their_target(head: str, expected: tuple[str, str, int, str]) -> None:
    parsed = parse_request(f"{head}\r\nHost: x\r\n\r\n".encode())
    assert (parsed.method, parsed.host, parsed.port, parsed.path) == expected


@pytest.mark.parametrize(
    ("head", "status"),
    [
        ("CONNECT api.openai.com:https HTTP/1.1", 400),
        ("CONNECT a b:1 HTTP/1.1", 400),
        ("GET https://api.openai.com/ HTTP/1.1", 501),
        ("GET http:///nohost HTTP/1.1", 400),
        ("GARBAGE", 400),
    ],
)
def test_bad_request_heads_are_refused(head: str, status: int) -> None:
    with pytest.raises(WireError) as raised:
        parse_request(f"{head}\r\nHost: x\r\n\r\n".encode())
    assert raised.value.status == status


def test_heads_for_origin_and_daemon() -> None:
    raw = (
        b"POST http://plain.test:8080/p HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n"
        b"Proxy-Connection: keep-alive\r\nContent-Length: 2\r\n\r\n"
    )
    head = parse_request(raw)
    assert head.for_origin() == (
        b"POST /p HTTP/1.1\r\nContent-Length: 2\r\nHost: plain.test:8080\r\n\r\n"
    )
    assert head.for_daemon("127.0.0.1:5") == raw[:-2] + b"X-Halton-Client: 127.0.0.1:5\r\n\r\n"
    assert head.for_proxy("Basic Y29ycA==").endswith(b"Proxy-Authorization: Basic Y29ycA==\r\n\r\n")
    assert b"eDp5" not in head.for_proxy(None)


def test_health_is_cached_200_ms_while_down() -> None:
    switches: list[tuple[bool | None, bool]] = []
    health = DaemonHealth(9, lambda before, now, _: switches.append((before, now)))
    assert health.worth_trying()  # unknown: try
    health.mark(False, "refused")
    assert not health.worth_trying()
    time.sleep(0.21)
    assert health.worth_trying()  # stale: one connection may probe
    health.mark(True, "took a connection")
    assert health.worth_trying()
    assert switches == [(None, False), (False, True)]


def test_a_hung_daemon_is_left_alone_for_seconds_not_200_ms() -> None:
    """A daemon that took the connection but never answered cost its client the whole answer
    timeout; the next clients must not pay it again for a while."""
    health = DaemonHealth(9, lambda *_: None)
    health.mark(False, "no answer", hung=True)
    time.sleep(0.25)
    assert not health.worth_trying()  # a refused daemon would be tried again by now
    health.mark(False, "refused")
    time.sleep(0.21)
    assert health.worth_trying()
