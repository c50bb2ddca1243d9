"""The event loop the daemon runs on: asyncio's own, or uvloop when asked for.

`HALTON_METER_LOOP=uvloop` (with uvloop installed; not on Windows) runs the daemon on libuv's
loop, which does the transports' reads and writes and the callbacks in C. On the shared 2-core
bench machine it did not measurably lower the daemon's CPU per call (bench/README.md, issue 21:
3.39/3.29 ms asyncio against 3.72/3.25 ms uvloop, alternated), so it is not the default; the
switch is there for a quiet-machine comparison (bench/cpu_ab.py --b HALTON_METER_LOOP=uvloop).

uvloop resolves names inside `create_connection`, past `loop.getaddrinfo`, so upstream.py
wraps `create_connection` too on such a loop (the `[upstream] resolve` overrides and the guard
against our own listeners must see every outgoing connection).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

LOOP_ENV = "HALTON_METER_LOOP"

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when HALTON_METER_LOOP=uvloop and it is installed; else None (asyncio's)."""
    if os.environ.get(LOOP_ENV, "").strip().lower() != "uvloop" or sys.platform == "win32":
        return None
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # optional, not a dependency
    except ImportError:
        return None
    if sys.version_info >= (3, 14):
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory

    class Loop(uvloop.Loop):  # type: ignore[misc,unused-ignore]
        """uvloop on Python 3.13 hands task factories an `eager_start` argument that 3.13's
        own `asyncio.eager_task_factory` (which mitmproxy installs) does not take."""

        def set_task_factory(self, factory: Any) -> None:
            super().set_task_factory(None if factory is None else _without_eager_start(factory))

    return Loop


def _without_eager_start(factory: Any) -> Any:
    def create(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        kwargs.pop("eager_start", None)
        return factory(loop, coro, **kwargs)

    return create


def run(main: Coroutine[Any, Any, T]) -> T:  # noqa: UP047 (tools parse this as 3.11)
    """`asyncio.run(main)` on the loop `loop_factory` picks."""
    return asyncio.run(main, loop_factory=loop_factory())


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """For the start-up log line: which loop this process runs on."""
    return f"{type(loop).__module__}.{type(loop).__name__}"
