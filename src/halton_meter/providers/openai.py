"""OpenAI wire formats (Chat, legacy Completions, Responses, Embeddings) and the providers
that copy them.

OpenAI's prompt count *includes* cached tokens and the completion count *includes* reasoning;
the copies deviate in small ways (providers.md §6-§7), each handled by one hook below keyed by
provider name. Unknown providers (user endpoints) get OpenAI's own conventions.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable

from ._common import (
    JsonDict,
    as_dict,
    dig,
    dumps,
    first_int,
    get_int,
    get_str,
    loads,
    minus,
    plus,
    provider_cost,
)
from .base import CallResult, RequestInfo, Route, Usage
from .errors import find_error
from .sse import SseStreamParser, decode_events
from .wireformat import Billing, PathRule, WireFormat

# ---------------------------------------------------------------------------------------------
# Chat and legacy Completions usage, per provider


def _cached(u: JsonDict) -> int | None:
    return get_int(u, "prompt_tokens_details", "cached_tokens")


def _reasoning(u: JsonDict) -> int | None:
    # Perplexity reports it at the top level, everyone else under completion_tokens_details.
    return first_int(
        get_int(u, "completion_tokens_details", "reasoning_tokens"),
        get_int(u, "reasoning_tokens"),
    )


def _chat(
    u: JsonDict,
    *,
    cache_read: int | None,
    cache_write: int | None,
    input_tokens: int | None = None,
    reasoning_outside: int | None = None,
    web_search: int | None = None,
) -> Usage:
    """The OpenAI convention, with a provider's deviations passed in explicitly.

    ``reasoning_outside`` is reasoning that the provider left out of ``completion_tokens``.
    """
    prompt = get_int(u, "prompt_tokens")
    completion = get_int(u, "completion_tokens")
    if input_tokens is None:
        input_tokens = minus(prompt, cache_read, cache_write)
    output = plus(completion, reasoning_outside) if reasoning_outside else completion
    return Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        reasoning_tokens=_reasoning(u),
        web_search_requests=web_search,
    )


def _openai_usage(u: JsonDict) -> Usage:
    """OpenAI itself, OpenRouter and unknown endpoints: both cache counts inside the prompt."""
    cache_write = get_int(u, "prompt_tokens_details", "cache_write_tokens")
    return _chat(u, cache_read=_cached(u), cache_write=cache_write)


def _no_cache_write(u: JsonDict) -> Usage:
    """Groq, Mistral, Fireworks, Cerebras: cached inside the prompt, no billed cache writes."""
    return _chat(u, cache_read=_cached(u), cache_write=0)


def _together(u: JsonDict) -> Usage:
    """Together reports the cache hit at the top level of ``usage``."""
    return _chat(u, cache_read=first_int(get_int(u, "cached_tokens"), _cached(u)), cache_write=0)


def _xai(u: JsonDict) -> Usage:
    """xAI chat leaves reasoning out of ``completion_tokens``: it must be added to be billed."""
    return _chat(u, cache_read=_cached(u), cache_write=0, reasoning_outside=_reasoning(u))


def _deepseek(u: JsonDict) -> Usage:
    """DeepSeek splits the prompt into cache hit and miss counts."""
    hit = first_int(get_int(u, "prompt_cache_hit_tokens"), _cached(u))
    miss = first_int(
        get_int(u, "prompt_cache_miss_tokens"), minus(get_int(u, "prompt_tokens"), hit)
    )
    return _chat(u, cache_read=hit, cache_write=0, input_tokens=miss)


def _perplexity(u: JsonDict) -> Usage:
    """Perplexity has no prompt cache and bills searches per request."""
    searches = get_int(u, "num_search_queries")
    return _chat(u, cache_read=0, cache_write=0, web_search=searches)


def _google(u: JsonDict) -> Usage:
    """Gemini's OpenAI-compatible path leaves thinking out of ``completion_tokens``; it shows
    only as the gap between ``total_tokens`` and prompt + completion."""
    gap = minus(
        get_int(u, "total_tokens"), get_int(u, "prompt_tokens"), get_int(u, "completion_tokens")
    )
    usage = _chat(u, cache_read=_cached(u), cache_write=0, reasoning_outside=gap or None)
    if gap:
        usage.reasoning_tokens = gap
    return usage


_CHAT_USAGE: dict[str, Callable[[JsonDict], Usage]] = {
    "groq": _no_cache_write,
    "mistral": _no_cache_write,
    "fireworks": _no_cache_write,
    "cerebras": _no_cache_write,
    "together": _together,
    "xai": _xai,
    "deepseek": _deepseek,
    "perplexity": _perplexity,
    "google": _google,
}


def chat_usage(provider: str, usage: JsonDict) -> Usage:
    """Normalise a Chat/Completions ``usage`` with the provider's hook (OpenAI's by default)."""
    return _CHAT_USAGE.get(provider, _openai_usage)(usage)


def _usage_of(obj: object) -> JsonDict | None:
    """``usage``, or Groq's ``x_groq.usage`` when only that is present."""
    return as_dict(dig(obj, "usage")) or as_dict(dig(obj, "x_groq", "usage"))


# ---------------------------------------------------------------------------------------------
# Responses and Embeddings usage


def responses_usage(usage: JsonDict, output: object) -> Usage:
    """Responses: like Chat with ``input_tokens``/``output_tokens``; each built-in web search
    is an output item of type ``web_search_call``."""
    cached = get_int(usage, "input_tokens_details", "cached_tokens")
    cache_write = get_int(usage, "input_tokens_details", "cache_write_tokens")
    return Usage(
        input_tokens=minus(get_int(usage, "input_tokens"), cached, cache_write),
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        output_tokens=get_int(usage, "output_tokens"),
        reasoning_tokens=get_int(usage, "output_tokens_details", "reasoning_tokens"),
        web_search_requests=_count_searches(output) if isinstance(output, list) else None,
    )


def _count_searches(items: list[object]) -> int:
    return sum(1 for item in items if dig(item, "type") == "web_search_call")


def embeddings_usage(usage: JsonDict) -> Usage:
    """Embeddings are input only."""
    return Usage(input_tokens=get_int(usage, "prompt_tokens"), output_tokens=0)


# ---------------------------------------------------------------------------------------------
# Whole bodies


def _finish(route: Route, result: CallResult, usage: JsonDict | None) -> CallResult:
    if usage is not None:
        result.tokens_complete = True
        result.raw_usage = dumps(usage)
        result.provider_cost_usd = provider_cost(route.provider, usage)
    return result


# How one wire format reads a body's usage object: (route, usage, whole body) -> Usage.
UsageReader = Callable[[Route, JsonDict, JsonDict], Usage]


def _chat_body_usage(route: Route, usage: JsonDict, body: JsonDict) -> Usage:
    return chat_usage(route.provider, usage)


def _responses_body_usage(route: Route, usage: JsonDict, body: JsonDict) -> Usage:
    return responses_usage(usage, body.get("output"))


def _embeddings_body_usage(route: Route, usage: JsonDict, body: JsonDict) -> Usage:
    return embeddings_usage(usage)


def parse_body(route: Route, obj: object, read_usage: UsageReader = _chat_body_usage) -> CallResult:
    """A whole (non-streamed) response body, already decoded."""
    body = as_dict(obj)
    if body is None:
        return CallResult()
    usage = _usage_of(body)
    result = CallResult(
        model=get_str(body, "model"),
        response_id=get_str(body, "id"),
        service_tier=get_str(body, "service_tier"),
    )
    if usage is not None:
        result.usage = read_usage(route, usage, body)
    _finish(route, result, usage)
    is_error, result.provider_error_code = find_error(body)
    if is_error:  # the dispatcher keeps stream_error only for a 2xx status
        result.stream_error, result.tokens_complete = True, False
    return result


# ---------------------------------------------------------------------------------------------
# Streams

# A JSON key followed by an object, outside any string (quotes inside strings are escaped).
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_ERROR_HINT = re.compile(rb'"error"\s*:\s*\{|"type"\s*:\s*"error"|^event:\s*error', re.M)


def _stream_errors(result: CallResult, raws: deque[bytes]) -> None:
    for name, obj in decode_events(raws):
        is_error, code = find_error(obj)
        if is_error or name == "error":
            result.stream_error = True
            result.provider_error_code = result.provider_error_code or code


class ChatStreamParser(SseStreamParser):
    """Chat and legacy Completions chunks: keeps the first chunk (id, model) and the last one
    carrying a non-null usage (Cerebras may send several; the last one is the total)."""

    def __init__(self, route: Route) -> None:
        super().__init__()
        self._route = route
        self._first: bytes | None = None
        self._usage: bytes | None = None
        self._errors: deque[bytes] = deque(maxlen=4)

    def _keep(self, raw: bytes) -> None:
        if self._first is None and b"{" in raw:
            self._first = raw
        if b"usage" in raw and _USAGE_OBJECT.search(raw):
            self._usage = raw
        if b"error" in raw and _ERROR_HINT.search(raw):
            self._errors.append(raw)

    def _build(self) -> CallResult:
        result = CallResult()
        for _, obj in decode_events(r for r in (self._first, self._usage) if r is not None):
            result.model = get_str(obj, "model") or result.model
            result.response_id = get_str(obj, "id") or result.response_id
            result.service_tier = get_str(obj, "service_tier") or result.service_tier
            usage = _usage_of(obj)
            if usage is not None:
                result.usage = chat_usage(self._route.provider, usage)
                _finish(self._route, result, usage)
        _stream_errors(result, self._errors)
        return result


_TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_TERMINAL_BYTES = tuple(name.encode() for name in _TERMINAL)


class ResponsesStreamParser(SseStreamParser):
    """Responses events: usage only arrives in the terminal event; ``response.created`` gives
    id and model if the stream is cut, and finished ``web_search_call`` items are counted."""

    def __init__(self, route: Route) -> None:
        super().__init__()
        self._route = route
        self._created: bytes | None = None
        self._terminal: deque[bytes] = deque(maxlen=4)
        self._searches: deque[bytes] = deque(maxlen=256)
        self._errors: deque[bytes] = deque(maxlen=4)

    def _keep(self, raw: bytes) -> None:
        if self._created is None and b"response.created" in raw:
            self._created = raw
        if any(name in raw for name in _TERMINAL_BYTES):
            self._terminal.append(raw)  # content quoting the name is weeded out in _build
        if b"web_search_call" in raw and b"response.output_item.done" in raw:
            self._searches.append(raw)
        if b"error" in raw and _ERROR_HINT.search(raw):
            self._errors.append(raw)

    def _build(self) -> CallResult:
        terminals = [obj for _, obj in decode_events(self._terminal)]
        created = next((obj for _, obj in decode_events([self._created or b""])), None)
        result = responses_result(self._route, created, terminals)
        if result.usage.web_search_requests is None and self._searches:
            done = sum(
                1
                for _, obj in decode_events(self._searches)
                if dig(obj, "type") == "response.output_item.done"
                and dig(obj, "item", "type") == "web_search_call"
            )
            result.usage.web_search_requests = done or None
        _stream_errors(result, self._errors)
        return result


def responses_result(route: Route, created: object, terminals: list[object]) -> CallResult:
    """A Responses call from its decoded events, SSE or WebSocket alike: the last terminal
    event's response (usage, model, id, error), else ``response.created``'s (id and model of a
    cut call, no usage)."""
    response: JsonDict | None = None
    terminal = False
    for obj in terminals:
        if dig(obj, "type") in _TERMINAL and as_dict(dig(obj, "response")) is not None:
            response, terminal = as_dict(dig(obj, "response")), True
    if response is None:
        response = as_dict(dig(created, "response"))
    result = CallResult()
    if response is not None:
        result.model = get_str(response, "model")
        result.response_id = get_str(response, "id")
        result.service_tier = get_str(response, "service_tier")
    usage = as_dict(dig(response, "usage")) if terminal else None
    if usage is not None:
        result.usage = responses_usage(usage, dig(response, "output"))
        _finish(route, result, usage)
    failed, code = find_error(response)
    if failed:
        result.stream_error, result.provider_error_code = True, code
    return result


# ---------------------------------------------------------------------------------------------
# The wire formats


class OpenAIChat(WireFormat):
    """Chat Completions: JSON bodies, SSE chunks; usage in a stream only when asked."""

    name = "openai-chat"
    paths: tuple[PathRule, ...] = (PathRule("/chat/completions", "chat"),)
    asks_stream_usage = True
    _read_usage: UsageReader = staticmethod(_chat_body_usage)

    def sse_parser(self, route: Route) -> SseStreamParser:
        return ChatStreamParser(route)

    def parse_body(self, route: Route, obj: object) -> CallResult:
        return parse_body(route, obj, self._read_usage)


class OpenAICompletions(OpenAIChat):
    """Legacy Completions: Chat's usage and stream shape."""

    name = "openai-completions"
    paths = (PathRule("/completions", "completions"),)


class OpenAIResponses(OpenAIChat):
    """Responses: usage arrives in the terminal event; web searches are output items."""

    name = "openai-responses"
    paths: tuple[PathRule, ...] = (PathRule("/responses", "responses"),)
    asks_stream_usage = False
    websocket = True
    _read_usage = staticmethod(_responses_body_usage)

    def sse_parser(self, route: Route) -> SseStreamParser:
        return ResponsesStreamParser(route)

    def parse_request(self, route: Route, body: bytes) -> RequestInfo:
        """Over a WebSocket the request is the `response.create` message: the same body with
        a `type`, and `generate: false` for a warm-up that generates nothing."""
        request = loads(body)
        return RequestInfo(
            model=get_str(request, "model"),
            stream=dig(request, "stream") is True,
            warmup=dig(request, "generate") is False,
        )

    def socket_result(
        self, route: Route, created: bytes | None, terminal: bytes | None
    ) -> CallResult:
        """The server's messages are the SSE stream's events, one JSON object each. A wrapped
        error (`{"type":"error","status":429,"error":{…}}`) ends the call like an error body."""
        created_obj = loads(created) if created else None
        terminal_obj = loads(terminal) if terminal else None
        result = responses_result(route, created_obj, [terminal_obj])
        if dig(terminal_obj, "type") == "error":
            result.tokens_complete = False
            result.stream_error = True
            _, result.provider_error_code = find_error(terminal_obj)
        return result


class ChatGPTCodex(OpenAIResponses):
    """Codex CLI logged in with a ChatGPT plan: the ChatGPT backend's Responses endpoints
    (`chatgpt.com/backend-api/codex`, WebSocket and SSE, same events and usage as the API).
    Paid by the plan, not per token; `/responses/compact` is Codex's remote compaction."""

    name = "chatgpt-codex"
    paths: tuple[PathRule, ...] = (
        PathRule("/responses", "responses"),
        PathRule("/responses/compact", "responses_compact"),
    )
    billing = Billing.SUBSCRIPTION
    declarable = False


class OpenAIEmbeddings(OpenAIChat):
    """Embeddings: input only; a large body is read from its tail, past the vectors."""

    name = "openai-embeddings"
    paths = (PathRule("/embeddings", "embeddings"),)
    asks_stream_usage = False
    _read_usage = staticmethod(_embeddings_body_usage)

    def parse_whole(self, route: Route, body: bytes) -> CallResult:
        decoded = _embeddings_tail(body) or loads(body)
        return CallResult() if decoded is None else self.parse_body(route, decoded)


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


CHAT = OpenAIChat()
COMPLETIONS = OpenAICompletions()
RESPONSES = OpenAIResponses()
CHATGPT_CODEX = ChatGPTCodex()
EMBEDDINGS = OpenAIEmbeddings()
# The family as a host serves it below one base path.
FAMILY = (CHAT, COMPLETIONS, RESPONSES, EMBEDDINGS)
