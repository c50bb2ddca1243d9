"""A blocked call's answer, in the provider's own error shape, so each SDK raises its usual
error class and shows the message.

429 everywhere: Anthropic's `rate_limit_error` (anthropic.RateLimitError), OpenAI's
`insufficient_quota` (openai.RateLimitError, the code OpenAI uses for an exhausted balance),
Gemini's `RESOURCE_EXHAUSTED` (google.genai.errors.ClientError). `x-should-retry: false` tells
the Anthropic and OpenAI SDKs not to retry a refusal that will not change on its own.
"""

from __future__ import annotations

import json

STATUS = 429


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
