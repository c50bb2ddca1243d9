"""Amazon Bedrock's runtime API: InvokeModel (and its stream), Converse (and its stream),
CountTokens, on `bedrock-runtime.<region>.amazonaws.com`.

The model is in the path (`/model/<id>/<operation>`), URL-encoded: a base id
(`anthropic.claude-sonnet-4-5-20250929-v1:0`), a cross-region or global inference profile
(`us.…`, `eu.…`, `apac.…`, `global.…`) or an ARN. That id, not the body's model, is what is
billed: a `global.` profile costs less than a regional one for newer Claude models, while the
body names the bare Anthropic model either way. So a row's model is the path's id.

Streams are AWS event-stream binary frames (`eventstream.py`), not SSE. InvokeModel's stream
carries `chunk` events whose base64 `bytes` are the model family's own events (Anthropic's
`message_start` … `message_stop`; Bedrock adds `amazon-bedrock-invocationMetrics` to the last);
ConverseStream's usage is in its final `metadata` event. Converse's `inputTokens` excludes
cache reads and writes, like Anthropic's `input_tokens`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque

from . import anthropic
from ._common import JsonDict, as_dict, dig, dumps, get_int, get_str, loads, merge_running
from .base import CallResult, RequestInfo, Route, StreamParser, Usage
from .errors import find_error
from .eventstream import EventStreamReader, Message, is_event_stream
from .wireformat import BufferedParser, WireFormat

_OPERATIONS = {
    "invoke": "invoke",
    "invoke-with-response-stream": "invoke_stream",
    "converse": "converse",
    "converse-stream": "converse_stream",
    "count-tokens": "count_tokens",
}
_STREAMED = frozenset({"invoke_stream", "converse_stream"})
# The path is already percent-decoded (hosts._clean_path): an ARN's `/` is back, so the id is
# everything between `/model/` and the last segment, which is the operation.
_PATH = re.compile(r"/model/(.+)/(" + "|".join(map(re.escape, _OPERATIONS)) + r")")
# Inference profile prefixes (geography or global) in front of `<family>.<model>`.
_PROFILE = re.compile(r"(?:us|eu|apac|jp|au|ca|in|us-gov|global)\.")
_METRICS = "amazon-bedrock-invocationMetrics"
_KEEP_LAST = 4  # message_delta and message_stop are the last chunks of an Anthropic stream


def model_family(model_id: str) -> str | None:
    """`anthropic` for `us.anthropic.claude-…` or an ARN naming it; None for an id that names
    no model (an application inference profile, a provisioned or custom model)."""
    name = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    name = _PROFILE.sub("", name, count=1) if _PROFILE.match(name) else name
    family, dot, _ = name.partition(".")
    return family.lower() if dot and family.isalnum() else None


def metrics_usage(metrics: JsonDict) -> Usage:
    """`amazon-bedrock-invocationMetrics` (or the same counts from response headers):
    input excludes the cache counts, as in Converse."""
    return Usage(
        input_tokens=get_int(metrics, "inputTokenCount"),
        cache_read_tokens=get_int(metrics, "cacheReadInputTokenCount"),
        cache_write_tokens=get_int(metrics, "cacheWriteInputTokenCount"),
        output_tokens=get_int(metrics, "outputTokenCount"),
    )


def converse_usage(usage: JsonDict) -> Usage:
    """Converse's `TokenUsage`; a 1-hour cache write shows in `cacheDetails`."""
    details = usage.get("cacheDetails")
    one_hour = None
    if isinstance(details, list):
        one_hour = sum(
            get_int(item, "inputTokens") or 0 for item in details if dig(item, "ttl") == "1h"
        )
    return Usage(
        input_tokens=get_int(usage, "inputTokens"),
        cache_read_tokens=get_int(usage, "cacheReadInputTokens"),
        cache_write_tokens=get_int(usage, "cacheWriteInputTokens"),
        cache_write_1h_tokens=one_hour,
        output_tokens=get_int(usage, "outputTokens"),
    )


def _native_usage(body: JsonDict) -> tuple[Usage, JsonDict] | None:
    """Usage in a non-Anthropic family's own InvokeModel body (Nova, Llama, Titan, Mistral,
    OpenAI-style), or its invocation metrics."""
    usage = as_dict(body.get("usage"))
    if usage is not None and "inputTokens" in usage:  # Amazon Nova
        return converse_usage(usage), usage
    if usage is not None and "prompt_tokens" in usage:  # OpenAI-style (gpt-oss, Mistral)
        return Usage(
            input_tokens=get_int(usage, "prompt_tokens"),
            output_tokens=get_int(usage, "completion_tokens"),
        ), usage
    if "prompt_token_count" in body:  # Meta Llama
        raw = {k: body.get(k) for k in ("prompt_token_count", "generation_token_count")}
        return Usage(
            input_tokens=get_int(body, "prompt_token_count"),
            output_tokens=get_int(body, "generation_token_count"),
        ), raw
    if "inputTextTokenCount" in body:  # Amazon Titan
        results = body.get("results")
        output = sum(get_int(r, "tokenCount") or 0 for r in results or [] if isinstance(r, dict))
        raw = {"inputTextTokenCount": body.get("inputTextTokenCount"), "outputTokenCount": output}
        return Usage(input_tokens=get_int(body, "inputTextTokenCount"), output_tokens=output), raw
    metrics = as_dict(body.get(_METRICS))
    if metrics is not None:
        return metrics_usage(metrics), metrics
    return None


def _error_code(body: JsonDict) -> str | None:
    """An exception name carried in a body (`__type`, `code`) or a stream's exception event."""
    for key in ("__type", "code", "type"):
        value = get_str(body, key)
        if value:
            return value.rsplit("#", 1)[-1].split(":", 1)[0]
    return None


class BedrockStreamParser:
    """Both event streams. `feed` only frames messages and keeps raw payloads (the first
    chunk, the last few, Converse's metadata, exceptions); `result` decodes them."""

    __slots__ = ("_exceptions", "_first", "_last", "_metadata", "_reader", "_route", "_stopped")

    def __init__(self, route: Route) -> None:
        self._route = route
        self._reader = EventStreamReader()
        self._first: bytes | None = None
        self._last: deque[bytes] = deque(maxlen=_KEEP_LAST)
        self._metadata: bytes | None = None
        self._exceptions: list[Message] = []
        self._stopped = False  # messageStop seen (Converse)

    def feed(self, data: bytes) -> None:
        try:
            for message in self._reader.feed(data):
                self._keep(message)
        except Exception:  # a parser bug must never break the proxied stream
            self._reader.broken = True

    def _keep(self, message: Message) -> None:
        kind = message.message_type
        if kind in ("exception", "error"):
            if len(self._exceptions) < 4:
                self._exceptions.append(message)
            return
        event = message.event_type
        if event == "chunk":
            if self._first is None:
                self._first = message.payload
            else:
                self._last.append(message.payload)
        elif event == "metadata":
            self._metadata = message.payload
        elif event == "messageStop":
            self._stopped = True

    def result(self) -> CallResult:
        try:
            result = self._build()
            if self._reader.broken or self._reader.pending:  # a bad CRC, a truncated frame
                result.tokens_complete = False
            return result
        except Exception:
            return CallResult()

    def _build(self) -> CallResult:
        converse = self._route.api == "converse_stream"
        result = self._converse() if converse else self._invoke()
        result.model = self._route.model_from_path
        for message in self._exceptions:
            result.stream_error, result.tokens_complete = True, False
            name = message.headers.get(":exception-type") or message.headers.get(":error-code")
            if name and not result.provider_error_code:
                result.provider_error_code = name[:1].upper() + name[1:]
        return result

    def _converse(self) -> CallResult:
        metadata = loads(self._metadata) if self._metadata is not None else None
        usage = as_dict(dig(metadata, "usage"))
        if usage is None:
            return CallResult()
        return CallResult(
            usage=converse_usage(usage),
            tokens_complete=self._stopped,
            raw_usage=dumps(usage),
            service_tier=get_str(metadata, "serviceTier", "type"),
        )

    def _invoke(self) -> CallResult:
        events = [e for e in map(_chunk_event, (self._first, *self._last)) if e is not None]
        usage: JsonDict = {}
        delta = stopped = False
        response_id, metrics = None, None
        for event in events:
            kind = event.get("type")
            if kind == "message_start":
                start = dict(as_dict(dig(event, "message", "usage")) or {})
                start.pop("output_tokens", None)  # a placeholder, see anthropic.py
                merge_running(usage, start)
                response_id = get_str(event, "message", "id")
            elif kind == "message_delta" and as_dict(event.get("usage")) is not None:
                merge_running(usage, event["usage"])
                delta = True
            elif kind == "message_stop":
                stopped = True
            metrics = as_dict(event.get(_METRICS)) or metrics
        if usage:
            result = CallResult(
                usage=anthropic.normalise(usage),
                tokens_complete=delta and stopped,
                raw_usage=dumps(usage),
            )
        elif metrics is not None:  # another model family: Bedrock's own count, on its last chunk
            result = CallResult(
                usage=metrics_usage(metrics), tokens_complete=True, raw_usage=dumps(metrics)
            )
        else:
            result = CallResult()
        result.response_id = response_id
        return result


def _chunk_event(payload: bytes | None) -> JsonDict | None:
    """The model's own event inside a `chunk` payload: `{"bytes": base64, "p": padding}`."""
    if payload is None:
        return None
    try:
        inner = get_str(loads(payload), "bytes")
        return as_dict(loads(base64.b64decode(inner, validate=True))) if inner else None
    except (binascii.Error, ValueError):
        return None


class Bedrock(WireFormat):
    """The Bedrock runtime: the model and operation are in the path; streams are AWS
    event-stream frames; a whole body's shape depends on the operation and model family."""

    name = "bedrock"
    zero_cost_apis = frozenset({"count_tokens"})
    _suffix = re.compile(r"/model/(.+)/(" + "|".join(map(re.escape, _OPERATIONS)) + r")$")

    def match_path(self, provider: str, path: str, *, anchored: bool) -> Route | None:
        found = _PATH.fullmatch(path) if anchored else self._suffix.search(path)
        if found is None:
            return None
        model_id, operation = found.groups()
        api = _OPERATIONS[operation]
        return Route(
            provider,
            self.name,
            api,
            model_from_path=model_id,
            zero_cost=api in self.zero_cost_apis,
            model_family=model_family(model_id),
        )

    def is_streaming(self, route: Route, content_type: str | None) -> bool:
        return is_event_stream(content_type)

    def stream_parser(self, route: Route, content_type: str | None) -> StreamParser:
        if is_event_stream(content_type):
            return BedrockStreamParser(route)
        return BufferedParser(self, route)

    def parse_request(self, route: Route, body: bytes) -> RequestInfo:
        # The model is in the URL: a large body is never decoded.
        return RequestInfo(model=route.model_from_path, stream=route.api in _STREAMED)

    def parse_response(self, route: Route, body: bytes, http_status: int) -> CallResult:
        if route.api in _STREAMED and not body.lstrip().startswith(b"{"):
            parser = BedrockStreamParser(route)  # a buffered event stream
            parser.feed(body)
            return parser.result()
        result = self.parse_whole(route, body)
        result.stream_error = result.stream_error and 200 <= http_status < 300
        if not 200 <= http_status < 300:
            decoded = as_dict(loads(body))
            if decoded is not None:
                result.provider_error_code = result.provider_error_code or _error_code(decoded)
        return result

    def parse_body(self, route: Route, obj: object) -> CallResult:
        body = as_dict(obj)
        if body is None:
            return CallResult()
        if route.api == "count_tokens":
            counted = get_int(body, "inputTokens")
            return CallResult(
                usage=Usage(input_tokens=counted),
                tokens_complete=counted is not None,
                raw_usage=dumps(body) if counted is not None else None,
                model=route.model_from_path,
            )
        if route.api == "converse":
            usage = as_dict(body.get("usage"))
            result = CallResult(
                usage=converse_usage(usage) if usage else Usage(),
                tokens_complete=usage is not None,
                raw_usage=dumps(usage) if usage else None,
                service_tier=get_str(body, "serviceTier", "type"),
            )
        elif get_str(body, "type") == "message" or "input_tokens" in (body.get("usage") or {}):
            result = anthropic.parse_body(route, body)  # Anthropic on Bedrock
            result.service_tier = None  # Bedrock's tier is not Anthropic's
        else:
            native = _native_usage(body)
            result = CallResult()
            if native is not None:
                result.usage, raw = native
                result.tokens_complete, result.raw_usage = True, dumps(raw)
            is_error, result.provider_error_code = find_error(body)
            if is_error:
                result.stream_error, result.tokens_complete = True, False
        result.model = route.model_from_path
        return result


BEDROCK = Bedrock()
