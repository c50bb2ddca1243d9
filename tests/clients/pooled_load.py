"""A pooled SDK client under load, as an agent uses it: one SDK client (one httpx pool) shared
by a few workers, each making a call (streamed or not), then thinking for a moment.

Run through the edge (HTTPS_PROXY, SSL_CERT_FILE in the environment) until the file named by
--stop exists; writes one JSON line per call to --out as it ends: when it was sent and ended,
whether it failed, the `User-Agent` that marks it in the ledger, and the local port of the
connection it used (the connection to the proxy), so a test can tell which connections went
unmetered.

    python -m tests.clients.pooled_load anthropic|openai --stop FILE --out FILE
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any


def _local_port(response: Any) -> int | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    address = stream.get_extra_info("client_addr")
    return int(address[1]) if address else None


# Milliseconds the fake provider pauses between a stream's events (--stream-pause-ms).
STREAM_PAUSE = {"ms": 0}


def _headers(marker: str, stream: bool) -> dict[str, str]:
    headers = {"User-Agent": marker}
    if stream and STREAM_PAUSE["ms"]:
        headers["x-fake-delay-ms"] = str(STREAM_PAUSE["ms"])
    return headers


def anthropic_call(client: Any, marker: str, stream: bool) -> int | None:
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Say hello"}],
        "extra_headers": _headers(marker, stream),
    }
    if stream:
        with client.messages.with_streaming_response.create(stream=True, **kwargs) as raw:
            text = "".join(raw.iter_lines())
            assert "message_stop" in text, text[-200:]
            return _local_port(raw.http_response)
    raw = client.messages.with_raw_response.create(**kwargs)
    assert raw.parse().content
    return _local_port(raw.http_response)


def openai_call(client: Any, marker: str, stream: bool) -> int | None:
    kwargs: dict[str, Any] = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Say hello"}],
        "extra_headers": _headers(marker, stream),
    }
    if stream:
        with client.chat.completions.with_streaming_response.create(stream=True, **kwargs) as raw:
            text = "".join(raw.iter_lines())
            assert "[DONE]" in text, text[-200:]
            return _local_port(raw.http_response)
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    assert raw.parse().choices
    return _local_port(raw.http_response)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["anthropic", "openai"])
    parser.add_argument("--stop", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--think", type=float, nargs=2, default=(0.6, 1.2))
    parser.add_argument("--retries", type=int, default=2)  # the SDKs' default
    parser.add_argument("--stream-pause-ms", type=int, default=0)
    parser.add_argument("--pool-per-worker", action="store_true")
    args = parser.parse_args()
    STREAM_PAUSE["ms"] = args.stream_pause_ms
    lock = threading.Lock()
    attempts: dict[str, int] = {}

    def sending(request: Any) -> None:
        """Counts each attempt of a call: a retry by the SDK shows as a second one."""
        marker = request.headers.get("user-agent", "")
        with lock:
            attempts[marker] = attempts.get(marker, 0) + 1

    def make_client() -> tuple[Any, Any]:
        if args.kind == "anthropic":
            import anthropic

            made: Any = anthropic.Anthropic(
                api_key="sk-ant-load-0001",
                max_retries=args.retries,
                http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [sending]}),
            )
            return made, anthropic_call
        import openai

        made = openai.OpenAI(
            api_key="sk-load-0001",
            max_retries=args.retries,
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [sending]}),
        )
        return made, openai_call

    shared = make_client()
    # --pool-per-worker: each worker its own SDK client (one agent each), so each connection
    # sees its worker's think time between calls; shared, the pool hands its first idle
    # connection to whichever worker asks, and under load that one is busy back to back.
    clients = [make_client() if args.pool_per_worker else shared for _ in range(args.workers)]
    out = args.out.open("a", buffering=1)
    sequence = iter(range(1_000_000))

    def work(worker: int) -> None:
        rng = random.Random(worker)
        while not args.stop.exists():
            with lock:
                number = next(sequence)
            marker = f"pooled-load/{os.getpid()}-{number}"
            sent = time.time()
            item: dict[str, Any] = {"marker": marker, "sent": sent, "stream": number % 2 == 0}
            try:
                client, call = clients[worker]
                item["port"] = call(client, marker, number % 2 == 0)
                item["error"] = None
            except Exception as error:
                item["error"] = repr(error)
            item["ended"] = time.time()
            with lock:
                item["attempts"] = attempts.get(marker, 0)
                out.write(json.dumps(item) + "\n")
            time.sleep(rng.uniform(*args.think))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client, _ in {id(c[0]): c for c in [shared, *clients]}.values():
        client.close()
    out.close()


if __name__ == "__main__":
    main()
