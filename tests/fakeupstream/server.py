"""A hand-written HTTP/1.1-over-TLS server that impersonates the LLM providers.

Hand-written (stdlib `ssl` + asyncio streams) rather than built on a framework so we control
every byte: exact bodies, one HTTP chunk per SSE event (written and drained on its own, so the
proxy under test sees real event boundaries), abrupt cuts mid-body, and incremental
compression. Transport-level scenarios live here; the provider formats live in `*_wire.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import ssl
import sys
import threading
import traceback
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import brotli
import zstandard

from . import anthropic_wire, azure_wire, bedrock_wire, catalog, gemini_wire, openai_wire, ws_wire
from .certs import TestPKI
from .reply import Call, Reply, truncated

HOLD_TIMEOUT = 30.0  # a held stream resumes on its own after this, so a broken test never hangs
MAX_HEAD = 1 << 20
ENCODINGS = ("gzip", "br", "zstd")
REASONS = {529: "Site is overloaded"}

GEMINI_PATH = re.compile(
    r"^/(v1|v1beta|v1alpha)/models/([^/:]+):"
    r"(generateContent|streamGenerateContent|embedContent|batchEmbedContents|countTokens)$"
)
# Vertex AI: the publisher's model below a project and location (express mode: without them).
VERTEX_PATH = re.compile(
    r"^/(v1|v1beta1)(?:/projects/[^/]+/locations/[^/]+)?/publishers/(google|anthropic)/models/"
    r"([^/:]+):([A-Za-z]+)$"
)
CODE_ASSIST_PATH = re.compile(r"^/v1internal:([A-Za-z]+)$")
BASE_PREFIXES = ("/openai", "/api", "/inference", "/anthropic")  # Groq, OpenRouter, ...


# --- routing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Which format answers a request, and in which provider's name."""

    provider: str
    handler: Callable[[Call], Reply]
    error: Callable[[Call, str], Reply]


def _plain(call: Call) -> Reply:
    return Reply(headers=[("content-type", "text/plain")], body=f"hello from {call.host}".encode())


def _profile(call: Call) -> Reply:
    body = {"email": catalog.ACCOUNT_EMAIL, "account": {"email": catalog.ACCOUNT_EMAIL}}
    return Reply(headers=[("content-type", "application/json")], body=json.dumps(body).encode())


def _plain_error(call: Call, code: str) -> Reply:
    status = int(code) if code.isdigit() and 400 <= int(code) <= 599 else 500
    return Reply(status=status, headers=[("content-type", "text/plain")], body=b"fake error")


def _wham_usage(call: Call) -> Reply:
    """`GET /backend-api/wham/usage`: the ChatGPT plan's quota windows (Codex's `/status`)."""
    body = {
        "plan_type": "plus",
        "rate_limit": {
            "allowed": True,
            "limit_reached": False,
            "primary_window": {"used_percent": 12, "limit_window_seconds": 18000},
            "secondary_window": {"used_percent": 41, "limit_window_seconds": 604800},
        },
        "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
    }
    return Reply(headers=[("content-type", "application/json")], body=json.dumps(body).encode())


def _accounts_check(call: Call) -> Reply:
    """`GET /backend-api/wham/accounts/check`: the ChatGPT accounts of the signed-in user (Codex
    routes its workspace by it; the account id is the one its token names)."""
    account = call.headers.get("chatgpt-account-id", "")
    body = {
        "accounts": [
            {
                "id": account,
                "name": None,
                "structure": "personal",
                "workspace_backend_origin": "https://chatgpt.com",
                "account_routing_override": "NO_CONSTRAINT",
            }
        ],
        "account_ordering": [account],
        "default_account_id": account,
    }
    return Reply(headers=[("content-type", "application/json")], body=json.dumps(body).encode())


def _not_found(call: Call) -> Reply:
    return Reply(
        status=404, headers=[("content-type", "application/json")], body=b'{"detail":"Not Found"}'
    )


def resolve(method: str, host: str, path: str, query: dict[str, str], forced: str) -> Route:
    """Pick the format by path (as the meter must) and the provider by Host (or x-fake-provider)."""
    provider = forced or catalog.PROVIDER_HOSTS.get(host, "")
    if path == "/backend-api/wham/usage":
        return Route(provider or "openai", _wham_usage, openai_wire.error)
    if path == "/backend-api/wham/accounts/check":
        return Route(provider or "openai", _accounts_check, openai_wire.error)
    if method == "POST" and path == "/backend-api/codex/responses":
        return Route(
            provider or "openai",
            lambda call: ws_wire.codex_headers(openai_wire.responses(call)),
            openai_wire.error,
        )
    if path in catalog.PROFILE_PATHS:
        return Route(provider or "plain", _profile, _plain_error)
    if method == "POST":
        if host.endswith(".azure.com") and azure_wire.PATH.match(path):
            return Route(provider or "azure", azure_wire.handle, azure_wire.error)
        if bedrock_wire.PATH.match(path):
            return Route(provider or "bedrock", bedrock_wire.handle, bedrock_wire.error)
        if match := VERTEX_PATH.match(path):
            publisher, model, verb = match.group(2), match.group(3), match.group(4)
            if publisher == "anthropic":
                handler = (
                    anthropic_wire.count_tokens
                    if model == "count-tokens"
                    else anthropic_wire.messages
                )
                return Route(provider or "vertex", handler, anthropic_wire.error)
            array = verb == "streamGenerateContent" and query.get("alt") != "sse"
            return Route(
                provider or "vertex",
                lambda call: gemini_wire.generate(call, model, verb),
                lambda call, code: gemini_wire.error(call, code, array=array),
            )
        if match := GEMINI_PATH.match(path):
            model, verb = match.group(2), match.group(3)
            array = verb == "streamGenerateContent" and query.get("alt") != "sse"
            return Route(
                provider or "gemini",
                lambda call: gemini_wire.generate(call, model, verb),
                lambda call, code: gemini_wire.error(call, code, array=array),
            )
        if match := CODE_ASSIST_PATH.match(path):
            verb = match.group(1)
            array = verb == "streamGenerateContent" and query.get("alt") != "sse"
            return Route(
                provider or "code-assist",
                lambda call: gemini_wire.code_assist(call, verb),
                lambda call, code: gemini_wire.error(call, code, array=array),
            )
        tail = path
        for prefix in BASE_PREFIXES:
            if tail.startswith(prefix + "/"):
                tail = tail[len(prefix) :]
                break
        tail = tail.removeprefix("/v1")
        if tail == "/messages":
            return Route(provider or "anthropic", anthropic_wire.messages, anthropic_wire.error)
        if tail == "/messages/count_tokens":
            return Route(provider or "anthropic", anthropic_wire.count_tokens, anthropic_wire.error)
        openai_routes: dict[str, Callable[[Call], Reply]] = {
            "/chat/completions": openai_wire.chat,
            "/completions": openai_wire.completions,
            "/responses": openai_wire.responses,
            "/embeddings": openai_wire.embeddings,
        }
        if tail in openai_routes:
            return Route(provider or "openai", openai_routes[tail], openai_wire.error)
    if path.startswith("/backend-api/"):  # the ChatGPT backend's other paths
        return Route(provider or "openai", _not_found, openai_wire.error)
    return Route(provider or "plain", _plain, _plain_error)


# --- compression ---------------------------------------------------------------------------------


class _Encoder:
    """Incremental Content-Encoding that flushes after every event, so nothing is held back."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "gzip":
            self._gzip = zlib.compressobj(wbits=31)
        elif kind == "br":
            self._br = brotli.Compressor()
        else:
            self._zstd = zstandard.ZstdCompressor().compressobj()

    def feed(self, data: bytes) -> bytes:
        if self.kind == "gzip":
            return self._gzip.compress(data) + self._gzip.flush(zlib.Z_SYNC_FLUSH)
        if self.kind == "br":
            return bytes(self._br.process(data)) + bytes(self._br.flush())
        return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        if self.kind == "gzip":
            return self._gzip.flush()
        if self.kind == "br":
            return bytes(self._br.finish())
        return self._zstd.flush()


def compress(data: bytes, kind: str) -> bytes:
    """Whole-body compression with deterministic output (gzip mtime fixed at 0)."""
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "br":
        return bytes(brotli.compress(data))
    return zstandard.ZstdCompressor().compress(data)


def decompress(data: bytes, kind: str) -> bytes:
    """Request bodies may be compressed too; decode them for recording and parsing."""
    kind = kind.strip().lower()
    if kind in {"gzip", "x-gzip"}:
        return gzip.decompress(data)
    if kind == "deflate":
        return zlib.decompress(data)
    if kind == "br":
        return bytes(brotli.decompress(data))
    if kind == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


# --- the server ----------------------------------------------------------------------------------


@dataclass
class _Request:
    head: bytes
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    sni: str | None


class FakeUpstream:
    """The fake provider server; `start()` inside an event loop, or use `start_in_thread`."""

    def __init__(self, pki: TestPKI) -> None:
        self.pki = pki
        self._recorded: list[dict[str, Any]] = []
        self._held: list[asyncio.Future[None]] = []
        self._sni: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    # lifecycle

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self._on_sni
        return ctx

    def _on_sni(self, ssl_object: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name:
            self._sni[ssl_object] = server_name

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen and return the bound port."""
        self._server = await asyncio.start_server(
            self._serve,
            host,
            port,
            ssl=self.ssl_context(),
            limit=MAX_HEAD,
            backlog=1024,
            ssl_handshake_timeout=10,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop open keep-alive connections (wait_closed waits for them)."""
        if self._server is None:
            return
        self._server.close()
        self.release()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    # recorder and holds

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every provider request received so far (control requests excluded)."""
        return list(self._recorded)

    def reset(self) -> int:
        count = len(self._recorded)
        self._recorded.clear()
        return count

    def release(self) -> int:
        """Let every stream held by `x-fake-hold-first` continue."""
        held, self._held = self._held, []
        for future in held:
            if not future.done():
                future.set_result(None)
        return len(held)

    # connection handling

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        sni = self._sni.get(writer.get_extra_info("ssl_object"))
        try:
            while True:
                request = await self._read_request(reader, writer, sni)
                if request is None:
                    break
                if not await self._respond(request, reader, writer):
                    break
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,
            ssl.SSLError,
            ValueError,
        ):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sni: str | None
    ) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        if "content-encoding" in headers:
            body = decompress(body, headers["content-encoding"])
        return _Request(head, method.upper(), target, version, headers, body, sni)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def _respond(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must not be reused."""
        path, _, query_string = request.target.partition("?")
        keep_alive = _keep_alive(request)
        if ws_wire.is_upgrade(request.method, request.headers):
            host = request.headers.get("host", "").lower().rsplit(":", 1)[0]
            await ws_wire.serve(
                request.head, path, host, request.headers, reader, writer, self._record_ws, _abort
            )
            return False
        if path.startswith("/__fake/"):
            status, payload = self._control(request.method, path)
            body = json.dumps(payload).encode()
            reply = Reply(status=status, headers=[("content-type", "application/json")], body=body)
            return await self._send_plain(reply, reply.body, writer, keep_alive, cut=False)

        host = request.headers.get("host", "").lower()
        host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        scenario_header = request.headers.get("x-fake-scenario", "ok")
        scenarios = frozenset(s.strip().lower() for s in scenario_header.split(",") if s.strip())
        route = resolve(
            request.method, host, path, query, request.headers.get("x-fake-provider", "").lower()
        )
        try:
            parsed: Any = json.loads(request.body) if request.body else None
        except ValueError:
            parsed = None
        call = Call(
            method=request.method,
            host=host,
            path=path,
            query=query,
            headers=request.headers,
            body=request.body,
            json=parsed,
            provider=route.provider,
            scenarios=scenarios or frozenset({"ok"}),
            events=_int_header(request.headers, "x-fake-events", catalog.DEFAULT_EVENTS, 1),
        )
        self._record(request, call)

        error_code = next((s[6:] for s in sorted(call.scenarios) if s.startswith("error-")), None)
        try:
            reply = route.error(call, error_code) if error_code else route.handler(call)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            reply = Reply(
                status=500,
                headers=[("content-type", "text/plain")],
                body=b"fake upstream bug: see its stderr",
            )
        if reply.status != 200:
            return await self._send_plain(reply, reply.body, writer, keep_alive, cut=False)
        delay = _int_header(request.headers, "x-fake-delay-ms", 0, 0) / 1000
        if reply.chunks is None:
            body = reply.body
            if "malformed" in call.scenarios:
                body = truncated(body.decode()).encode()
            if delay:
                await asyncio.sleep(delay)
            return await self._send_plain(
                reply, body, writer, keep_alive, cut="cut" in call.scenarios, call=call
            )
        hold = request.headers.get("x-fake-hold-first", "") not in {"", "0", "false"}
        return await self._send_stream(reply, call, writer, keep_alive, delay=delay, hold=hold)

    def _record(self, request: _Request, call: Call) -> None:
        self._recorded.append(
            {
                "seq": len(self._recorded),
                "method": request.method,
                "host": request.headers.get("host", ""),
                "path": request.target,
                "headers": request.headers,
                "body": request.body.decode("utf-8", errors="replace"),
                "json": call.json,
                "sni": request.sni,
                "provider": call.provider,
                "scenario": ",".join(sorted(call.scenarios)),
            }
        )

    def _record_ws(self, entry: dict[str, Any]) -> None:
        """A client message on a WebSocket: one record each (what it sent, what it got)."""
        entry["seq"] = len(self._recorded)
        entry["sni"] = None
        self._recorded.append(entry)

    def _control(self, method: str, path: str) -> tuple[int, Any]:
        if path == "/__fake/requests" and method == "GET":
            return 200, self._recorded
        if path == "/__fake/reset" and method == "POST":
            return 200, {"cleared": self.reset()}
        if path == "/__fake/release" and method == "POST":
            return 200, {"released": self.release()}
        if path == "/__fake/held" and method == "GET":
            return 200, {"held": len(self._held)}
        return 404, {"error": f"unknown control endpoint {method} {path}"}

    # writing

    async def _send_plain(
        self,
        reply: Reply,
        body: bytes,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
        *,
        cut: bool,
        call: Call | None = None,
    ) -> bool:
        """A Content-Length response; `cut` sends half the body and drops the connection."""
        headers = list(reply.headers)
        encoding = _encoding(call.scenarios) if call else None
        if encoding:
            body = compress(body, encoding)
            headers.append(("content-encoding", encoding))
        headers.append(("content-length", str(len(body))))
        head = _head(reply.status, headers, close=not keep_alive)
        if cut:
            writer.write(head + body[: len(body) // 2])
            await writer.drain()
            await _abort(writer)
            return False
        writer.write(head + body)
        await writer.drain()
        return keep_alive

    async def _send_stream(
        self,
        reply: Reply,
        call: Call,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
        *,
        delay: float,
        hold: bool,
    ) -> bool:
        """A chunked response, one chunk per event, with the stream scenarios applied."""
        chunks = list(reply.chunks or [])
        mid = len(chunks) // 2
        if "malformed" in call.scenarios and reply.garbage:
            chunks.insert(mid, reply.garbage)
        if "stream-error" in call.scenarios and reply.error_event:
            chunks = (
                chunks[:mid] + [reply.error_event] + ([reply.error_tail] * bool(reply.error_tail))
            )
        cut = "cut" in call.scenarios
        limit = max(1, len(chunks) // 2) if cut else len(chunks)

        headers = [*reply.headers, ("transfer-encoding", "chunked")]
        encoding = _encoding(call.scenarios)
        encoder = _Encoder(encoding) if encoding else None
        if encoding:
            headers.append(("content-encoding", encoding))
        pending = _head(reply.status, headers, close=not keep_alive)
        release: asyncio.Future[None] | None = None
        if hold:  # register before the first event leaves, so a fast release is never lost
            release = asyncio.get_running_loop().create_future()
            self._held.append(release)

        for index, chunk in enumerate(chunks[:limit]):
            if index and delay:
                await asyncio.sleep(delay)
            data = encoder.feed(chunk) if encoder else chunk
            if data:
                writer.write(pending + _frame(data))
                pending = b""
                await writer.drain()
            if index == 0 and release is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(release), HOLD_TIMEOUT)
                if release in self._held:
                    self._held.remove(release)
        if cut:
            if pending:
                writer.write(pending)
            await writer.drain()
            await _abort(writer)
            return False
        tail = encoder.finish() if encoder else b""
        writer.write(pending + (_frame(tail) if tail else b"") + b"0\r\n\r\n")
        await writer.drain()
        return keep_alive


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _head(status: int, headers: list[tuple[str, str]], *, close: bool) -> bytes:
    reason = REASONS.get(status) or HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}", f"date: {catalog.HTTP_DATE}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("x-fake-upstream: 1")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _keep_alive(request: _Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _encoding(scenarios: frozenset[str]) -> str | None:
    return next((e for e in ENCODINGS if e in scenarios), None)


def _int_header(headers: dict[str, str], name: str, default: int, minimum: int) -> int:
    try:
        return max(minimum, int(headers.get(name, default)))
    except ValueError:
        return default


async def _abort(writer: asyncio.StreamWriter) -> None:
    """Close the TCP connection without TLS close_notify or the terminating chunk, but only
    after what was written reached the socket (abort() would discard buffered bytes)."""
    transport = writer.transport
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    for _ in range(400):
        pending = transport.get_write_buffer_size()
        if inner is not None:
            pending += inner.get_write_buffer_size()
        if not pending:
            break
        await asyncio.sleep(0.005)
    transport.abort()


def start_in_thread(
    pki: TestPKI, host: str = "127.0.0.1", port: int = 0
) -> tuple[int, Callable[[], None]]:
    """Run a server on its own event loop in a daemon thread (for benchmarks and in-process
    tests); returns the bound port and an idempotent `stop()`."""
    server = FakeUpstream(pki)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["port"] = loop.run_until_complete(server.start(host, port))
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
    thread.start()
    if not ready.wait(15):
        raise RuntimeError("fake upstream did not start within 15 s")
    if "error" in box:
        raise RuntimeError("fake upstream failed to start") from box["error"]

    def stop() -> None:
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    return int(box["port"]), stop
