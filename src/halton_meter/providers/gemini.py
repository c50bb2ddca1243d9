"""Gemini: the Developer API (generativelanguage) and Code Assist (cloudcode-pa).

``promptTokenCount`` includes cached tokens while ``thoughtsTokenCount`` sits *outside*
``candidatesTokenCount``: input = prompt + tool-use prompt - cached, output = candidates +
thoughts. Every streamed chunk repeats cumulative usage, so chunks are merged field by field.
Code Assist wraps each response as ``{"response": {…}, "traceId": …}``.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator, Mapping
from decimal import Decimal

from ._common import JsonDict, as_dict, dumps, get_int, get_str, loads, merge_running, minus
from .base import CallResult, RequestInfo, Route, StreamParser, Usage
from .errors import find_error
from .sse import SseStreamParser, decode_events
from .wireformat import (
    BILLING_API,
    BILLING_UNKNOWN,
    Billing,
    BufferedParser,
    WireFormat,
    is_sse,
)

_KEEP_BYTES = 4 * 1024 * 1024  # SSE: recent usage-bearing events kept for result()
_SOFT_CAP = 4 * 1024 * 1024  # JSON array: buffer size that triggers trimming old objects
_HARD_CAP = 64 * 1024 * 1024  # JSON array: one object this big is given up on


def normalise(meta: JsonDict) -> Usage:
    """Map ``usageMetadata`` onto the normalised fields. Gemini omits zero counts, so a
    missing count inside a present ``usageMetadata`` is 0."""
    prompt = get_int(meta, "promptTokenCount") or 0
    tool_prompt = get_int(meta, "toolUsePromptTokenCount") or 0
    cached = get_int(meta, "cachedContentTokenCount") or 0
    thoughts = get_int(meta, "thoughtsTokenCount")
    return Usage(
        input_tokens=minus(prompt + tool_prompt, cached),
        cache_read_tokens=cached,
        cache_write_tokens=0,
        output_tokens=(get_int(meta, "candidatesTokenCount") or 0) + (thoughts or 0),
        reasoning_tokens=thoughts,
    )


class _Accumulator:
    """Folds response objects (a whole body, SSE chunks or array elements) in arrival order."""

    def __init__(self) -> None:
        self.usage: JsonDict = {}
        self.last_has_usage = False
        self.finished = False
        self.searches: int | None = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.error: tuple[bool, str | None] = (False, None)

    def add(self, obj: object) -> None:
        outer = as_dict(obj)
        if outer is None:
            return
        is_error, code = find_error(outer)
        if is_error:
            if not self.error[0]:
                self.error = (True, code)
            self.last_has_usage = False
            return
        response = as_dict(outer.get("response")) or outer  # unwrap Code Assist
        meta = as_dict(response.get("usageMetadata"))
        self.last_has_usage = meta is not None
        if meta is not None:
            merge_running(self.usage, meta)
        self.model = get_str(response, "modelVersion") or self.model
        response_id = get_str(response, "responseId") or get_str(outer, "traceId")
        self.response_id = response_id or self.response_id
        candidates = response.get("candidates")
        if isinstance(candidates, list):
            self._read_candidates([c for c in candidates if isinstance(c, dict)])

    def _read_candidates(self, candidates: list[JsonDict]) -> None:
        if any(c.get("finishReason") for c in candidates):
            self.finished = True
        queries = [as_dict(c.get("groundingMetadata")) or {} for c in candidates]
        counts = [
            len(q["webSearchQueries"])
            for q in queries
            if isinstance(q.get("webSearchQueries"), list)
        ]
        if counts:
            self.searches = sum(counts)

    def result(self, streamed: bool) -> CallResult:
        result = CallResult(model=self.model, response_id=self.response_id)
        if self.usage:
            result.usage = normalise(self.usage)
            result.usage.web_search_requests = self.searches
            result.raw_usage = dumps(self.usage)
            # A stream is whole only if its last object carried usage and a finish reason came.
            result.tokens_complete = not streamed or (self.last_has_usage and self.finished)
        if self.error[0]:  # the dispatcher keeps stream_error only for a 2xx status
            result.stream_error, result.tokens_complete = True, False
            result.provider_error_code = self.error[1]
        return result


def parse_body(route: Route, obj: object) -> CallResult:
    """A whole (non-streamed) response body, already decoded."""
    if route.api == "count_tokens":
        counted = get_int(obj, "totalTokens")
        if counted is not None:
            return CallResult(
                usage=Usage(input_tokens=counted), tokens_complete=True, raw_usage=dumps(obj)
            )
    acc = _Accumulator()
    objects = obj if isinstance(obj, list) else [obj]
    for item in objects:
        acc.add(item)
    return acc.result(streamed=isinstance(obj, list))


class GeminiSseParser(SseStreamParser):
    """``alt=sse``: keeps the recent events that carry usage, a finish reason, grounding or an
    error (bounded in bytes) plus the very last event."""

    def __init__(self) -> None:
        super().__init__()
        self._kept: deque[bytes] = deque()
        self._kept_bytes = 0
        self._last: bytes | None = None

    def _keep(self, raw: bytes) -> None:
        if b"{" not in raw:
            return
        self._last = raw
        if b"usageMetadata" in raw or b"finishReason" in raw or b"error" in raw:
            self._kept.append(raw)
            self._kept_bytes += len(raw)
            while self._kept_bytes > _KEEP_BYTES and len(self._kept) > 2:
                self._kept_bytes -= len(self._kept.popleft())

    def _build(self) -> CallResult:
        raws = list(self._kept)
        if self._last is not None and (not raws or raws[-1] is not self._last):
            raws.append(self._last)
        acc = _Accumulator()
        for _, obj in decode_events(raws):
            acc.add(obj)
        return acc.result(streamed=True)


# Where a top-level array element starts in Gemini's pretty-printed stream: a "{" at the start
# of a line (nested objects are indented, and a raw newline never occurs inside a string).
_OBJECT_START = re.compile(rb"\n,?(?:\r?\n)?\{")
_BETWEEN_OBJECTS = re.compile(r"[\s,\[\]]*")


def iter_array(buf: bytes) -> Iterator[object]:
    """Decode ``[{…},\\r\\n{…}]`` object by object, stopping quietly where it was cut."""
    text = buf.decode("utf-8", "replace")
    decoder = json.JSONDecoder(parse_float=Decimal)
    pos = 0
    while True:
        match = _BETWEEN_OBJECTS.match(text, pos)
        pos = match.end() if match else pos
        if pos >= len(text):
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return
        yield obj


class GeminiArrayParser:
    """Streams without ``alt=sse``: one JSON array arriving piecemeal. ``feed`` only appends;
    past a size cap it drops all but the last two elements (only the tail holds the totals)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._trim_at = _SOFT_CAP
        self._broken = False

    def feed(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self._parts.append(data)
            self._size += len(data)
            if self._size > self._trim_at:
                self._trim()
        except Exception:
            self._broken = True

    def _trim(self) -> None:
        buf = b"".join(self._parts)
        starts = [m.start() for m in _OBJECT_START.finditer(buf)]
        if len(starts) >= 2:
            buf = buf[starts[-2] :]
        if len(buf) > _HARD_CAP:
            self._broken = True
            buf = b""
        self._parts = [buf]
        self._size = len(buf)
        self._trim_at = self._size + _SOFT_CAP  # never re-scan on every chunk

    def result(self) -> CallResult:
        try:
            acc = _Accumulator()
            for obj in iter_array(b"".join(self._parts)):
                acc.add(obj)
            result = acc.result(streamed=True)
            if self._broken:
                result.tokens_complete = False
            return result
        except Exception:
            return CallResult()


# ---------------------------------------------------------------------------------------------
# The wire formats

METHODS = {
    "generateContent": "generate_content",
    "streamGenerateContent": "stream_generate_content",
    "embedContent": "embed_content",
    "batchEmbedContents": "batch_embed_contents",
    "countTokens": "count_tokens",
}
_STREAMED_API = "stream_generate_content"


class Gemini(WireFormat):
    """The Developer API: the model and method are in the URL (``/v1beta/models/M:method``);
    streams are SSE with ``alt=sse``, one JSON array without."""

    name = "gemini"
    zero_cost_apis = frozenset({"count_tokens"})
    _anchored = re.compile(r"/(v1[a-z0-9]*)/models/([^/:]+):(\w+)")
    _suffix = re.compile(r"/models/([^/:]+):(\w+)$")

    def match_path(self, provider: str, path: str, *, anchored: bool) -> Route | None:
        match = self._anchored.fullmatch(path) if anchored else self._suffix.search(path)
        if match is None:
            return None
        model, method = match.groups()[-2:]
        return self._route(provider, method, model)

    def _route(self, provider: str, method: str, model: str | None) -> Route | None:
        api = METHODS.get(method)
        if api is None:
            return None
        zero_cost = api in self.zero_cost_apis
        return Route(provider, self.name, api, model_from_path=model, zero_cost=zero_cost)

    def call_billing(self, headers: Mapping[str, str], path: str) -> str:
        """An API key may ride in the query (``?key=…``) instead of ``x-goog-api-key``."""
        kind = super().call_billing(headers, path)
        if kind == BILLING_UNKNOWN and ("?key=" in path or "&key=" in path):
            return BILLING_API
        return kind

    def is_streaming(self, route: Route, content_type: str | None) -> bool:
        # Without alt=sse Gemini streams one JSON array, under a JSON content type.
        return is_sse(content_type) or route.api == _STREAMED_API

    def stream_parser(self, route: Route, content_type: str | None) -> StreamParser:
        if is_sse(content_type):
            return GeminiSseParser()
        if route.api == _STREAMED_API:
            return GeminiArrayParser()
        return BufferedParser(self, route)

    def sse_parser(self, route: Route) -> StreamParser:
        return GeminiSseParser()

    def parse_request(self, route: Route, body: bytes) -> RequestInfo:
        # The model is in the URL: a large body is never decoded.
        return RequestInfo(model=route.model_from_path, stream=route.api == _STREAMED_API)

    def parse_whole(self, route: Route, body: bytes) -> CallResult:
        if body.lstrip().startswith(b"["):  # a buffered array stream, perhaps cut short
            array = GeminiArrayParser()
            array.feed(body)
            return array.result()
        return super().parse_whole(route, body)

    def parse_body(self, route: Route, obj: object) -> CallResult:
        return parse_body(route, obj)


class GeminiCodeAssist(Gemini):
    """Code Assist (``cloudcode-pa``, Gemini CLI signed in with Google): Gemini's bodies
    wrapped in ``{"response": …}``, the model in the request body, billed by subscription."""

    name = "gemini-code-assist"
    billing = Billing.SUBSCRIPTION
    _anchored = re.compile(r"/v1internal:(generateContent|streamGenerateContent|countTokens)")
    _suffix = re.compile(r":(generateContent|streamGenerateContent|countTokens)$")

    def match_path(self, provider: str, path: str, *, anchored: bool) -> Route | None:
        match = self._anchored.fullmatch(path) if anchored else self._suffix.search(path)
        return self._route(provider, match[1], None) if match is not None else None

    def parse_request(self, route: Route, body: bytes) -> RequestInfo:
        request = loads(body)
        model = get_str(request, "model") or get_str(request, "request", "model")
        if model is not None:
            model = model.removeprefix("models/")
        return RequestInfo(model=model, stream=route.api == _STREAMED_API)


GEMINI = Gemini()
CODE_ASSIST = GeminiCodeAssist()
