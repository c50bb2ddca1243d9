"""Asking OpenAI-style streams for their usage, invisibly to the client.

Chat and legacy Completions streams carry usage only when the request says
``stream_options.include_usage``. The meter adds it, then rewrites the response so the client
receives exactly the bytes it would have received without it: every chunk's ``"usage":null``
member goes, and the extra usage-only chunk is dropped.
"""

from __future__ import annotations

import json
import re

from ._common import loads
from .base import Route
from .registry import WIRES
from .sse import SseSplitter, parse_event

# Their streams carry usage without being asked, so the request is left alone.
_STREAMS_USAGE_ANYWAY = frozenset(
    {"groq", "mistral", "openrouter", "together", "perplexity", "cerebras"}
)
_OPEN_BRACE = re.compile(rb"\s*\{")

_MAX_HELD = 8 * 1024 * 1024  # an incomplete event this big switches the filter to pass-through
# `"usage":null` as a member (JSON quotes inside strings are escaped, so these never match text)
_USAGE_NULL = re.compile(
    rb'\s*,\s*"usage"\s*:\s*null(?=\s*[,}])|(?<=\{)\s*"usage"\s*:\s*null\s*(?:,\s*|(?=\}))'
)
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_EMPTY_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')


_INCLUDE_USAGE_TRUE = re.compile(rb'"include_usage"\s*:\s*true')


def may_inject_stream_usage(route: Route, body: bytes) -> bool:
    """Cheap byte-level pre-check (no JSON decoding), safe on the proxy's event loop: False
    when `inject_stream_usage` would certainly return None."""
    return (
        WIRES[route.wire].wants_stream_usage(route)
        and route.provider not in _STREAMS_USAGE_ANYWAY
        and not route.user_declared
        and b'"stream"' in body
        and _INCLUDE_USAGE_TRUE.search(body) is None
    )


def inject_stream_usage(route: Route, body: bytes) -> bytes | None:
    """A request body asking for stream usage, or ``None`` when none is needed or possible.

    When the body has no ``stream_options`` the member is inserted as bytes after the opening
    brace, leaving every other byte as the client sent it; otherwise the JSON is re-serialised.
    """
    if not may_inject_stream_usage(route, body):
        return None
    try:
        request = json.loads(body)
        if not isinstance(request, dict) or request.get("stream") is not True:
            return None
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return None
        if "stream_options" not in request:
            brace = _OPEN_BRACE.match(body)
            if brace is None:
                return None
            comma = b"," if request else b""
            member = b'"stream_options":{"include_usage":true}' + comma
            return body[: brace.end()] + member + body[brace.end() :]
        request["stream_options"] = {**(options if isinstance(options, dict) else {})}
        request["stream_options"]["include_usage"] = True
        return json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()
    except (ValueError, TypeError, RecursionError):  # includes unencodable lone surrogates
        return None


def _is_usage_only(raw: bytes) -> bool:
    """The chunk that exists only because we asked: ``choices: []`` and a usage object."""
    if not (_EMPTY_CHOICES.search(raw) and _USAGE_OBJECT.search(raw)):
        return False
    chunk = loads(parse_event(raw).data)
    return (
        isinstance(chunk, dict)
        and chunk.get("choices") == []
        and isinstance(chunk.get("usage"), dict)
    )


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _depth(prefix: bytes) -> int:
    """How deep in objects and arrays the end of `prefix` is (strings skipped)."""
    bare = _JSON_STRING.sub(b"", prefix)
    return bare.count(b"{") + bare.count(b"[") - bare.count(b"}") - bare.count(b"]")


def _without_usage_null(raw: bytes) -> bytes:
    """The event without the chunk's own (top-level) `"usage":null`; a nested one is the
    client's data and stays (found by fuzz/, issue 18)."""
    for match in reversed(list(_USAGE_NULL.finditer(raw))):
        if _depth(raw[: match.start()]) == 1:
            return raw[: match.start()] + raw[match.end() :]
    return raw


class InjectedUsageFilter:
    """Rewrites an SSE byte stream whose usage the meter asked for, event by event.

    ``feed`` returns what can be forwarded now (whole events; an incomplete trailing event is
    held back) and ``flush`` returns what is held at the end, unchanged. Input chunks are never
    modified, so the capture layer can give the stream parser the original bytes. On any doubt
    the filter forwards bytes unchanged rather than risk corrupting the client's stream.
    """

    def __init__(self) -> None:
        self._splitter = SseSplitter(max_event_bytes=None)
        self._passthrough = False

    def feed(self, chunk: bytes) -> bytes:
        if self._passthrough:
            return chunk
        try:
            events = self._splitter.feed(chunk)
        except Exception:
            self._passthrough = True
            return self._splitter.take()
        out = b"".join(self._rewrite(raw) for raw in events)
        if self._splitter.pending > _MAX_HELD:
            self._passthrough = True
            out += self._splitter.take()
        return out

    def flush(self) -> bytes:
        return b"" if self._passthrough else self._splitter.take()

    @staticmethod
    def _rewrite(raw: bytes) -> bytes:
        if b"usage" not in raw:
            return raw
        try:
            return b"" if _is_usage_only(raw) else _without_usage_null(raw)
        except Exception:
            return raw
