"""The test fake upstream, plus a record of when each streamed event left it.

`python bench/timed_fake.py --pki DIR --ready-file F` runs `tests.fakeupstream.FakeUpstream`
unchanged except for two additions the benchmark needs to measure per-event latency exactly:

- a request carrying `x-bench-stream: ID` has the `time.monotonic()` of every `write` of its
  response recorded (the fake writes one SSE event per write, the head with the first);
- `GET /__fake/bench-times` returns `{ID: [t0, t1, ...]}` for the finished streams and forgets
  them.

`time.monotonic()` is CLOCK_MONOTONIC on Linux, one clock for every process, so the client can
subtract these send times from its own arrival times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakeupstream.certs import make_test_pki
from tests.fakeupstream.server import FakeUpstream, _Request

TIMES_PATH = "/__fake/bench-times"
STREAM_HEADER = "x-bench-stream"


class _TimedWriter:
    """Delegates to the real writer; notes the time of each write."""

    def __init__(self, inner: asyncio.StreamWriter, times: list[float]) -> None:
        self._inner = inner
        self._times = times

    def write(self, data: bytes) -> None:
        self._times.append(time.monotonic())
        self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedFakeUpstream(FakeUpstream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_times: dict[str, list[float]] = {}

    async def _respond(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        stream_id = request.headers.get(STREAM_HEADER)
        if stream_id is None:
            return await super()._respond(request, reader, writer)
        times: list[float] = []
        try:
            timed = _TimedWriter(writer, times)
            return await super()._respond(request, reader, timed)  # type: ignore[arg-type]
        finally:
            self._send_times[stream_id] = times

    def _control(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        if path == TIMES_PATH and method == "GET":
            times, self._send_times = self._send_times, {}
            return 200, times
        return super()._control(method, path, body)


async def _main(args: argparse.Namespace) -> None:
    server = TimedFakeUpstream(make_test_pki(args.pki))
    port = await server.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = Path(args.ready_file)
    tmp = ready.with_name(f".{ready.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, ready)
    await stop.wait()
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
