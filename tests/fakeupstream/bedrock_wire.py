"""Amazon Bedrock's runtime wire format: REST-JSON bodies and AWS event-stream binary frames.

The frames are encoded here from the spec (Smithy's Amazon Event Stream Specification), on
purpose without the meter's own encoder: prelude (total length, headers length, CRC-32 of the
two), string headers, payload, CRC-32 of everything before. `InvokeModelWithResponseStream`
sends `chunk` events whose payload is `{"bytes": base64(model event), "p": padding}`, Bedrock's
`amazon-bedrock-invocationMetrics` riding on the last one; `ConverseStream` sends
`messageStart` … `messageStop` and a final `metadata` event with the usage.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from typing import Any
from urllib.parse import unquote

from . import catalog
from .reply import Call, Reply, compact

PATH = re.compile(
    r"^/model/([^/]+)/(invoke|invoke-with-response-stream|converse|converse-stream|count-tokens)$"
)
EVENT_STREAM = "application/vnd.amazon.eventstream"
ERRORS: dict[int, str] = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    block = b""
    for name, value in headers.items():
        raw = value.encode()
        block += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    prelude = struct.pack(">II", 16 + len(block) + len(payload), len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + block + payload
    return head + struct.pack(">I", zlib.crc32(head))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {
        ":event-type": kind,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, compact(payload).encode())


def exception(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, compact({"message": message}).encode())


def chunk(inner: dict[str, Any], index: int) -> bytes:
    padding = "abcdefghijklmnopqrstuvwxyz"[: 3 + index % 20]  # varies, as Bedrock's does
    payload = {"bytes": base64.b64encode(compact(inner).encode()).decode(), "p": padding}
    return event("chunk", payload)


def corrupt(data: bytes) -> bytes:
    """The same frame with one payload bit flipped: its message CRC no longer matches."""
    broken = bytearray(data)
    broken[len(broken) // 2] ^= 0x01
    return bytes(broken)


def _headers(call: Call, content_type: str) -> list[tuple[str, str]]:
    return [
        ("content-type", content_type),
        ("x-amzn-requestid", catalog.BEDROCK_REQUEST_ID),
    ]


def _anthropic_message(model: str, content: list[Any], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": catalog.BEDROCK_MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def _metrics(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputTokenCount": usage["input_tokens"],
        "outputTokenCount": usage["output_tokens"],
        "invocationLatency": 812,
        "firstByteLatency": 350,
        "cacheReadInputTokenCount": usage["cache_read_input_tokens"],
        "cacheWriteInputTokenCount": usage["cache_creation_input_tokens"],
    }


def handle(call: Call) -> Reply:
    match = PATH.match(call.path)
    assert match is not None
    model, operation = unquote(match.group(1)), match.group(2)
    pieces = catalog.text_pieces(call.events)
    if operation == "count-tokens":
        return Reply(
            headers=_headers(call, "application/json"),
            body=compact(catalog.BEDROCK_COUNT_TOKENS).encode(),
        )
    if operation == "converse":
        body = {
            "output": {"message": {"role": "assistant", "content": [{"text": "".join(pieces)}]}},
            "stopReason": "end_turn",
            "usage": catalog.BEDROCK_CONVERSE_USAGE,
            "metrics": {"latencyMs": 302},
        }
        return Reply(headers=_headers(call, "application/json"), body=compact(body).encode())
    if operation == "converse-stream":
        return _converse_stream(call, pieces)
    if ".anthropic." not in f".{model}" and "anthropic." not in model and operation == "invoke":
        body = {
            "generation": "".join(pieces),
            **catalog.BEDROCK_LLAMA_USAGE,
            "stop_reason": "stop",
        }
        return Reply(headers=_headers(call, "application/json"), body=compact(body).encode())
    usage = catalog.BEDROCK_ANTHROPIC_USAGE
    if operation == "invoke":
        content = [{"type": "text", "text": "".join(pieces)}]
        body = _anthropic_message(catalog.ANTHROPIC_MODEL, content, usage)
        headers = [
            *_headers(call, "application/json"),
            ("x-amzn-bedrock-invocation-latency", "812"),
            ("x-amzn-bedrock-input-token-count", str(usage["input_tokens"])),
            ("x-amzn-bedrock-output-token-count", str(usage["output_tokens"])),
        ]
        return Reply(headers=headers, body=compact(body).encode())
    return _invoke_stream(call, pieces, usage)


def _invoke_stream(call: Call, pieces: list[str], usage: dict[str, Any]) -> Reply:
    start_usage = {k: v for k, v in usage.items()}
    start_usage["output_tokens"] = catalog.ANTHROPIC_START_OUTPUT_TOKENS
    start = _anthropic_message(catalog.ANTHROPIC_MODEL, [], start_usage)
    start["stop_reason"] = None
    inner: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    inner += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in pieces
    ]
    delta_usage = {k: v for k, v in usage.items() if k != "cache_creation"}
    inner += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": delta_usage,
        },
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": _metrics(usage)},
    ]
    chunks = [chunk(event_obj, i) for i, event_obj in enumerate(inner)]
    if "cut-frame" in call.scenarios:  # the last frame arrives only half
        chunks[-1] = chunks[-1][: len(chunks[-1]) // 2]
    return Reply(
        headers=[
            *_headers(call, EVENT_STREAM),
            ("x-amzn-bedrock-content-type", "application/json"),
        ],
        chunks=chunks,
        garbage=corrupt(chunk({"type": "content_block_delta", "index": 0}, 99)),
        error_event=exception("throttlingException", "Too many requests, please wait."),
    )


def _converse_stream(call: Call, pieces: list[str]) -> Reply:
    chunks = [event("messageStart", {"role": "assistant", "p": "abc"})]
    chunks += [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}, "p": "ab"})
        for piece in pieces
    ]
    chunks += [
        event("contentBlockStop", {"contentBlockIndex": 0, "p": "abcd"}),
        event("messageStop", {"stopReason": "end_turn", "p": "abcdef"}),
        event(
            "metadata",
            {"usage": catalog.BEDROCK_CONVERSE_USAGE, "metrics": {"latencyMs": 300}, "p": "ab"},
        ),
    ]
    return Reply(
        headers=_headers(call, EVENT_STREAM),
        chunks=chunks,
        garbage=corrupt(
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
        ),
        error_event=exception("modelStreamErrorException", "The model stopped."),
    )


def error(call: Call, code: str) -> Reply:
    status = int(code) if code.isdigit() else 500
    name = ERRORS.get(status, "InternalServerException")
    headers = [
        ("content-type", "application/json"),
        ("x-amzn-requestid", catalog.BEDROCK_REQUEST_ID),
        ("x-amzn-errortype", f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    ]
    return Reply(status=status, headers=headers, body=compact({"message": "fake failure"}).encode())
