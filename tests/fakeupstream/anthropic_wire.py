"""Anthropic Messages wire format (also served by xAI, DeepSeek's /anthropic and others).

Mirrors the real API's bytes: compact JSON, `event:`/`data:` SSE pairs, the `{"type": "ping"}`
event with its space, and the whitespace padding the API puts before some closing braces.
"""

from __future__ import annotations

import json
from typing import Any

from . import catalog
from .reply import Call, Reply, compact, sse, truncated

PAD = "        "  # the real stream pads some events' JSON before the closing brace

ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages: Field required"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def headers(call: Call | None = None, *, stream: bool = False) -> list[tuple[str, str]]:
    content_type = "text/event-stream; charset=utf-8" if stream else "application/json"
    org = (call.headers.get("x-fake-org") if call else None) or catalog.ANTHROPIC_ORG_ID
    result = [
        ("content-type", content_type),
        ("request-id", catalog.ANTHROPIC_REQUEST_ID),
        ("anthropic-organization-id", org),
    ]
    if stream:
        result.append(("cache-control", "no-cache"))
    return result + rate_limit_headers(call)


def rate_limit_headers(call: Call | None) -> list[tuple[str, str]]:
    """A subscription's OAuth token gets the unified windows (`x-fake-unified-5h` sets the
    5-hour utilisation); an API key gets the standard per-minute limits."""
    if call is None:
        return []
    if call.headers.get("authorization", "").startswith("Bearer sk-ant-oat"):
        five_hour = call.headers.get("x-fake-unified-5h") or catalog.UNIFIED_5H_UTILIZATION
        return catalog.anthropic_unified_headers(five_hour)
    if call.headers.get("x-api-key"):
        return catalog.anthropic_api_limit_headers()
    return []


def _wants_thinking(call: Call) -> bool:
    thinking = call.body_dict.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in {"enabled", "adaptive"}


def final_usage(call: Call) -> dict[str, Any]:
    """The complete usage object (non-stream body; stream totals), thinking details included."""
    usage = dict(catalog.messages_usage(call.provider))
    if _wants_thinking(call):
        details = {"thinking_tokens": catalog.ANTHROPIC_THINKING_TOKENS}
        usage = _insert_after(usage, "output_tokens", "output_tokens_details", details)
    return usage


def _insert_after(d: dict[str, Any], after: str, key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out[k] = v
        if k == after:
            out[key] = value
    return out


def _start_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """`message_start` usage: the input side plus a placeholder output count."""
    out: dict[str, Any] = {}
    for key, value in usage.items():
        if key == "output_tokens":
            out[key] = catalog.ANTHROPIC_START_OUTPUT_TOKENS
        elif key not in {"server_tool_use", "output_tokens_details"}:
            out[key] = value
    return out


def _delta_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """`message_delta` usage: running totals (no TTL split, no tier)."""
    return {k: v for k, v in usage.items() if k not in {"cache_creation", "service_tier"}}


def _message(call: Call, content: list[Any], usage: dict[str, Any], *, done: bool) -> Any:
    return {
        "model": call.model(catalog.ANTHROPIC_MODEL),
        "id": catalog.ANTHROPIC_MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": "end_turn" if done else None,
        "stop_sequence": None,
        "usage": usage,
    }


def messages(call: Call) -> Reply:
    """`POST /v1/messages`, JSON or SSE depending on the request's `stream`."""
    usage = final_usage(call)
    pieces = catalog.text_pieces(call.events)
    thinking = _wants_thinking(call)
    if not call.stream:
        content: list[Any] = []
        if thinking:
            content.append(
                {
                    "type": "thinking",
                    "thinking": "".join(catalog.THINKING_TEXT_PIECES),
                    "signature": catalog.ANTHROPIC_SIGNATURE,
                }
            )
        content.append({"type": "text", "text": "".join(pieces)})
        body = compact(_message(call, content, usage, done=True))
        return Reply(headers=headers(call), body=body.encode())

    def ev(name: str, data: str) -> bytes:
        return sse(data, name)

    start = {
        "type": "message_start",
        "message": _message(call, [], _start_usage(usage), done=False),
    }
    chunks = [ev("message_start", compact(start))]
    index = 0
    if thinking:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        chunks.append(ev("content_block_start", _block_start(index, block)))
        chunks.append(ev("ping", '{"type": "ping"}'))
        for piece in catalog.THINKING_TEXT_PIECES:
            chunks.append(ev("content_block_delta", _delta(index, "thinking_delta", piece)))
        sig = {"type": "signature_delta", "signature": catalog.ANTHROPIC_SIGNATURE}
        data = {"type": "content_block_delta", "index": index, "delta": sig}
        chunks.append(ev("content_block_delta", compact(data)))
        chunks.append(ev("content_block_stop", _block_stop(index)))
        index += 1
    chunks.append(ev("content_block_start", _block_start(index, {"type": "text", "text": ""})))
    if not thinking:
        chunks.append(ev("ping", '{"type": "ping"}'))
    for piece in pieces:
        chunks.append(ev("content_block_delta", _delta(index, "text_delta", piece)))
    chunks.append(ev("content_block_stop", _block_stop(index)))
    if "multi-delta" in call.scenarios:
        chunks.append(ev("message_delta", _message_delta(_partial_usage(usage), final=False)))
    chunks.append(ev("message_delta", _message_delta(_delta_usage(usage), final=True)))
    chunks.append(ev("message_stop", '{"type":"message_stop"' + PAD + "}"))

    garbage_data = truncated(_delta(index, "text_delta", "garbage"))
    overloaded = {"type": "overloaded_error", "message": "Overloaded"}
    error_data = {"type": "error", "error": overloaded, "request_id": catalog.ANTHROPIC_REQUEST_ID}
    return Reply(
        headers=headers(call, stream=True),
        chunks=chunks,
        garbage=ev("content_block_delta", garbage_data),
        error_event=ev("error", _spaced(error_data)),
    )


def _block_start(index: int, block: dict[str, Any]) -> str:
    data = compact({"type": "content_block_start", "index": index, "content_block": block})
    return data[:-1] + PAD + "}"


def _block_stop(index: int) -> str:
    return compact({"type": "content_block_stop", "index": index})[:-1] + PAD + "}"


def _delta(index: int, kind: str, text: str) -> str:
    field = "thinking" if kind == "thinking_delta" else "text"
    delta = {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: text}}
    return compact(delta)


def _message_delta(usage: dict[str, Any], *, final: bool) -> str:
    delta = {"stop_reason": "end_turn" if final else None, "stop_sequence": None}
    return compact({"type": "message_delta", "delta": delta, "usage": usage})[:-1] + PAD + "}"


def _partial_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """An earlier running total (server tools make several `message_delta`s): overwrite, not add."""
    partial = _delta_usage(usage)
    partial["output_tokens"] = usage["output_tokens"] // 2
    if "server_tool_use" in partial:
        partial["server_tool_use"] = {k: min(v, 1) for k, v in partial["server_tool_use"].items()}
    partial.pop("output_tokens_details", None)
    return partial


def _spaced(obj: Any) -> str:
    """Stream error events use `": "` spacing, as in Anthropic's documented examples."""
    return json.dumps(obj, ensure_ascii=False)


def count_tokens(call: Call) -> Reply:
    """`POST /v1/messages/count_tokens`: free, input tokens only."""
    return Reply(headers=headers(), body=compact(catalog.ANTHROPIC_COUNT_TOKENS).encode())


def error(call: Call, code: str) -> Reply:
    """The real error JSON for `code` ("400", "429", "529", "quota", ...)."""
    if code == "quota":
        status = 429
        err: dict[str, Any] = {
            "type": "rate_limit_error",
            "message": "You have reached your specified workspace API usage limits.",
            "details": {"error_code": "enforced_spend_limit_reached"},
        }
    else:
        status = int(code) if code.isdigit() else 500
        kind, message = ERRORS.get(status, ("api_error", "Internal server error"))
        err = {"type": kind, "message": message}
    body = {"type": "error", "error": err, "request_id": catalog.ANTHROPIC_REQUEST_ID}
    extra = [("retry-after", "1")] if status == 429 else []
    return Reply(status=status, headers=headers(call) + extra, body=compact(body).encode())
