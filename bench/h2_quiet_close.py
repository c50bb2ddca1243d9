"""What real HTTP/2 clients do when an idle pooled connection is closed without a GOAWAY.

    .venv/bin/python bench/h2_quiet_close.py

The edge sees only TLS bytes in a tunnel, so it cannot send an HTTP/2 GOAWAY: ending a tunnel
to resume metering (edge/resume.py) means a bare TCP close. Whether that is safe for HTTP/2
clients was the open question (issue 14). Here: a local HTTP/2-only TLS server (the `h2`
library, ALPN `h2` only), in front of it a CONNECT proxy that ends each tunnel exactly as the
edge does (shutdown of its sending side to the client, then both sides closed) once the tunnel
has been quiet for QUIET seconds after an answer, and the real clients making CALLS calls
with a pause longer than QUIET between them, so each call after the first finds its pooled
connection closed while idle:

- httpx (`httpx2`, the Python SDKs' HTTP stack) with `http2=True`;
- undici (Node) with `allowH2: true` through its ProxyAgent;
- curl `--http2` (a transfer per URL in one invocation, spaced by `--rate`).

Printed per client: each call's outcome and the connections opened (the server speaks only
HTTP/2, so a client that fell back to HTTP/1.1 would fail every call). Nothing is asserted;
docs/architecture.md ("Metering resumes") keeps the finding, bench/results/h2_quiet_close.json
the figures.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
from tests.fakeupstream.certs import make_test_pki  # noqa: E402

QUIET = 0.3
PAUSE = 1.0
CALLS = 4
HOST = "api.anthropic.com"
NODE_DIR = ROOT / "tests" / "node"
BODY = json.dumps({"ok": True}).encode()


async def h2_serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One HTTP/2 connection: every request answered 200 with a small JSON body."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    try:
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, h2.events.StreamEnded):
                    headers = [(":status", "200"), ("content-length", str(len(BODY)))]
                    conn.send_headers(event.stream_id, headers)
                    conn.send_data(event.stream_id, BODY, end_stream=True)
            writer.write(conn.data_to_send())
            await writer.drain()
    except (OSError, h2.exceptions.ProtocolError):
        pass
    finally:
        writer.close()


class ClosingProxy:
    """CONNECT tunnels, each ended like the edge ends one once it was quiet QUIET seconds."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.tunnels = 0
        self.closed_quiet = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"CONNECT "):
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.tunnels += 1
        last = [time.monotonic()]
        answered = [False]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            while data := await src.read(65536):
                last[0] = time.monotonic()
                answered[0] = answered[0] or down
                dst.write(data)
                await dst.drain()
            dst.close()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, False)),
            asyncio.create_task(pump(up_reader, writer, True)),
        ]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.02)
            if answered[0] and time.monotonic() - last[0] >= QUIET:
                self.closed_quiet += 1
                sock = writer.get_extra_info("socket")
                sock.shutdown(socket.SHUT_WR)
                writer.close()
                up_writer.close()
                for task in tasks:
                    task.cancel()
                break


def start_servers(pki_dir: Path) -> tuple[int, ClosingProxy, Any]:
    pki = make_test_pki(pki_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.set_alpn_protocols(["h2"])
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def main() -> None:
        server = await asyncio.start_server(h2_serve, "127.0.0.1", 0, ssl=context)
        proxy = ClosingProxy(server.sockets[0].getsockname()[1])
        front = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
        found.update(port=front.sockets[0].getsockname()[1], proxy=proxy)
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True).start()
    ready.wait(10)
    return found["port"], found["proxy"], pki


def run_httpx(port: int, pki: Any) -> list[str]:
    outcomes = []
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with httpx2.Client(
        http2=True, proxy=f"http://127.0.0.1:{port}", verify=context, timeout=10
    ) as client:
        for _ in range(CALLS):
            try:
                answer = client.post(f"https://{HOST}/v1/messages", json={"x": 1})
                outcomes.append(f"{answer.http_version} {answer.status_code}")
            except httpx2.HTTPError as error:
                outcomes.append(f"error {type(error).__name__}: {error}")
            time.sleep(PAUSE)
    return outcomes


NODE_SCRIPT = r"""
const { ProxyAgent, request } = require('undici');
const fs = require('fs');
const [port, ca, calls, pause] = process.argv.slice(2);
const agent = new ProxyAgent({ uri: `http://127.0.0.1:${port}`, allowH2: true,
  requestTls: { ca: fs.readFileSync(ca), servername: 'api.anthropic.com', allowH2: true } });
(async () => {
  const out = [];
  for (let i = 0; i < Number(calls); i++) {
    try {
      const r = await request('https://api.anthropic.com/v1/messages', { method: 'POST',
        body: '{"x":1}', dispatcher: agent });
      await r.body.text();
      out.push(`${r.statusCode}`);
    } catch (e) { out.push(`error ${e.code || e.name}: ${e.message}`); }
    await new Promise((r) => setTimeout(r, Number(pause) * 1000));
  }
  console.log(JSON.stringify(out));
  process.exit(0);
})();
"""


def run_undici(port: int, pki: Any) -> list[str]:
    script = NODE_DIR / "_h2_quiet_close.cjs"
    script.write_text(NODE_SCRIPT)
    try:
        done = subprocess.run(
            ["node", str(script), str(port), str(pki.ca_cert), str(CALLS), str(PAUSE)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=NODE_DIR,
        )
    finally:
        script.unlink()
    if done.returncode != 0:
        return [f"node failed: {done.stderr.strip()[-300:]}"]
    result: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_curl(port: int, pki: Any) -> list[str]:
    url = f"https://{HOST}/v1/messages"
    per_minute = int(60 / PAUSE)
    done = subprocess.run(
        [
            *("curl", "-s", "--http2", "-x", f"http://127.0.0.1:{port}", "--cacert"),
            *(str(pki.ca_cert), "--rate", f"{per_minute}/m", "-o", "/dev/null", "-d", "{}"),
            *("-w", "%{http_version} %{http_code} connects=%{num_connects}\\n"),
            *[url] * CALLS,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stdout.strip().splitlines()
    return [*lines, f"exit {done.returncode}"]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="h2-close-"))
    try:
        port, proxy, pki = start_servers(work / "pki")
        results = {}
        for name, run in (
            ("httpx http2=True", lambda: run_httpx(port, pki)),
            ("undici allowH2", lambda: run_undici(port, pki)),
            ("curl --http2", lambda: run_curl(port, pki)),
        ):
            before = proxy.tunnels
            outcomes = run()
            results[name] = {"calls": outcomes, "connections": proxy.tunnels - before}
            print(f"{name:18} connections {proxy.tunnels - before}  {outcomes}")
        print(f"tunnels closed while quiet: {proxy.closed_quiet}")
        out = ROOT / "bench" / "results" / "h2_quiet_close.json"
        out.write_text(json.dumps({"quiet": QUIET, "pause": PAUSE, **results}, indent=2) + "\n")
        print(f"written to {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
