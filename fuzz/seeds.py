"""Well-formed samples of each kind of input: the starting corpus of every fuzz target.

Small and realistic: what a provider, a client or a user sends on a good day. The fuzzers
mutate these; `python -m fuzz.seeds` writes them to fuzz/corpus/<target>/ (kept in the repo).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"


def sse(*events: Any, names: tuple[str | None, ...] = (), done: bool = False) -> bytes:
    """An event stream of JSON data events (with `event:` names when given)."""
    out = []
    for index, obj in enumerate(events):
        name = names[index] if index < len(names) else None
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {json.dumps(obj)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


ANTHROPIC_STREAM = sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "claude-sonnet-4-5",
            "usage": {"input_tokens": 12, "cache_read_input_tokens": 3, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
    names=(
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ),
)
ANTHROPIC_BODY = json.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi"}],
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 4,
            "cache_creation": {"ephemeral_1h_input_tokens": 4},
            "output_tokens": 7,
            "service_tier": "standard",
        },
    }
).encode()
ANTHROPIC_ERROR = sse(
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    names=("error",),
)

CHAT_CHUNKS = [
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4.1",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4.1",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    },
]
CHAT_USAGE = {
    "prompt_tokens": 9,
    "completion_tokens": 2,
    "total_tokens": 11,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
CHAT_STREAM = sse(
    *CHAT_CHUNKS,
    {"id": "chatcmpl-1", "model": "gpt-4.1", "choices": [], "usage": CHAT_USAGE},
    done=True,
)
CHAT_BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {**CHAT_USAGE, "cost": 0.00012},
    }
).encode()
RESPONSES_STREAM = sse(
    {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5"}},
    {"type": "response.output_text.delta", "delta": "Hi"},
    {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "model": "gpt-5",
            "service_tier": "default",
            "usage": {
                "input_tokens": 9,
                "input_tokens_details": {"cached_tokens": 1},
                "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 3},
            },
        },
    },
    names=("response.created", "response.output_text.delta", "response.completed"),
)
EMBEDDINGS_BODY = json.dumps(
    {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2]}],
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
).encode()
OPENAI_ERROR = json.dumps(
    {"error": {"message": "Rate limit", "type": "requests", "code": "rate_limit_exceeded"}}
).encode()

GEMINI_CHUNKS = [
    {
        "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    },
    {
        "candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 8,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 4,
            "cachedContentTokenCount": 0,
            "totalTokenCount": 14,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    },
]
GEMINI_SSE = sse(*GEMINI_CHUNKS)
GEMINI_ARRAY = ("[" + ",\r\n".join(json.dumps(c, indent=2) for c in GEMINI_CHUNKS) + "]").encode()
CODE_ASSIST_SSE = sse(*({"response": chunk} for chunk in GEMINI_CHUNKS))

RESPONSES = [
    ANTHROPIC_STREAM,
    ANTHROPIC_BODY,
    ANTHROPIC_ERROR,
    CHAT_STREAM,
    CHAT_BODY,
    RESPONSES_STREAM,
    EMBEDDINGS_BODY,
    OPENAI_ERROR,
    GEMINI_SSE,
    GEMINI_ARRAY,
    CODE_ASSIST_SSE,
]
REQUESTS = [
    json.dumps(
        {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ),
    json.dumps(
        {
            "model": "gpt-4.1",
            "stream": True,
            "stream_options": {"include_usage": False},
            "messages": [],
        }
    ),
    json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []}),
    json.dumps({"model": "gemini-2.5-pro", "request": {"contents": []}}),
    json.dumps({"model": "text-embedding-3-small", "input": "hi"}),
]

EDGE_HEADS = [
    b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n"
    b"Proxy-Authorization: Basic cHJvajp4\r\n\r\n",
    b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n",
    b"GET http://example.test/a?b=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
    b"POST http://example.test:8080/p HTTP/1.1\r\nContent-Length: 2\r\nProxy-Connection: "
    b"keep-alive\r\n\r\nhi",
    b"POST http://example.test/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nhi\r\n0\r\n\r\n",
    b"GET /status HTTP/1.1\r\nHost: edge\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
]

CONFIG = b"""\
[daemon]
proxy_port = 8081
internal_port = 8090
api_port = 8765
log_level = "info"

[upstream]
proxy = "http://user:pass@proxy.example:3128"
resolve = { "api.openai.com:443" = "127.0.0.1:9443" }

[tagging]
default_project = "misc"

[[tagging.rules]]
project = "web"
path = "~/src/web/**"

[display]
currency = "EUR"
usd_rate = 0.92

[cors]
allow_origins = ["http://localhost:3000"]

[cloud]
privacy = "metadata"
sync_interval_seconds = 30
batch_size = 500

[[endpoints]]
host = "llm.internal"
port = 8443
wire = "openai-chat"
provider = "internal"

[[pricing.overrides]]
provider = "internal"
model = "llama-3"
input_mtok = 0.5
output_mtok = 1.5
"""

WIRE_ROW: dict[str, Any] = {
    "id": "0190a1b2c3d4e5f6a7b8c9d0",
    "requested_at": "2025-06-01T12:00:00.123Z",
    "provider": "openai",
    "api": "chat",
    "host": "api.openai.com",
    "model": "gpt-4.1",
    "model_requested": "gpt-4.1",
    "stream": True,
    "input_tokens": 100,
    "cache_read_tokens": 10,
    "cache_write_tokens": None,
    "output_tokens": 20,
    "reasoning_tokens": 0,
    "http_status": 200,
    "status": "ok",
    "latency_ms": 812.5,
    "ttft_ms": 120.0,
    "tokens_complete": True,
    "project": "web",
    "cost_nanousd": 1234,
    "price_source": "genai-prices",
    "provider_cost_usd": "0.000123",
    "wire": "openai-chat",
}
INGEST = json.dumps(
    {
        "workspace_id": "0b6f1b9e-2f7a-4c44-9a55-0d7c1d3f5e21",
        "machine_id": "7d3c2b1a-0f9e-4d8c-b7a6-5e4f3d2c1b0a",
        "rows": [WIRE_ROW],
    }
).encode()


def seeds() -> dict[str, list[bytes]]:
    """Target name -> its seed inputs (the prefix bytes pick a route and the cut points)."""
    return {
        "edge_head": list(EDGE_HEADS),
        "stream": [bytes([i, 0, 7]) + body for i, body in enumerate(RESPONSES)],
        "body": [
            bytes([i, 0]) + body
            for i, body in enumerate(RESPONSES + [r.encode() for r in REQUESTS])
        ],
        "sse": [ANTHROPIC_STREAM, CHAT_STREAM, GEMINI_SSE, RESPONSES_STREAM],
        "json_array": [GEMINI_ARRAY],
        "usage_filter": [bytes([3]) + CHAT_STREAM],
        "config": [CONFIG],
        "ingest": [INGEST],
    }


def write_corpus() -> None:
    for target, items in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for index, item in enumerate(items):
            (folder / f"seed-{index:02d}").write_bytes(item)


if __name__ == "__main__":
    write_corpus()
