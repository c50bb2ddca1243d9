"""What the proxy does to the traffic: nothing the client can see, except on purpose.

Byte identity is checked by hashing what curl received through the meter and directly from the
same fake upstream. Streaming without buffering is checked by holding the fake's second event
until the client has the first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, FakeUpstream, Meter
from tests.fakeupstream import catalog
from tests.fakeupstream.client import FakeUpstreamControl
from tests.test_clients import chat_body, metered

ANTHROPIC = "https://api.anthropic.com/v1/messages"
OPENAI_CHAT = "https://api.openai.com/v1/chat/completions"
GEMINI_STREAM = (
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent"
)
MESSAGES_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def curl_args(url: str, body: dict[str, Any], scenario: str, out: Path) -> list[str]:
    """curl writes the body bytes as received (de-chunked, never decompressed)."""
    return [
        "curl",
        "-sS",
        "-o",
        str(out),
        url,
        "-H",
        "content-type: application/json",
        "-H",
        "authorization: Bearer sk-test-secret-identity",
        "-H",
        f"x-fake-scenario: {scenario}",
        "--data",
        json.dumps(body),
    ]


def direct(fake: FakeUpstream, args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", *fake.direct_curl_args(), *args[1:]], capture_output=True, timeout=30
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CASES = [
    ("anthropic-sse", ANTHROPIC, MESSAGES_BODY, "ok"),
    ("openai-sse-no-include-usage", OPENAI_CHAT, chat_body("gpt-4.1"), "ok"),
    (
        "openai-sse-include-usage",
        OPENAI_CHAT,
        {**chat_body("gpt-4.1"), "stream_options": {"include_usage": True}},
        "ok",
    ),
    ("openai-json", OPENAI_CHAT, chat_body("gpt-4.1", stream=False), "ok"),
    ("gemini-array", GEMINI_STREAM, GEMINI_BODY, "ok"),
    ("gemini-sse", GEMINI_STREAM + "?alt=sse", GEMINI_BODY, "ok"),
    ("anthropic-gzip", ANTHROPIC, MESSAGES_BODY, "gzip"),
    ("anthropic-br", ANTHROPIC, MESSAGES_BODY, "br"),
    ("gemini-zstd", GEMINI_STREAM + "?alt=sse", GEMINI_BODY, "zstd"),
    # (Asking for usage ourselves: the fake cuts its garbage event at half its length, which
    # differs when the meter injects include_usage, so the direct run would not be comparable.)
    (
        "openai-malformed",
        OPENAI_CHAT,
        {**chat_body("gpt-4.1"), "stream_options": {"include_usage": True}},
        "malformed",
    ),
    ("anthropic-malformed-sse", ANTHROPIC, MESSAGES_BODY, "malformed"),
    ("anthropic-malformed-json", ANTHROPIC, {**MESSAGES_BODY, "stream": False}, "malformed"),
    ("anthropic-stream-error", ANTHROPIC, MESSAGES_BODY, "stream-error"),
]


@pytest.mark.parametrize(
    ("url", "body", "scenario"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_client_receives_exactly_the_upstream_bytes(
    meter: Meter,
    fake_upstream: FakeUpstream,
    project: str,
    tmp_path: Path,
    url: str,
    body: dict[str, Any],
    scenario: str,
) -> None:
    via, straight = tmp_path / "via", tmp_path / "direct"
    done = metered(meter, project, *curl_args(url, body, scenario, via))
    assert done.returncode == 0, done.stderr
    assert direct(fake_upstream, curl_args(url, body, scenario, straight)).returncode == 0
    assert straight.stat().st_size > 0
    assert sha(via) == sha(straight)
    (row,) = meter.wait_rows(project, 1)
    if scenario in ("gzip", "br", "zstd", "ok"):
        assert row["tokens_complete"] == 1 and row["input_tokens"] is not None
    if scenario == "malformed":
        assert row["http_status"] == 200  # recorded all the same


def test_daemon_survives_malformed_bodies(meter: Meter, project: str, tmp_path: Path) -> None:
    for scenario in ("malformed", "malformed", "ok"):
        done = metered(
            meter, project, *curl_args(ANTHROPIC, MESSAGES_BODY, scenario, tmp_path / "out")
        )
        assert done.returncode == 0
    rows = meter.wait_rows(project, 3)
    assert [r["tokens_complete"] for r in rows][-1] == 1
    assert meter.process.poll() is None


def test_stream_is_not_buffered(meter: Meter, fake_upstream: FakeUpstream, project: str) -> None:
    """The client holds the first event while the fake still waits to send the second."""
    control = FakeUpstreamControl(fake_upstream.port, fake_upstream.pki)
    context = ssl.create_default_context(cafile=str(meter.bundle))
    raw = socket.create_connection(("127.0.0.1", meter.port), timeout=10)
    raw.sendall(b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    tls = context.wrap_socket(raw, server_hostname="api.anthropic.com")
    body = json.dumps(MESSAGES_BODY).encode()
    tls.sendall(
        b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n"
        b"content-type: application/json\r\nx-fake-hold-first: 1\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    received = b""
    while b"message_start" not in received:
        chunk = tls.recv(65536)
        assert chunk, "connection closed before the first event"
        received += chunk
    # The first event is here, and the fake has not sent the second yet.
    assert control.held() == 1
    assert b"content_block_start" not in received
    control.release()
    while not received.endswith(b"0\r\n\r\n"):
        chunk = tls.recv(65536)
        if not chunk:
            break
        received += chunk
    tls.close()
    assert b"message_stop" in received


def test_non_llm_hosts_are_tunnelled_not_decrypted(
    meter: Meter, project: str, tmp_path: Path
) -> None:
    def issuer(url: str) -> str:
        done = metered(meter, project, "curl", "-sS", "-v", "-o", str(tmp_path / "o"), url)
        assert done.returncode == 0, done.stderr
        return next(line for line in done.stderr.splitlines() if "issuer:" in line)

    # example.org is not an LLM host: the client sees the server's own certificate.
    assert "Halton Meter Test Upstream CA" in issuer("https://example.org/")
    assert (tmp_path / "o").read_text() == "hello from example.org"
    # An LLM host is intercepted: the client sees the meter's CA.
    assert "Halton Meter local CA" in issuer("https://api.openai.com/v1/models")
    # Neither a tunnel nor an unmetered path on an LLM host writes a row.
    metered(meter, project, *curl_args(OPENAI_CHAT, chat_body("gpt-4.1"), "ok", tmp_path / "x"))
    (row,) = meter.wait_rows(project, 1)
    assert row["api"] == "chat"


def test_cut_stream_gives_an_incomplete_row(meter: Meter, project: str, tmp_path: Path) -> None:
    metered(meter, project, *curl_args(ANTHROPIC, MESSAGES_BODY, "cut", tmp_path / "out"))
    (row,) = meter.wait_rows(project, 1)
    assert row["tokens_complete"] == 0
    assert (row["status"], row["error_class"]) == ("error", "network")
    # What arrived is kept: message_start carried the input side.
    assert row["input_tokens"] == catalog.ANTHROPIC_USAGE["input_tokens"]
    assert row["cache_read_tokens"] == catalog.ANTHROPIC_USAGE["cache_read_input_tokens"]


@pytest.mark.parametrize(
    ("url", "body", "scenario", "status", "error_class", "code"),
    [
        (ANTHROPIC, MESSAGES_BODY, "error-529", 529, "overloaded", "overloaded_error"),
        (ANTHROPIC, MESSAGES_BODY, "error-429", 429, "rate_limit", "rate_limit_error"),
        (ANTHROPIC, MESSAGES_BODY, "error-quota", 429, "auth", "enforced_spend_limit_reached"),
        (OPENAI_CHAT, chat_body("gpt-4.1"), "error-quota", 429, "auth", "insufficient_quota"),
        (OPENAI_CHAT, chat_body("gpt-4.1"), "error-401", 401, "auth", "invalid_api_key"),
        (
            GEMINI_STREAM + "?alt=sse",
            GEMINI_BODY,
            "error-400",
            400,
            "bad_request",
            "INVALID_ARGUMENT",
        ),
        (ANTHROPIC, MESSAGES_BODY, "stream-error", 200, "overloaded", "overloaded_error"),
    ],
)
def test_errors_are_classified(
    meter: Meter,
    project: str,
    tmp_path: Path,
    url: str,
    body: dict[str, Any],
    scenario: str,
    status: int,
    error_class: str,
    code: str,
) -> None:
    metered(meter, project, *curl_args(url, body, scenario, tmp_path / "out"))
    (row,) = meter.wait_rows(project, 1)
    assert (row["http_status"], row["status"], row["error_class"]) == (status, "error", error_class)
    assert row["provider_error_code"] == code
    if scenario != "stream-error":  # no usage came: it cost nothing, and says so (issue 16)
        assert (row["cost_nanousd"], row["price_source"]) == (0, "no-usage")


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "127.1",
    "0x7f.1",
    "2130706433",
    "127.0.0.2",
    "0.0.0.0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "api.localhost",
]


def test_proxy_refuses_its_own_listeners(meter: Meter) -> None:
    """Whatever the spelling of loopback, nothing reaches the meter's own ports through it.
    (The daemon serves its API on api_port: a forwarded request would get the API's answer,
    not a 403.)"""
    config = (meter.home / "config.toml").read_text()
    api_port = int(config.split("api_port = ")[1].split()[0])
    for host in LOOPBACK_SPELLINGS:
        for port in (api_port, meter.port):
            with socket.create_connection(("127.0.0.1", meter.port), timeout=5) as sock:
                target = f"{host}:{port}".encode()
                sock.sendall(b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 403"), host
            with socket.create_connection(("127.0.0.1", meter.port), timeout=5) as sock:
                sock.sendall(
                    b"GET http://" + f"{host}:{port}".encode() + b"/v1/stats "
                    b"HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n\r\n"
                )
                assert sock.recv(4096).startswith(b"HTTP/1.1 403"), host


def test_resolver_refuses_names_that_lead_to_own_ports() -> None:
    """A DNS name (or a resolve override) that lands on loopback and one of our ports fails at
    connection time, whatever the name looked like."""
    import asyncio

    from halton_meter.upstream import OwnListenerError, install_resolver

    async def attempt(host: str, port: int) -> str:
        loop = asyncio.get_running_loop()
        install_resolver(loop, {("sneaky.example", 443): ("127.1", 9765)}, {9765, 9081})
        try:
            await loop.getaddrinfo(host, port)
        except OwnListenerError:
            return "refused"
        return "resolved"

    assert asyncio.run(attempt("localhost", 9765)) == "refused"
    assert asyncio.run(attempt("sneaky.example", 443)) == "refused"
    assert asyncio.run(attempt("localhost", 9766)) == "resolved"


def test_only_post_calls_are_metered(meter: Meter, project: str, tmp_path: Path) -> None:
    """GET on a chat path lists stored completions; OPTIONS is a preflight: neither is a call."""
    for method in ("GET", "OPTIONS", "HEAD"):
        flag = ["-I"] if method == "HEAD" else ["-X", method]
        done = metered(meter, project, "curl", "-sS", "-o", os.devnull, *flag, OPENAI_CHAT)
        assert done.returncode == 0, done.stderr
    metered(meter, project, *curl_args(OPENAI_CHAT, chat_body("gpt-4.1"), "ok", tmp_path / "o"))
    (row,) = meter.wait_rows(project, 1)
    assert row["api"] == "chat"


def test_project_names_may_contain_colons(meter: Meter, tmp_path: Path) -> None:
    project = f"client:acme-{os.getpid()}"
    done = metered(
        meter, project, *curl_args(OPENAI_CHAT, chat_body("gpt-4.1"), "ok", tmp_path / "o")
    )
    assert done.returncode == 0, done.stderr
    (row,) = meter.wait_rows(project, 1)
    assert row["project"] == project


def test_plain_http_proxy_requests_strip_proxy_authorization(
    meter: Meter, fake_upstream: FakeUpstream
) -> None:
    """A plain-HTTP request through the proxy is forwarded without the project credentials."""
    seen: dict[str, bytes] = {}
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        seen["request"] = conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--proxy",
            f"http://acme@127.0.0.1:{meter.port}",
            f"http://127.0.0.1:{port}/hello",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    thread.join(10)
    server.close()
    assert done.stdout == "ok"
    assert b"proxy-authorization" not in seen["request"].lower()


def test_no_secrets_reach_the_disk(meter: Meter, project: str, tmp_path: Path) -> None:
    secret = "sk-ant-secret-do-not-store-7d1e"
    prompt = "my-private-prompt-text-9f2c"
    body = {**MESSAGES_BODY, "messages": [{"role": "user", "content": prompt}]}
    done = metered(
        meter,
        project,
        "curl",
        "-sS",
        "-o",
        str(tmp_path / "o"),
        ANTHROPIC,
        "-H",
        f"x-api-key: {secret}",
        "-H",
        f"authorization: Bearer {secret}",
        "--data",
        json.dumps(body),
    )
    assert done.returncode == 0
    meter.wait_rows(project, 1)
    for path in meter.home.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert secret.encode() not in content, path
            assert prompt.encode() not in content, path


def test_one_client_connection_carries_many_calls(meter: Meter, project: str) -> None:
    """Keep-alive through the proxy: one upstream connection is reused for every call (a new one
    per call would exhaust mitmproxy's five connections per address and hang the sixth)."""
    import httpx2

    context = ssl.create_default_context(cafile=str(meter.bundle))
    with httpx2.Client(
        proxy=f"http://{project}@127.0.0.1:{meter.port}", verify=context, timeout=5
    ) as http:
        for _ in range(12):
            response = http.post(OPENAI_CHAT, json=chat_body("gpt-4.1", stream=False))
            assert response.status_code == 200
    assert len(meter.wait_rows(project, 12)) == 12


def test_user_declared_endpoint_is_metered(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    """A gateway declared in [[endpoints]] (here: the fake on localhost) is decrypted and metered
    with the wire format and provider name the user gave, and its requests are never rewritten
    (some gateways reject the stream_options the meter adds for OpenAI itself)."""
    from tests.conftest import start_meter

    endpoint = (
        f'\n[[endpoints]]\nhost = "localhost"\nport = {fake_upstream.port}\n'
        'wire = "openai-chat"\nprovider = "corp-gateway"\n'
    )
    control = FakeUpstreamControl(fake_upstream.port, fake_upstream.pki)
    meter = start_meter(tmp_path / "home", fake_upstream, extra_config=endpoint)
    url = f"https://localhost:{fake_upstream.port}/v1/chat/completions"
    try:
        for stream in (False, True):
            body = json.dumps({**chat_body("corp-model", stream), "user": f"gw-{stream}"})
            done = metered(
                meter,
                "gateway",
                "curl",
                "-sS",
                "--noproxy",
                "",
                "-o",
                os.devnull,
                url,
                "-H",
                "content-type: application/json",
                "--data",
                body,
            )
            assert done.returncode == 0, done.stderr
        rows = meter.wait_rows("gateway", 2)
    finally:
        meter.stop()
    plain = rows[0]
    assert (plain["provider"], plain["api"], plain["host"]) == ("corp-gateway", "chat", "localhost")
    assert plain["output_tokens"] == catalog.OPENAI_CHAT_USAGE["completion_tokens"]
    sent = [
        r["json"] for r in control.requests() if r["json"] and r["json"].get("user") == "gw-True"
    ]
    assert sent and "stream_options" not in sent[0]
    assert rows[1]["tokens_complete"] == 0  # no usage in that stream, and none invented


def test_rewritten_stream_keeps_done_and_the_connection_clean(
    meter: Meter, fake_upstream: FakeUpstream, project: str
) -> None:
    """Events arriving one by one (25 ms apart), the meter dropping the usage chunk it asked for:
    an HTTP/1.1 client still gets every byte, `data: [DONE]` included, and a second call on the
    same keep-alive connection works (no stray bytes left behind). An empty write from the tap
    would be the terminating chunk on HTTP/1.1."""
    import http.client

    def two_calls(host: str, port: int, context: ssl.SSLContext, tunnel: bool) -> list[bytes]:
        conn = http.client.HTTPSConnection(host, port, context=context, timeout=10)
        if tunnel:
            conn.set_tunnel(
                "api.openai.com",
                443,
                headers={
                    "Proxy-Authorization": "Basic "
                    + base64.b64encode(f"{project}:meter".encode()).decode()
                },
            )
        bodies = []
        for _ in range(2):
            conn.request(
                "POST",
                "/v1/chat/completions",
                body=json.dumps(chat_body("gpt-4.1")),
                headers={
                    "Host": "api.openai.com",
                    "content-type": "application/json",
                    "x-fake-delay-ms": "25",
                },
            )
            bodies.append(conn.getresponse().read())
        conn.close()
        return bodies

    via = two_calls(
        "127.0.0.1", meter.port, ssl.create_default_context(cafile=str(meter.bundle)), tunnel=True
    )
    direct_context = ssl.create_default_context(cafile=str(fake_upstream.pki.ca_cert))
    direct_context.check_hostname = False
    direct = two_calls("127.0.0.1", fake_upstream.port, direct_context, tunnel=False)
    assert via[0].endswith(b"data: [DONE]\n\n")
    assert via == direct
    assert len(meter.wait_rows(project, 2)) == 2
