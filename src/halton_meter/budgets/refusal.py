"""A blocked call's answer, in the provider's own error shape, so each SDK raises its usual
error class and shows the message.

429 everywhere but for Codex CLI (below): Anthropic's `rate_limit_error`
(anthropic.RateLimitError), OpenAI's `insufficient_quota` (openai.RateLimitError, the code
OpenAI uses for an exhausted balance), Gemini's `RESOURCE_EXHAUSTED`
(google.genai.errors.ClientError). `x-should-retry: false` tells the Anthropic and OpenAI SDKs
not to retry a refusal that will not change on its own.

A `response.create` on a WebSocket (Responses over a WebSocket: Codex CLI, the OpenAI SDK) is
answered with the provider's wrapped-error event instead, `{"type": "error", "status": N,
"error": {...}}`, which Codex maps exactly as it maps an HTTP error with that status and body
(openai/codex `codex-api/src/endpoint/responses_websocket.rs`, `map_wrapped_websocket_error_
event`, then `api_bridge.rs` `map_api_error`). Status 400: Codex 0.171 shows any 429 as its
own fixed text ("Quota exceeded…", "You've hit your usage limit…", "exceeded retry limit…")
without the message, and any other status (402, 403, 5xx) as retryable, so it retries and then
falls back to HTTPS; a 400 is final and shown with the message (checked against the real CLI,
tests/test_budget_socket.py). Over HTTPS Codex maps statuses the same way, so its refused
POST gets the same 400 (`http_refusal`).
"""

from __future__ import annotations

import json

STATUS = 429
SOCKET_STATUS = 400


def refusal_body(wire: str, message: str) -> tuple[bytes, dict[str, str]]:
    """(JSON body, headers) for a refusal on `wire` (providers/registry.py names)."""
    if wire.startswith("anthropic"):
        body: object = {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": message},
        }
    elif wire.startswith(("gemini", "vertex")):
        body = {"error": {"code": STATUS, "message": message, "status": "RESOURCE_EXHAUSTED"}}
    elif wire == "bedrock":
        body = {"message": message}
    else:  # the OpenAI family: chat, responses, embeddings, completions, azure, codex
        body = {
            "error": {
                "message": message,
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        }
    headers = {
        "content-type": "application/json",
        "x-should-retry": "false",
        "x-halton-meter": "budget-blocked",
    }
    if wire == "bedrock":
        headers["x-amzn-errortype"] = "ThrottlingException"
    return json.dumps(body).encode("utf-8"), headers


def http_refusal(
    wire: str, user_agent: str | None, message: str
) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, headers) for a refused HTTP call. Codex CLI on the OpenAI family
    (its User-Agent starts with its originator: `codex_exec/…`, `codex_cli_rs/…`) shows any
    429 as a fixed text without the message, so it gets the 400 its WebSocket gets."""
    is_openai = not wire.startswith(("anthropic", "gemini", "vertex")) and wire != "bedrock"
    if is_openai and (user_agent or "").lower().startswith("codex_"):
        error = json.loads(socket_refusal_event(message))["error"]
        body = json.dumps({"error": error}).encode("utf-8")
        headers = {"content-type": "application/json", "x-halton-meter": "budget-blocked"}
        return SOCKET_STATUS, body, headers
    content, headers = refusal_body(wire, message)
    return STATUS, content, headers


def socket_refusal_event(message: str) -> bytes:
    """The wrapped-error event that refuses one `response.create` on a Responses WebSocket
    (the JSON text message a server sends in place of the response's events)."""
    event = {
        "type": "error",
        "status": SOCKET_STATUS,
        "error": {
            "type": "invalid_request_error",
            "code": "budget_exceeded",
            "message": message,
            "param": None,
        },
    }
    return json.dumps(event).encode("utf-8")
