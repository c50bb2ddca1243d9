"""The fake upstream on its own (no proxy): official SDKs parse its formats, scenarios behave
and the recorder works. If these fail, proxy integration tests built on the fake mean nothing."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from tests.fakeupstream import FakeUpstreamProcess, catalog, make_test_pki, start_in_thread


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fake-pki")


@pytest.fixture(scope="module")
def fake(pki_dir: Path) -> Iterator[FakeUpstreamProcess]:
    with FakeUpstreamProcess(pki_dir) as process:
        yield process


@pytest.fixture
def http(fake: FakeUpstreamProcess) -> Iterator[httpx2.Client]:
    with httpx2.Client(verify=fake.ssl_context(), base_url=fake.base_url, timeout=10) as client:
        yield client


# --- raw HTTP, to see exact bytes and chunk boundaries -------------------------------------------


def raw_post(
    fake: FakeUpstreamProcess,
    host: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[bytes, bytes]:
    """POST over a fresh TLS connection with SNI = `host`; returns (head, raw body bytes)."""
    sock = fake.ssl_context().wrap_socket(
        socket.create_connection(("127.0.0.1", fake.port), timeout=5), server_hostname=host
    )
    payload = json.dumps(body).encode() if body is not None else b""
    all_headers = {"host": host, "content-length": str(len(payload)), "connection": "close"}
    all_headers.update(headers or {})
    request = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    sock.sendall(request.encode() + b"\r\n" + payload)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ssl.SSLError, ConnectionError):
        pass  # a cut connection ends without TLS close_notify
    finally:
        sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def raw_exchange(
    fake: FakeUpstreamProcess,
    host: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[bytes, list[bytes], bool]:
    """A streamed POST: (head, HTTP chunks, whether the terminating chunk arrived)."""
    head, rest = raw_post(fake, host, path, body, headers)
    chunks, complete = parse_chunked(rest)
    return head, chunks, complete


def parse_chunked(data: bytes) -> tuple[list[bytes], bool]:
    chunks: list[bytes] = []
    while data:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            return chunks, False
        size = int(size_line, 16)
        if size == 0:
            return chunks, True
        if len(data) < size + 2:
            return chunks, False
        chunks.append(data[:size])
        data = data[size + 2 :]
    return chunks, False


def sse_json(chunks: list[bytes]) -> list[Any]:
    """The JSON payloads of `data:` lines, skipping comments and [DONE]."""
    out = []
    for line in b"".join(chunks).decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


# --- SDKs parse the formats ----------------------------------------------------------------------


def test_anthropic_sdk_stream_accumulates_usage(fake: FakeUpstreamProcess) -> None:
    client = anthropic.Anthropic(
        api_key="test",
        base_url=fake.base_url,
        http_client=httpx2.Client(verify=fake.ssl_context()),
        max_retries=0,
    )
    with client.messages.stream(
        model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = stream.get_final_message()
    expected = catalog.ANTHROPIC_USAGE
    assert message.usage.input_tokens == expected["input_tokens"]
    assert message.usage.output_tokens == expected["output_tokens"]
    assert message.usage.cache_read_input_tokens == expected["cache_read_input_tokens"]
    assert message.usage.cache_creation_input_tokens == expected["cache_creation_input_tokens"]
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 544
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 2
    assert message.content[0].type == "text"
    assert message.content[0].text == catalog.full_text(catalog.DEFAULT_EVENTS)

    thinking = client.messages.create(
        model="claude-test",
        max_tokens=2048,
        messages=[{"role": "user", "content": "hi"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert [block.type for block in thinking.content] == ["thinking", "text"]
    assert thinking.usage.output_tokens_details is not None
    assert thinking.usage.output_tokens_details.thinking_tokens == catalog.ANTHROPIC_THINKING_TOKENS
    count = client.messages.count_tokens(
        model="claude-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert count.input_tokens == catalog.ANTHROPIC_COUNT_TOKENS["input_tokens"]


def test_anthropic_stream_bytes_one_event_per_chunk(fake: FakeUpstreamProcess) -> None:
    _, chunks, complete = raw_exchange(
        fake, "api.anthropic.com", "/v1/messages", {"stream": True}, {"x-fake-events": "3"}
    )
    assert complete
    names = [chunk.split(b"\n", 1)[0].decode() for chunk in chunks]
    assert names == [
        "event: message_start",
        "event: content_block_start",
        "event: ping",
        *["event: content_block_delta"] * 3,
        "event: content_block_stop",
        "event: message_delta",
        "event: message_stop",
    ]
    assert all(chunk.endswith(b"}\n\n") for chunk in chunks)
    assert chunks[2] == b'event: ping\ndata: {"type": "ping"}\n\n'


def test_openai_sdk_stream_with_include_usage(fake: FakeUpstreamProcess) -> None:
    client = openai.OpenAI(
        api_key="test",
        base_url=f"{fake.base_url}/v1",
        http_client=httpx2.Client(verify=fake.ssl_context()),
        max_retries=0,
    )
    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == catalog.OPENAI_CHAT_USAGE["prompt_tokens"]
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 1280
    assert all(chunk.usage is None for chunk in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == catalog.full_text(catalog.DEFAULT_EVENTS)

    response = client.responses.create(model="gpt-test", input="hi")
    assert response.usage is not None
    assert response.usage.input_tokens == catalog.OPENAI_RESPONSES_USAGE["input_tokens"]
    assert response.output_text == catalog.full_text(catalog.DEFAULT_EVENTS)
    events = list(client.responses.create(model="gpt-test", input="hi", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage is not None
    assert events[-1].response.usage.output_tokens_details.reasoning_tokens == 456

    embedding = client.embeddings.create(model="emb", input=["a", "b"])
    assert embedding.data[0].embedding == catalog.EMBEDDING_VECTOR
    assert embedding.usage.prompt_tokens == catalog.OPENAI_EMBEDDINGS_USAGE["prompt_tokens"]


def test_openai_usage_member_only_with_include_usage(fake: FakeUpstreamProcess) -> None:
    _, plain, _ = raw_exchange(fake, "api.openai.com", "/v1/chat/completions", {"stream": True})
    assert all(b'"usage"' not in chunk for chunk in plain)
    assert plain[-1] == b"data: [DONE]\n\n"
    body = {"stream": True, "stream_options": {"include_usage": True}}
    _, chunks, _ = raw_exchange(fake, "api.openai.com", "/v1/chat/completions", body)
    objs = sse_json(chunks)
    assert all(chunk.endswith(b',"usage":null}\n\n') for chunk in chunks[:-2])
    assert objs[-1]["choices"] == []
    assert objs[-1]["usage"] == catalog.OPENAI_CHAT_USAGE


@pytest.mark.parametrize("scenario", ["incomplete", "failed"])
def test_responses_terminal_scenarios(fake: FakeUpstreamProcess, scenario: str) -> None:
    _, chunks, complete = raw_exchange(
        fake, "api.openai.com", "/v1/responses", {"stream": True}, {"x-fake-scenario": scenario}
    )
    assert complete
    assert chunks[-1].startswith(f"event: response.{scenario}\n".encode())
    last = sse_json(chunks)[-1]
    assert last["response"]["status"] == scenario
    assert last["response"]["usage"] == catalog.OPENAI_RESPONSES_USAGE


def test_gemini_sdk_generate_content(fake: FakeUpstreamProcess) -> None:
    client = genai.Client(
        api_key="test",
        http_options=genai_types.HttpOptions(
            base_url=fake.base_url, client_args={"verify": fake.ssl_context()}
        ),
    )
    response = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == catalog.GEMINI_USAGE["promptTokenCount"]
    assert usage.thoughts_token_count == catalog.GEMINI_USAGE["thoughtsTokenCount"]
    assert usage.cached_content_token_count == catalog.GEMINI_USAGE["cachedContentTokenCount"]
    assert response.model_version == "gemini-2.5-flash"
    assert response.text == catalog.full_text(catalog.DEFAULT_EVENTS)

    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert len(chunks) == catalog.DEFAULT_EVENTS
    assert chunks[0].usage_metadata is not None
    assert chunks[0].usage_metadata.candidates_token_count is None  # early chunks lack it
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.total_token_count == catalog.GEMINI_USAGE["totalTokenCount"]


def test_gemini_array_stream_and_code_assist(fake: FakeUpstreamProcess) -> None:
    host = "generativelanguage.googleapis.com"
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    head, chunks, complete = raw_exchange(fake, host, path, {"contents": []})
    assert complete and b"application/json" in head
    assert chunks[0].startswith(b"[{") and chunks[1].startswith(b"\n,\r\n{")
    assert chunks[-1] == b"\n]"
    array = json.loads(b"".join(chunks))
    assert array[-1]["usageMetadata"] == catalog.GEMINI_USAGE

    path = "/v1internal:streamGenerateContent?alt=sse"
    body = {"model": "gemini-2.5-pro", "project": "p", "request": {"contents": []}}
    _, chunks, _ = raw_exchange(fake, "cloudcode-pa.googleapis.com", path, body)
    assert all(chunk.endswith(b"}\r\n\r\n") for chunk in chunks)
    events = sse_json(chunks)
    assert events[-1]["traceId"] == catalog.CODE_ASSIST_TRACE_ID
    assert events[-1]["response"]["usageMetadata"] == catalog.CODE_ASSIST_USAGE


@pytest.mark.parametrize(
    ("host", "path", "usage", "usage_key"),
    [
        ("api.groq.com", "/openai/v1/chat/completions", catalog.GROQ_CHAT_USAGE, "x_groq"),
        ("api.mistral.ai", "/v1/chat/completions", catalog.MISTRAL_CHAT_USAGE, "usage"),
        ("openrouter.ai", "/api/v1/chat/completions", catalog.OPENROUTER_CHAT_USAGE, "usage"),
        ("api.together.xyz", "/v1/chat/completions", catalog.TOGETHER_CHAT_USAGE, "usage"),
        ("api.perplexity.ai", "/chat/completions", catalog.PERPLEXITY_CHAT_USAGE, "usage"),
    ],
)
def test_compatible_providers_send_usage_without_include_usage(
    fake: FakeUpstreamProcess, host: str, path: str, usage: dict[str, Any], usage_key: str
) -> None:
    _, chunks, complete = raw_exchange(fake, host, path, {"model": "m", "stream": True})
    assert complete
    objs = sse_json(chunks)
    found = [obj[usage_key] for obj in objs if obj.get(usage_key)]
    if usage_key == "x_groq":
        found = [x_groq["usage"] for x_groq in found if "usage" in x_groq]
    assert found == [usage]
    if host == "openrouter.ai":
        assert chunks[0] == b": OPENROUTER PROCESSING\n\n"


def test_compatible_providers_with_include_usage_and_anthropic_paths(
    fake: FakeUpstreamProcess,
) -> None:
    body = {"stream": True, "stream_options": {"include_usage": True}}
    for host, path, usage in [
        ("api.deepseek.com", "/chat/completions", catalog.DEEPSEEK_CHAT_USAGE),
        ("api.x.ai", "/v1/chat/completions", catalog.XAI_CHAT_USAGE),
        ("api.fireworks.ai", "/inference/v1/chat/completions", catalog.FIREWORKS_CHAT_USAGE),
        ("api.cerebras.ai", "/v1/chat/completions", catalog.CEREBRAS_CHAT_USAGE),
    ]:
        objs = sse_json(raw_exchange(fake, host, path, body)[1])
        assert [obj["usage"] for obj in objs if obj.get("usage")] == [usage], host
    for host, path, usage in [
        ("api.deepseek.com", "/anthropic/v1/messages", catalog.DEEPSEEK_MESSAGES_USAGE),
        ("api.x.ai", "/v1/messages", catalog.XAI_MESSAGES_USAGE),
    ]:
        _, chunks, complete = raw_exchange(fake, host, path, {"stream": True})
        assert complete
        objs = sse_json(chunks)
        assert objs[-2]["type"] == "message_delta"
        assert objs[-2]["usage"]["cache_read_input_tokens"] == usage["cache_read_input_tokens"]


# --- scenarios -----------------------------------------------------------------------------------


def test_cut_stream_and_body_truncate(fake: FakeUpstreamProcess) -> None:
    cut = {"x-fake-scenario": "cut"}
    _, chunks, complete = raw_exchange(
        fake, "api.anthropic.com", "/v1/messages", {"stream": True}, cut
    )
    assert not complete
    assert 0 < len(chunks) < 11
    assert not any(b"message_delta" in chunk for chunk in chunks)

    head, rest = raw_post(fake, "api.openai.com", "/v1/chat/completions", {}, cut)
    declared = re.search(rb"content-length: (\d+)", head)
    assert declared is not None
    assert 0 < len(rest) < int(declared.group(1))

    with (
        httpx2.Client(verify=fake.ssl_context()) as client,
        pytest.raises(httpx2.RemoteProtocolError),
    ):
        client.post(f"{fake.base_url}/v1/messages", json={}, headers=cut)


def test_malformed_and_stream_error(fake: FakeUpstreamProcess, http: httpx2.Client) -> None:
    bad = http.post("/v1/messages", json={}, headers={"x-fake-scenario": "malformed"})
    assert bad.status_code == 200
    assert bad.text.endswith('"usage":{')
    with pytest.raises(ValueError):
        bad.json()

    _, chunks, complete = raw_exchange(
        fake,
        "api.openai.com",
        "/v1/chat/completions",
        {"stream": True},
        {"x-fake-scenario": "malformed"},
    )
    assert complete
    invalid = [c for c in chunks if c.startswith(b"data: {") and not _is_json(c[6:])]
    assert len(invalid) == 1
    assert chunks[-1] == b"data: [DONE]\n\n"

    _, chunks, complete = raw_exchange(
        fake,
        "api.anthropic.com",
        "/v1/messages",
        {"stream": True},
        {"x-fake-scenario": "stream-error"},
    )
    assert complete
    assert chunks[-1].startswith(b"event: error\n")
    assert json.loads(chunks[-1].split(b"data: ", 1)[1])["error"]["type"] == "overloaded_error"


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("path", "scenario", "status", "check"),
    [
        ("/v1/messages", "error-529", 529, lambda b: b["error"]["type"] == "overloaded_error"),
        ("/v1/messages", "error-429", 429, lambda b: b["error"]["type"] == "rate_limit_error"),
        (
            "/v1/chat/completions",
            "error-401",
            401,
            lambda b: b["error"]["code"] == "invalid_api_key",
        ),
        ("/v1/chat/completions", "error-500", 500, lambda b: b["error"]["type"] == "server_error"),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "error-429",
            429,
            lambda b: b["error"]["status"] == "RESOURCE_EXHAUSTED",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "error-400",
            400,
            lambda b: b["error"]["status"] == "INVALID_ARGUMENT",
        ),
    ],
)
def test_error_scenarios(
    http: httpx2.Client, path: str, scenario: str, status: int, check: Any
) -> None:
    response = http.post(path, json={}, headers={"x-fake-scenario": scenario})
    assert response.status_code == status
    assert check(response.json())


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compressed_stream_decodes_to_the_same_bytes(
    fake: FakeUpstreamProcess, http: httpx2.Client, encoding: str
) -> None:
    body = {"stream": True, "stream_options": {"include_usage": True}}
    plain = http.post("/v1/chat/completions", json=body)
    packed = http.post("/v1/chat/completions", json=body, headers={"x-fake-scenario": encoding})
    assert packed.headers["content-encoding"] == encoding
    assert packed.content == plain.content
    _, chunks, complete = raw_exchange(
        fake, "api.openai.com", "/v1/chat/completions", body, {"x-fake-scenario": encoding}
    )
    assert complete and len(chunks) >= 9  # still one compressed chunk per event
    assert plain.headers["content-type"].startswith("text/event-stream")


def test_hold_first_parks_the_stream_until_release(fake: FakeUpstreamProcess) -> None:
    sock = fake.ssl_context().wrap_socket(
        socket.create_connection(("127.0.0.1", fake.port), timeout=5),
        server_hostname="api.anthropic.com",
    )
    payload = b'{"stream": true}'
    sock.sendall(
        b"POST /v1/messages HTTP/1.1\r\nhost: api.anthropic.com\r\nconnection: close\r\n"
        b"x-fake-hold-first: 1\r\ncontent-length: %d\r\n\r\n%b" % (len(payload), payload)
    )
    first = sock.recv(65536)
    assert b"message_start" in first
    fake.wait_held(1)
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(65536)  # nothing more until released
    assert fake.release() == 1
    sock.settimeout(5)
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
    sock.close()
    assert b"message_stop" in rest and rest.endswith(b"0\r\n\r\n")


def test_delay_between_events(http: httpx2.Client) -> None:
    started = time.monotonic()
    headers = {"x-fake-delay-ms": "40", "x-fake-events": "3"}
    http.post("/v1/messages", json={"stream": True}, headers=headers)
    assert time.monotonic() - started >= 0.04 * 6  # 8 events -> 7 gaps


# --- recorder, determinism, misc -----------------------------------------------------------------


def test_recorder_and_reset(fake: FakeUpstreamProcess) -> None:
    fake.reset()
    raw_exchange(fake, "api.openai.com", "/v1/chat/completions?x=1", {"model": "gpt-rec"})
    recorded = fake.requests()
    assert len(recorded) == 1
    entry = recorded[0]
    assert entry["method"] == "POST"
    assert entry["host"] == "api.openai.com"
    assert entry["path"] == "/v1/chat/completions?x=1"
    assert entry["json"] == {"model": "gpt-rec"}
    assert entry["sni"] == "api.openai.com"
    assert entry["headers"]["content-length"] == str(len(entry["body"]))
    assert fake.reset() == 1
    assert fake.requests() == []


def test_plain_host_and_determinism(fake: FakeUpstreamProcess, http: httpx2.Client) -> None:
    hello = http.get("/", headers={"host": "example.org"})
    assert hello.status_code == 200
    assert hello.text == "hello from example.org"
    first = raw_exchange(fake, "api.anthropic.com", "/v1/messages", {"stream": True})
    second = raw_exchange(fake, "api.anthropic.com", "/v1/messages", {"stream": True})
    assert first == second


def test_in_thread_server_and_pki_cache(pki_dir: Path) -> None:
    pki = make_test_pki(pki_dir)
    ca_before = pki.ca_cert.read_bytes()
    assert make_test_pki(pki_dir).ca_cert.read_bytes() == ca_before  # reused, not regenerated
    port, stop = start_in_thread(pki)
    try:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        with httpx2.Client(verify=context) as client:
            reply = client.post(f"https://localhost:{port}/v1/messages/count_tokens", json={})
        assert reply.json() == catalog.ANTHROPIC_COUNT_TOKENS
    finally:
        stop()


def test_subprocess_exits_cleanly_on_sigterm(pki_dir: Path) -> None:
    process = FakeUpstreamProcess(pki_dir)
    assert process.held() == 0
    assert process.stop() == 0
