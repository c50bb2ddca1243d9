"""The daemon's hot path trimmings keep mitmproxy's behaviour: capture/dispatch.py (order, a
failing handler logged and skipped, AddonHalt, sync and async handlers, a changed chain)."""

from __future__ import annotations

import asyncio
import logging

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
