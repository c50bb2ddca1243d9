"""The edge on real sockets, fed hostile request heads (issue 18).

An edge runs in this process on a loopback port, with the network replaced at the one place
it is reached: the loop's getaddrinfo first does what the real one does to a name (encode it:
a NUL is a ValueError, an over-long label a UnicodeError from the idna codec, as before the
fix), then answers with a local sink instead of asking DNS. IP literals, which asyncio never
resolves, are given a name so they go the same way. Invariant: every request the edge can
parse gets a valid HTTP status; the rest is closed cleanly; no connection ends in an
unhandled error, and none stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz import seeds
from hypothesis import example, given
from hypothesis import strategies as st

from halton_meter.edge.listener import Edge, EdgeSettings, UpstreamError
from halton_meter.edge.log import JsonLog
from halton_meter.providers import claimed_hosts
from tests.conftest import free_port
from tests.fuzzing import bounded, mutations, request_heads

STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5]\d\d [^\r\n]*\r\n")
SINK_ANSWER = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


class RecordingLog(JsonLog):
    def __init__(self) -> None:
        super().__init__(None, "warning", stderr=False)
        self.errors: list[dict[str, Any]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.errors.append({"event": event, **fields})


class OfflineEdge(Edge):
    """The real edge, dialling a local sink for every name it would look up."""

    async def _dial(self, host: str, port: int, *, tls_name: str | None = None) -> Any:
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host)
            host = "ip-literal.test"  # asyncio would connect to it without a lookup
        return await super()._dial(host, port, tls_name=tls_name)


class Harness:
    def __init__(self, home: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.log = RecordingLog()
        self.port = free_port()
        settings = EdgeSettings(
            port=self.port,
            internal_port=free_port(),  # nothing listens: a claimed host falls back
            own_ports=frozenset({self.port}),
            claimed=claimed_hosts(),  # the built-in LLM hosts and host patterns
            resolve={},
            home=home,
            log_file=None,
        )
        self.edge = OfflineEdge(settings, self.log)
        self.sink_port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        sink = await asyncio.start_server(self._sink, "127.0.0.1", 0)
        self.sink_port = sink.sockets[0].getsockname()[1]
        original = self.loop.getaddrinfo

        async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(host, str):  # the encoding step of the real call, no lookup
                with contextlib.suppress(socket.gaierror):
                    socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)
                if host.endswith(".unreachable.test"):
                    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return await original("127.0.0.1", self.sink_port, *args, **kwargs)

        self.loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        await self.edge.start()

    async def _sink(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if not data.startswith(b"\x16"):  # a plain-HTTP request: answer it
                writer.write(SINK_ANSWER)
                await writer.drain()
        writer.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.edge.shutdown(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.log.close()

    def exchange(self, data: bytes) -> bytes:
        """Send `data`, end our side, read the answer until the edge closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            with contextlib.suppress(OSError):  # the edge may answer and close first
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    answer += chunk
        return answer

    def wait_idle(self) -> None:
        deadline = time.monotonic() + 10
        while self.edge.counters.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.edge.counters.active == 0


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(tmp_path_factory.mktemp("edge-fuzz"))
    running.start()
    yield running
    running.stop()


def check_answer(harness: Harness, data: bytes) -> None:
    answer = harness.exchange(data)
    if data.strip():
        assert STATUS_LINE.match(answer), (data[:200], answer[:200])
    else:
        assert answer == b""  # nothing asked, nothing answered: closed cleanly
    harness.wait_idle()
    assert not harness.log.errors, harness.log.errors


@bounded(150)
@given(st.one_of(request_heads(), mutations(seeds.EDGE_HEADS), st.binary(max_size=300)))
@example(b"CONNECT \xff\xfe\x00:443 HTTP/1.1\r\n\r\n")
@example(b"CONNECT " + b"a" * 5000 + b":443 HTTP/1.1\r\n\r\n")
@example(b"GET http://" + b"b" * 300 + b"/ HTTP/1.1\r\n\r\n")
@example(b"CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n")  # claimed, daemon down: tunnelled
@example(b"CONNECT nowhere.unreachable.test:443 HTTP/1.1\r\n\r\n")  # 502
@example(b"GET /status HTTP/1.1\r\n\r\n")
@example(b"GET / HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n")  # 431
@example(b"   ")
def test_the_edge_answers_every_request_it_can_parse(harness: Harness, data: bytes) -> None:
    check_answer(harness, data)


def test_the_original_faults_are_answered_400(harness: Harness) -> None:
    """Regression (issue 18): dropped without an answer after ValueError('embedded null
    character') and UnicodeEncodeError('idna'), from getaddrinfo."""
    for target in (b"\xff\xfe\x00:443", b"a" * 5000 + b":443"):
        answer = harness.exchange(b"CONNECT " + target + b" HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:100]
    harness.wait_idle()
    assert not harness.log.errors


def test_a_name_the_resolver_cannot_encode_is_a_502_not_a_crash(harness: Harness) -> None:
    """The dial's own guard, behind the parser's: a name that gets past the parser but that
    getaddrinfo cannot encode is an unreachable target (502), never an unhandled error."""

    async def dial() -> str:
        try:
            await Edge._dial(harness.edge, "a" * 64 + ".test", 443)
        except UpstreamError as error:
            return str(error)
        return "connected"

    said = asyncio.run_coroutine_threadsafe(dial(), harness.loop).result(10)
    assert "cannot resolve" in said
