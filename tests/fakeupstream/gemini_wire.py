"""Gemini Developer API and Code Assist wire formats.

Google pretty-prints plain JSON bodies, separates SSE events with CRLF pairs and writes SSE
JSON with `": "` but bare `,` separators. Every streamed chunk is a whole response with
cumulative usage (early chunks lack candidatesTokenCount); without `alt=sse` the stream is
one JSON array sent element by element.
"""

from __future__ import annotations

import json
from typing import Any

from . import catalog
from .reply import Call, Reply, pretty, sse, truncated

JSON_TYPE = "application/json; charset=UTF-8"

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MESSAGES = {
    400: "API key not valid. Please pass a valid API key.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential.",
    403: "Method doesn't allow unregistered callers (callers without established identity).",
    404: "models/fake is not found for API version v1beta, or is not supported for "
    "generateContent.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}


def headers(content_type: str = JSON_TYPE) -> list[tuple[str, str]]:
    return [
        ("content-type", content_type),
        ("vary", "Origin, X-Origin, Referer"),
        ("server", "scaffolding on HTTPServer2"),
    ]


def sse_json(obj: Any) -> str:
    """Google's SSE JSON spacing: `{"a": 1,"b": 2}`."""
    return json.dumps(obj, separators=(",", ": "), ensure_ascii=False)


def _wants_search(request: dict[str, Any]) -> bool:
    tools = request.get("tools")
    if not isinstance(tools, list):
        return False
    return any(isinstance(t, dict) and ("googleSearch" in t or "google_search" in t) for t in tools)


def _candidate(text: str, *, final: bool, search: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if final:
        candidate["finishReason"] = "STOP"
        if search:
            candidate["groundingMetadata"] = {"webSearchQueries": catalog.GEMINI_WEB_SEARCH_QUERIES}
    candidate["index"] = 0
    return candidate


def usage_at(usage: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """Cumulative usage after chunk `index` of `count`; the last chunk has the final numbers."""
    if index == count - 1:
        return usage
    total_candidates = usage["candidatesTokenCount"]
    so_far = total_candidates * (index + 1) // count if index > 0 else 0
    out: dict[str, Any] = {}
    for key, value in usage.items():
        if key == "candidatesTokenCount":
            if index > 0:
                out[key] = so_far
        elif key == "totalTokenCount":
            out[key] = value - total_candidates + so_far
        else:
            out[key] = value
    return out


class _Generate:
    """One generateContent-style reply; `wrap` adds Code Assist's `{"response", "traceId"}`."""

    def __init__(self, call: Call, *, model: str, code_assist: bool) -> None:
        self.call = call
        self.model = model
        self.code_assist = code_assist
        request = call.body_dict.get("request") if code_assist else call.body_dict
        self.search = _wants_search(request if isinstance(request, dict) else {})
        self.usage = catalog.CODE_ASSIST_USAGE if code_assist else catalog.GEMINI_USAGE
        self.pieces = catalog.text_pieces(call.events)

    def response(self, candidate: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
        inner: dict[str, Any] = {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": self.model,
        }
        if self.code_assist:
            return {"response": inner, "traceId": catalog.CODE_ASSIST_TRACE_ID}
        inner["responseId"] = catalog.GEMINI_RESPONSE_ID
        return inner

    def whole(self) -> dict[str, Any]:
        candidate = _candidate("".join(self.pieces), final=True, search=self.search)
        return self.response(candidate, self.usage)

    def chunk_objects(self) -> list[dict[str, Any]]:
        count = len(self.pieces)
        return [
            self.response(
                _candidate(piece, final=i == count - 1, search=self.search),
                usage_at(self.usage, i, count),
            )
            for i, piece in enumerate(self.pieces)
        ]

    def error_object(self) -> dict[str, Any]:
        return {"error": {"code": 500, "message": MESSAGES[500], "status": "INTERNAL"}}

    def sse_reply(self) -> Reply:
        objs = self.chunk_objects()
        return Reply(
            headers=headers("text/event-stream"),
            chunks=[sse(sse_json(obj), crlf=True) for obj in objs],
            garbage=sse(truncated(sse_json(objs[len(objs) // 2])), crlf=True),
            error_event=sse(sse_json(self.error_object()), crlf=True),
        )

    def array_reply(self) -> Reply:
        """No `alt`: a JSON array streamed piecemeal: `[{...}\\n,\\r\\n{...}\\n]`."""
        objs = [pretty(obj) for obj in self.chunk_objects()]
        chunks = [("[" if i == 0 else "\n,\r\n") + text for i, text in enumerate(objs)]
        chunks.append("\n]")
        return Reply(
            headers=headers(),
            chunks=[c.encode() for c in chunks],
            garbage=("\n,\r\n" + truncated(objs[len(objs) // 2])).encode(),
            error_event=("\n,\r\n" + pretty(self.error_object())).encode(),
            error_tail=b"\n]",
        )


def generate(call: Call, model: str, method: str) -> Reply:
    """`/{version}/models/{model}:{method}` on generativelanguage.googleapis.com."""
    if method in {"embedContent", "batchEmbedContents"}:
        return _embed(call, method)
    if method == "countTokens":
        return Reply(headers=headers(), body=pretty(catalog.GEMINI_COUNT_TOKENS).encode())
    builder = _Generate(call, model=model, code_assist=False)
    if method == "generateContent":
        return Reply(headers=headers(), body=pretty(builder.whole()).encode())
    if call.query.get("alt") == "sse":
        return builder.sse_reply()
    return builder.array_reply()


def _embed(call: Call, method: str) -> Reply:
    """Embeddings on the Developer API return vectors only, no token counts."""
    vector = {"values": catalog.EMBEDDING_VECTOR}
    if method == "embedContent":
        body: dict[str, Any] = {"embedding": vector}
    else:
        requests = call.body_dict.get("requests")
        count = len(requests) if isinstance(requests, list) and requests else 1
        body = {"embeddings": [vector] * count}
    return Reply(headers=headers(), body=pretty(body).encode())


def code_assist(call: Call, method: str) -> Reply:
    """`/v1internal:{method}` on cloudcode-pa.googleapis.com (Gemini CLI, IDE plugins)."""
    if method == "countTokens":
        return Reply(headers=headers(), body=pretty(catalog.CODE_ASSIST_COUNT_TOKENS).encode())
    if method in catalog.CODE_ASSIST_CONTROL:  # a signed-in Gemini CLI's start-up
        return Reply(headers=headers(), body=pretty(catalog.CODE_ASSIST_CONTROL[method]).encode())
    if method not in {"generateContent", "streamGenerateContent"}:
        return Reply(headers=headers(), body=b"{}\n")  # control plane: no usage
    model = call.model(catalog.CODE_ASSIST_MODEL)
    builder = _Generate(call, model=model, code_assist=True)
    if method == "generateContent":
        return Reply(headers=headers(), body=pretty(builder.whole()).encode())
    if call.query.get("alt") == "sse":
        return builder.sse_reply()
    return builder.array_reply()


def error(call: Call, code: str, *, array: bool = False) -> Reply:
    """Google's error JSON (`{"error": {code, message, status, details}}`); "529" becomes 503.

    `array`: a streamGenerateContent call without `alt` gets the error inside a JSON array.
    """
    quota = code == "quota"
    status = 429 if quota else (int(code) if code.isdigit() else 500)
    if status == 529:
        status = 503
    message = MESSAGES.get(status, MESSAGES[500])
    if quota:
        message = "You exceeded your current quota, please check your plan and billing details."
    err: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if status == 429:
        err["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/"
                        "generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
        ]
    elif status == 400:
        err["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ]
    text = pretty({"error": err})
    body = f"[{text}\n]" if array else text + "\n"
    return Reply(status=status, headers=headers(), body=body.encode())
