"""Provider adapters: pure functions from request and response bytes to normalised usage.

No I/O and no knowledge of the proxy: the capture layer routes a request with ``route_for``,
reads the request with ``parse_request``, and then either parses a whole body with
``parse_response`` or feeds a stream to a ``stream_parser``. Nothing here raises on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from . import anthropic, gemini, openai
from ._common import dig, get_str, loads
from .base import (
    WIRE_FORMATS,
    CallResult,
    Endpoint,
    RequestInfo,
    Route,
    StreamParser,
    Usage,
)
from .errors import classify_error
from .hosts import SELF_TEST_API, SELF_TEST_HOST, claimed_hosts, route_for
from .sse import looks_like_sse
from .stream_usage import InjectedUsageFilter, inject_stream_usage, may_inject_stream_usage

__all__ = [
    "SELF_TEST_API",
    "SELF_TEST_HOST",
    "WIRE_FORMATS",
    "CallResult",
    "Endpoint",
    "InjectedUsageFilter",
    "RequestInfo",
    "Route",
    "StreamParser",
    "Usage",
    "claimed_hosts",
    "classify_error",
    "inject_stream_usage",
    "is_streaming_response",
    "may_inject_stream_usage",
    "parse_request",
    "parse_response",
    "route_for",
    "stream_parser",
]

_GEMINI_WIRES = frozenset({"gemini", "gemini-code-assist"})
_BUFFER_CAP = 64 * 1024 * 1024  # a non-stream body read through stream_parser, at most

_BODY_PARSERS: dict[str, Callable[[Route, object], CallResult]] = {
    "anthropic-messages": anthropic.parse_body,
    "gemini": gemini.parse_body,
    "gemini-code-assist": gemini.parse_body,
}


def parse_request(route: Route, body: bytes) -> RequestInfo:
    """The model asked for and whether a stream was requested (never raises)."""
    try:
        streamed_api = route.api == "stream_generate_content"
        if route.wire == "gemini":  # the model is in the URL; skip decoding a large body
            return RequestInfo(model=route.model_from_path, stream=streamed_api)
        request = loads(body)
        if route.wire == "gemini-code-assist":
            model = get_str(request, "model") or get_str(request, "request", "model")
            if model is not None:
                model = model.removeprefix("models/")
            return RequestInfo(model=model, stream=streamed_api)
        return RequestInfo(model=get_str(request, "model"), stream=dig(request, "stream") is True)
    except Exception:
        return RequestInfo(model=route.model_from_path)


def parse_response(route: Route, body: bytes, http_status: int) -> CallResult:
    """Everything a whole, decompressed response body says (never raises).

    A buffered event stream or Gemini JSON-array stream is recognised and parsed as one.
    ``stream_error`` is only set for an error carried by a 2xx response.
    """
    try:
        if looks_like_sse(body):
            parser = stream_parser(route, "text/event-stream")
            parser.feed(body)
            result = parser.result()
        elif route.wire in _GEMINI_WIRES and body.lstrip().startswith(b"["):
            array = gemini.GeminiArrayParser()
            array.feed(body)
            result = array.result()
        else:
            decoded = _embeddings_tail(body) if route.wire == "openai-embeddings" else None
            decoded = decoded or loads(body)
            parse = _BODY_PARSERS.get(route.wire, openai.parse_body)
            result = CallResult() if decoded is None else parse(route, decoded)
        result.stream_error = result.stream_error and 200 <= http_status < 300
        return result
    except Exception:
        return CallResult()


_EMBEDDINGS_TAIL = re.compile(rb'"model"\s*:\s*("[^"]*")\s*,\s*"usage"\s*:\s*(\{[^{}]*\})\s*\}\s*$')


def _embeddings_tail(body: bytes) -> dict[str, object] | None:
    """Model and usage from the end of an embeddings response, without decoding the vectors
    (megabytes of floats) in front of them; None when the body does not end that way."""
    if len(body) < 65536:
        return None
    found = _EMBEDDINGS_TAIL.search(body[-4096:])
    if found is None:
        return None
    return {"model": loads(found[1]), "usage": loads(found[2])}


def is_streaming_response(route: Route, content_type: str | None) -> bool:
    """Whether the response must be tapped chunk by chunk rather than read whole."""
    if content_type is not None and "text/event-stream" in content_type.lower():
        return True
    # Gemini without alt=sse streams one JSON array, under a JSON content type.
    return route.wire in _GEMINI_WIRES and route.api == "stream_generate_content"


def stream_parser(route: Route, content_type: str | None) -> StreamParser:
    """A fresh incremental parser for one streamed response."""
    sse = content_type is not None and "text/event-stream" in content_type.lower()
    if route.wire in _GEMINI_WIRES:
        if sse:
            return gemini.GeminiSseParser()
        if route.api == "stream_generate_content":
            return gemini.GeminiArrayParser()
    elif sse and route.wire == "anthropic-messages":
        return anthropic.AnthropicStreamParser(route)
    elif sse and route.wire == "openai-responses":
        return openai.ResponsesStreamParser(route)
    elif sse:
        return openai.ChatStreamParser(route)
    return _BufferedParser(route)


class _BufferedParser:
    """Fallback for a body that is not a stream after all: kept whole (bounded), parsed at end."""

    def __init__(self, route: Route) -> None:
        self._route = route
        self._parts: list[bytes] = []
        self._size = 0
        self._overflowed = False

    def feed(self, data: bytes) -> None:
        try:
            self._size += len(data)
            if self._size > _BUFFER_CAP:
                self._overflowed, self._parts = True, []
            elif not self._overflowed:
                self._parts.append(bytes(data))
        except Exception:  # never let a bad chunk reach the proxy's event loop
            self._overflowed = True

    def result(self) -> CallResult:
        if self._overflowed:
            return CallResult()
        return parse_response(self._route, b"".join(self._parts), 200)
