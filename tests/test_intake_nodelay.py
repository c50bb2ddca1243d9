"""The daemon's listener (capture/intake.py) serves its connections with TCP_NODELAY, as
asyncio's own servers do. asyncio sets it only on sockets whose `proto` is IPPROTO_TCP, and an
accepted socket takes the listener's: a listener made with proto 0 left Nagle on, so each
response written in two parts waited on the client's delayed ACK (~40 ms a call, found by
bench/run.py's sequential scenario)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from halton_meter.capture.intake import Intake
from tests.conftest import free_port


class _Recorder:
    """Stands in for mitmproxy's ServerInstance: notes each accepted socket's TCP_NODELAY."""

    def __init__(self) -> None:
        self.nodelay: list[int] = []
        self.seen = asyncio.Event()

    async def handle_stream(self, reader: asyncio.StreamReader, writer: Any) -> None:
        sock = writer.get_extra_info("socket")
        self.nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        self.seen.set()
        writer.close()


def test_accepted_connections_have_tcp_nodelay(tmp_path: Path) -> None:
    async def run() -> list[int]:
        intake = Intake(tmp_path, "127.0.0.1", free_port(), take_over=False)
        intake.bind()
        recorder = _Recorder()
        await intake.serve(recorder)  # type: ignore[arg-type]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", intake.port)
            await asyncio.wait_for(recorder.seen.wait(), 10)
            writer.close()
        finally:
            await intake.stop_accepting()
        return recorder.nodelay

    assert asyncio.run(run()) == [1]
