"""`python -m tests.fakeupstream --port 0 --pki DIR [--ready-file F]`: run the fake upstream.

Prints the bound port on stdout and writes it (atomically) to the ready file once listening,
so a parent process can wait for the file instead of parsing output; exits 0 on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from .certs import make_test_pki
from .server import FakeUpstream


async def _main(args: argparse.Namespace) -> None:
    server = FakeUpstream(make_test_pki(args.pki))
    port = await server.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(port, flush=True)
    if args.ready_file:
        ready = Path(args.ready_file)
        tmp = ready.with_name(f".{ready.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, ready)
    await stop.wait()
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakeupstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--pki", type=Path, required=True, help="directory for the test PKI")
    parser.add_argument("--ready-file", type=Path, help="written with the port once listening")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
