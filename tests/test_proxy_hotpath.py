"""The daemon's hot path trimmings keep mitmproxy's behaviour: capture/dispatch.py (order, a
failing handler logged and skipped, AddonHalt, sync and async handlers, a changed chain) and
capture/slim.py (only the addons used are imported)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest
from mitmproxy import exceptions, hooks, options
from mitmproxy.addons import core
from mitmproxy.master import Master
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.test import tflow

from halton_meter.capture.dispatch import fast_dispatch


class Recorder:
    def __init__(self, name: str, seen: list[str], *, fail: bool = False, halt: bool = False):
        self.name, self.seen, self.fail, self.halt = name, seen, fail, halt

    def requestheaders(self, flow: object) -> None:
        self.seen.append(self.name)
        if self.fail:
            raise ValueError(f"{self.name} broke")
        if self.halt:
            raise exceptions.AddonHalt()


class AsyncRecorder:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def requestheaders(self, flow: object) -> None:
        await asyncio.sleep(0)
        self.seen.append("async")


class Parent:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen
        self.addons = [Recorder("child", seen)]

    def requestheaders(self, flow: object) -> None:
        self.seen.append("parent")


def test_fast_dispatch_keeps_order_errors_halt_and_chain_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[list[str]]:
        master = Master(options.Options())
        seen: list[str] = []
        master.addons.add(
            core.Core(),
            Recorder("first", seen, fail=True),
            Parent(seen),
            AsyncRecorder(seen),
            Recorder("halt", seen, halt=True),
            Recorder("never", seen),
        )
        fast_dispatch(master.addons)
        flow = tflow.tflow()
        rounds = []
        await master.addons.trigger_event(http_layer.HttpRequestHeadersHook(flow))
        rounds.append(list(seen))
        seen.clear()
        master.addons.remove(master.addons.get("first"))  # addons go by their `name`
        master.addons.add(Recorder("late", seen))
        await master.addons.trigger_event(http_layer.HttpRequestHeadersHook(flow))
        rounds.append(list(seen))
        seen.clear()
        await master.addons.trigger_event(hooks.UpdateHook([flow]))  # nobody handles it
        rounds.append(list(seen))
        return rounds

    with caplog.at_level(logging.ERROR):
        rounds = asyncio.run(scenario())
    assert rounds[0] == ["first", "parent", "child", "async", "halt"]
    assert any("Addon error: first broke" in r.getMessage() for r in caplog.records)
    # The chain changed: "first" is gone, "late" comes after the halting one (never reached).
    assert rounds[1] == ["parent", "child", "async", "halt"]
    assert rounds[2] == []


def test_daemon_imports_only_the_addons_it_uses() -> None:
    """In a fresh interpreter, as `halton-meter daemon` does it: the daemon module imports, its
    addons load, and mitmproxy's unused default addons (onboarding's web app…) do not."""
    code = (
        "import sys\n"
        "from halton_meter.capture.slim import load_addons_on_demand\n"
        "assert load_addons_on_demand()\n"
        "import halton_meter.capture.daemon\n"
        "from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig\n"
        "print(sorted(m for m in sys.modules if m.startswith('mitmproxy.addons.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout
    for used in ("core", "next_layer", "proxyserver", "tlsconfig", "upstream_auth"):
        assert f"'mitmproxy.addons.{used}'" in loaded
    for unused in ("onboarding", "browser", "savehar", "script", "clientplayback"):
        assert f"'mitmproxy.addons.{unused}'" not in loaded


def test_requests_and_responses_still_build_without_the_debug_typecheck() -> None:
    """After skip_debug_typechecks, mitmproxy's messages build as under `python -O`: a wrong
    type is no longer refused, a right one still works."""
    code = (
        "from mitmproxy import http\n"
        "from halton_meter.capture.slim import skip_debug_typechecks\n"
        "try:\n"
        "    http.ResponseData(b'HTTP/1.1', 200, 'wrong', http.Headers(), b'', None, 0.0, None)\n"
        "    print('checked: no')\n"
        "except TypeError:\n"
        "    print('checked: yes')\n"
        "assert skip_debug_typechecks()\n"
        "http.ResponseData(b'HTTP/1.1', 200, 'wrong', http.Headers(), b'', None, 0.0, None)\n"
        "r = http.Response.make(201, b'ok', {'content-type': 'text/plain'})\n"
        "assert (r.status_code, r.content) == (201, b'ok')\n"
        "assert r.headers['content-type'] == 'text/plain'\n"
        "print('after: built')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["checked:", "yes", "after:", "built"]


def test_writes_of_one_event_leave_as_one_and_in_order() -> None:
    """capture/writes.py: during one server_event each connection's writes are joined; the
    bytes and their order are kept, a half-close comes after them, and writes outside an event
    go straight through."""
    import socket
    from dataclasses import dataclass

    from halton_meter.capture.writes import JoinedWriter, joining

    @dataclass
    class IO:
        writer: object

    async def scenario() -> tuple[list[bytes], list[bytes], bytes, bytes]:
        loop = asyncio.get_running_loop()
        ends = [socket.socketpair() for _ in range(2)]
        writers, readers, sent = [], [], []
        for ours, theirs in ends:
            _, writer = await asyncio.open_connection(sock=ours)
            calls: list[bytes] = []
            transport_write = writer.transport.write

            def counted(data: bytes, calls: list[bytes] = calls, inner=transport_write) -> None:
                calls.append(bytes(data))
                inner(data)

            writer.transport.write = counted  # type: ignore[method-assign]
            writers.append(writer)
            sent.append(calls)
            theirs.setblocking(False)
            readers.append(theirs)

        class Handler:
            def __init__(self) -> None:
                self.transports = {"client": IO(writers[0]), "server": IO(writers[1])}

            async def server_event(self, event: str) -> None:
                client = self.transports["client"].writer
                server = self.transports["server"].writer
                client.write(b"HTTP/1.1 200 OK\r\n\r\n")  # type: ignore[attr-defined]
                server.write(b"POST / HTTP/1.1\r\n\r\n")  # type: ignore[attr-defined]
                client.write(b"body")  # type: ignore[attr-defined]
                if event == "close":
                    server.write(b"{}")  # type: ignore[attr-defined]
                    server.write_eof()  # type: ignore[attr-defined]

        handler = Handler()
        event = joining(Handler.server_event)
        await event(handler, "data")
        assert isinstance(handler.transports["client"].writer, JoinedWriter)
        handler.transports["client"].writer.write(b"!")  # type: ignore[attr-defined]
        await event(handler, "close")
        await asyncio.sleep(0.05)
        received = [await loop.sock_recv(r, 4096) for r in readers]
        for r, (ours, _) in zip(readers, ends, strict=True):
            r.close()
            ours.close()
        return sent[0], sent[1], received[0], received[1]

    to_client, to_server, client_got, server_got = asyncio.run(scenario())
    assert to_client == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"!", b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert to_server == [b"POST / HTTP/1.1\r\n\r\n", b"POST / HTTP/1.1\r\n\r\n{}"]
    assert client_got == b"HTTP/1.1 200 OK\r\n\r\nbody!HTTP/1.1 200 OK\r\n\r\nbody"
    assert server_got == b"POST / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\n\r\n{}"
