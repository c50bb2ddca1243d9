"""Anthropic Messages (also spoken by xAI, DeepSeek, OpenRouter and Together).

Anthropic's usage is additive: ``input_tokens`` already excludes cache reads and writes, so
nothing is subtracted. In a stream, ``message_start`` carries the input side and each
``message_delta`` carries running totals that overwrite, never add to, what came before.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping

from ._common import (
    JsonDict,
    as_dict,
    dig,
    dumps,
    get_int,
    get_str,
    merge_running,
    plus,
    provider_cost,
)
from .base import CallResult, Route, Usage
from .errors import find_error
from .sse import SseStreamParser, decode_events
from .wireformat import BILLING_SUBSCRIPTION, PathRule, WireFormat

# An error event: `event: error`, or a JSON `"type":"error"` outside any string.
_ERROR_HINT = re.compile(rb'^event:\s*error|"type"\s*:\s*"error"|"error"\s*:\s*\{', re.M)
_MAX_DELTAS = 64


def normalise(usage: JsonDict) -> Usage:
    """Map an Anthropic ``usage`` object onto the normalised fields (see providers.md §3)."""
    split_5m = get_int(usage, "cache_creation", "ephemeral_5m_input_tokens")
    split_1h = get_int(usage, "cache_creation", "ephemeral_1h_input_tokens")
    cache_write = get_int(usage, "cache_creation_input_tokens")
    if cache_write is None:
        cache_write = plus(split_5m, split_1h)
    return Usage(
        input_tokens=get_int(usage, "input_tokens"),
        cache_read_tokens=get_int(usage, "cache_read_input_tokens"),
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=split_1h,
        output_tokens=get_int(usage, "output_tokens"),
        reasoning_tokens=get_int(usage, "output_tokens_details", "thinking_tokens"),
        web_search_requests=get_int(usage, "server_tool_use", "web_search_requests"),
    )


def _result(route: Route, usage: JsonDict | None, complete: bool) -> CallResult:
    if usage is None:
        return CallResult()
    return CallResult(
        usage=normalise(usage),
        service_tier=get_str(usage, "service_tier"),
        tokens_complete=complete,
        provider_cost_usd=provider_cost(route.provider, usage),
        raw_usage=dumps(usage),
    )


def parse_body(route: Route, obj: object) -> CallResult:
    """A whole (non-streamed) response body, already decoded."""
    body = as_dict(obj)
    if body is None:
        return CallResult()
    if route.api == "count_tokens":
        counted = get_int(body, "input_tokens")
        result = CallResult(
            usage=Usage(input_tokens=counted),
            tokens_complete=counted is not None,
            raw_usage=dumps(body) if counted is not None else None,
        )
    else:
        usage = as_dict(body.get("usage"))
        result = _result(route, usage, complete=usage is not None)
        result.model = get_str(body, "model")
        result.response_id = get_str(body, "id")
    is_error, result.provider_error_code = find_error(body)
    if is_error:  # the dispatcher keeps stream_error only for a 2xx status
        result.stream_error, result.tokens_complete = True, False
    return result


class AnthropicStreamParser(SseStreamParser):
    """Keeps ``message_start``, the ``message_delta`` events and error events; nothing else."""

    def __init__(self, route: Route) -> None:
        super().__init__()
        self._route = route
        self._start: bytes | None = None
        self._deltas: deque[bytes] = deque(maxlen=_MAX_DELTAS)
        self._errors: deque[bytes] = deque(maxlen=4)

    def _keep(self, raw: bytes) -> None:
        if self._start is None and b"message_start" in raw:
            self._start = raw
        elif b"message_delta" in raw:
            self._deltas.append(raw)  # content mentioning the word is weeded out in _build
        elif b"error" in raw and _ERROR_HINT.search(raw):
            self._errors.append(raw)

    def _build(self) -> CallResult:
        usage: JsonDict = {}
        model = response_id = None
        complete = False
        start = self._start or b""
        for _, obj in decode_events([start]):
            if dig(obj, "type") == "message_start":
                start_usage = dict(as_dict(dig(obj, "message", "usage")) or {})
                # message_start's output count is a placeholder (1), not what was billed: only
                # a message_delta says how much output there was.
                start_usage.pop("output_tokens", None)
                merge_running(usage, start_usage)
                model = get_str(obj, "message", "model")
                response_id = get_str(obj, "message", "id")
        for _, obj in decode_events(self._deltas):
            delta_usage = as_dict(dig(obj, "usage"))
            if dig(obj, "type") == "message_delta" and delta_usage is not None:
                merge_running(usage, delta_usage)
                complete = True
        result = _result(self._route, usage or None, complete)
        result.model, result.response_id = model, response_id
        for name, obj in decode_events(self._errors):
            is_error, code = find_error(obj)
            if is_error or name == "error":
                result.stream_error = True
                result.provider_error_code = result.provider_error_code or code
        return result


class AnthropicMessages(WireFormat):
    """`POST /v1/messages` (and its free token counter), JSON bodies and SSE streams."""

    name = "anthropic-messages"
    paths = (
        PathRule("/messages", "messages"),
        PathRule("/messages/count_tokens", "count_tokens", zero_cost=True),
    )
    zero_cost_apis = frozenset({"count_tokens"})

    def call_billing(self, headers: Mapping[str, str], path: str) -> str:
        """A Claude subscription's OAuth token (``Bearer sk-ant-oat…``, sent with the
        ``oauth-…`` beta flag) is a subscription call; an API key (``x-api-key``) is API."""
        authorization = headers.get("authorization") or ""
        if authorization[7:17] == "sk-ant-oat" or "oauth-" in (headers.get("anthropic-beta") or ""):
            return BILLING_SUBSCRIPTION
        return super().call_billing(headers, path)

    def sse_parser(self, route: Route) -> AnthropicStreamParser:
        return AnthropicStreamParser(route)

    def parse_body(self, route: Route, obj: object) -> CallResult:
        return parse_body(route, obj)


MESSAGES = AnthropicMessages()
