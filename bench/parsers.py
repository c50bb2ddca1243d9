"""Stream parser benchmark: what reading one streamed chunk costs on the proxy's event loop.

    .venv/bin/python bench/parsers.py [--rounds 200] [--out bench/results/parsers.json]

Feeds the same reply (a message start, 200 text deltas, the closing events) to each stream
parser, one network chunk per event as providers send them: Anthropic's SSE, OpenAI Chat's SSE,
and Amazon Bedrock's binary event stream (InvokeModelWithResponseStream: each frame a `chunk`
whose base64 payload is Anthropic's event). Reports the median cost of `feed` per chunk and of
`result` per stream. Target: Bedrock's per-chunk cost within 2x of the Anthropic SSE parser's.
Asserts nothing; it is not a test.
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halton_meter.providers import Route, StreamParser, route_for, stream_parser
from halton_meter.providers.eventstream import encode_message

DELTAS = 200
TARGET_RATIO = 2.0
SSE = "text/event-stream"
EVENT_STREAM = "application/vnd.amazon.eventstream"
USAGE = {
    "input_tokens": 1200,
    "cache_creation_input_tokens": 400,
    "cache_read_input_tokens": 30000,
    "output_tokens": 1,
}


def anthropic_events() -> list[dict[str, Any]]:
    start = {
        "type": "message_start",
        "message": {"id": "msg_1", "type": "message", "model": "claude-sonnet-4-5", "usage": USAGE},
    }
    deltas = [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": f" w{i}"},
        }
        for i in range(DELTAS)
    ]
    end = [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 800},
        },
        {"type": "message_stop"},
    ]
    return [start, *deltas, *end]


def anthropic_sse() -> list[bytes]:
    return [
        f"event: {e['type']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n".encode()
        for e in anthropic_events()
    ]


def openai_sse() -> list[bytes]:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4.1", "choices": []}
    out = []
    for i in range(DELTAS):
        body = {**chunk, "choices": [{"index": 0, "delta": {"content": f" w{i}"}}]}
        out.append(f"data: {json.dumps(body)}\n\n".encode())
    usage = {"prompt_tokens": 1200, "completion_tokens": 800, "total_tokens": 2000}
    out.append(f"data: {json.dumps({**chunk, 'usage': usage})}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return out


def bedrock_frames() -> list[bytes]:
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    out = []
    for i, event in enumerate(anthropic_events()):
        inner = base64.b64encode(json.dumps(event, separators=(",", ":")).encode()).decode()
        payload = json.dumps({"bytes": inner, "p": "abcdefghijklmnop"[: 4 + i % 12]}).encode()
        out.append(encode_message(headers, payload))
    return out


def route(host: str, path: str) -> Route:
    found = route_for(host, 443, path)
    assert found is not None, (host, path)
    return found


def time_parser(
    make: Callable[[], StreamParser], chunks: list[bytes], rounds: int
) -> dict[str, float]:
    per_chunk: list[float] = []
    per_result: list[float] = []
    for _ in range(rounds):
        parser = make()
        start = time.perf_counter_ns()
        for chunk in chunks:
            parser.feed(chunk)
        per_chunk.append((time.perf_counter_ns() - start) / len(chunks) / 1000)
        start = time.perf_counter_ns()
        result = parser.result()
        per_result.append((time.perf_counter_ns() - start) / 1000)
        assert result.tokens_complete and result.usage.output_tokens == 800
    return {
        "median_us_per_chunk": statistics.median(per_chunk),
        "p95_us_per_chunk": statistics.quantiles(per_chunk, n=20)[18],
        "median_us_result": statistics.median(per_result),
        "chunks": len(chunks),
        "bytes": sum(map(len, chunks)),
    }


def measure(rounds: int) -> dict[str, Any]:
    anthropic = route("api.anthropic.com", "/v1/messages")
    openai = route("api.openai.com", "/v1/chat/completions")
    bedrock = route(
        "bedrock-runtime.us-east-1.amazonaws.com",
        "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
    )
    return {
        "anthropic_sse": time_parser(
            lambda: stream_parser(anthropic, SSE), anthropic_sse(), rounds
        ),
        "openai_chat_sse": time_parser(lambda: stream_parser(openai, SSE), openai_sse(), rounds),
        "bedrock_event_stream": time_parser(
            lambda: stream_parser(bedrock, EVENT_STREAM), bedrock_frames(), rounds
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/parsers.json")
    args = parser.parse_args()
    figures = measure(args.rounds)
    for name, numbers in figures.items():
        print(
            f"{name:22} feed {numbers['median_us_per_chunk']:6.2f} us/chunk "
            f"(p95 {numbers['p95_us_per_chunk']:6.2f}), "
            f"result {numbers['median_us_result']:7.1f} us"
        )
    ratio = (
        figures["bedrock_event_stream"]["median_us_per_chunk"]
        / figures["anthropic_sse"]["median_us_per_chunk"]
    )
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"target: Bedrock per chunk <= {TARGET_RATIO:.0f}x Anthropic SSE ... {ratio:.2f}x {verdict}"
    )
    result = {
        **figures,
        "bedrock_over_anthropic": ratio,
        "target_ratio": TARGET_RATIO,
        "ok": ratio <= TARGET_RATIO,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
