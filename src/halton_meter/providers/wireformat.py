"""`WireFormat`: everything the meter knows about one wire format, in one object.

A wire format says which paths below a base URL it serves (and what each is: the ledger's
`api`, whether it is free), how to read a request, a whole response and a stream, whether a
response must be tapped as a stream, and how its calls are billed. `providers/registry.py`
names every one; `providers/hosts.py` says which hosts speak which.

Threads: `route`, `is_streaming` and `stream_parser` run in mitmproxy hooks and must be O(1)
without decoding JSON; `parse_request`, `parse_response` and a parser's `result` run on the
ledger writer thread. Callers go through the dispatchers in `providers/__init__.py`, which
never raise; methods here may.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from ._common import dig, get_str, loads
from .base import CallResult, RequestInfo, Route, StreamParser
from .sse import looks_like_sse

SSE_CONTENT_TYPE = "text/event-stream"
_BUFFER_CAP = 64 * 1024 * 1024  # a non-stream body read through stream_parser, at most


class Billing(StrEnum):
    """How a wire format's calls are paid for, which decides how `pricing.price_row` prices
    them."""

    METERED = "metered"  # per token at the provider's price (catalogue, overrides, reported)
    # A flat plan (Code Assist): every call is a subscription call, priced at its API-equivalent
    # value (the row's `billing` keeps it out of money spent).
    SUBSCRIPTION = "subscription"
    FREE = "free"  # the meter's own calls (self-test): cost 0, `price_source` = the wire's name


# A row's `billing` (ledger migration 6): how this one call was paid for. `api`: per token (an
# API key); `subscription`: a flat plan's login (Claude OAuth, ChatGPT, Google on Code Assist),
# its price is API-equivalent value, never money spent; `unknown`: the meter could not tell (rows
# recorded before it could), counted as spent, as they always were.
BILLING_API = "api"
BILLING_SUBSCRIPTION = "subscription"
BILLING_UNKNOWN = "unknown"
BILLING_KINDS = (BILLING_API, BILLING_SUBSCRIPTION, BILLING_UNKNOWN)
# Request headers that carry a per-token API credential on most wire formats.
_API_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


@dataclass(frozen=True, slots=True)
class PathRule:
    """A fixed path below a base URL (``/chat/completions``) and the ledger `api` it records."""

    path: str
    api: str
    zero_cost: bool = False


def is_sse(content_type: str | None) -> bool:
    return content_type is not None and SSE_CONTENT_TYPE in content_type.lower()


class WireFormat:
    """The defaults suit a JSON-over-HTTP API answering SSE streams; a wire format overrides
    what differs. Instances are immutable singletons, one per module-level name."""

    name: str = ""
    # Fixed paths below a host's base path. A path with a variable part (a model in the URL)
    # is matched by `match_path` instead.
    paths: tuple[PathRule, ...] = ()
    billing: Billing = Billing.METERED
    # APIs recorded but never billed (token counting).
    zero_cost_apis: frozenset[str] = frozenset()
    # Whether a user's `[[endpoints]] wire = "…"` may name it.
    declarable: bool = True
    # Chat-style streams that report usage only when asked (`stream_options.include_usage`).
    asks_stream_usage: bool = False
    # Also served over a WebSocket at the same paths (Responses: `GET` with `Upgrade:
    # websocket`, then one `response.create` per call); read by `socket_result`.
    websocket: bool = False

    def __repr__(self) -> str:
        return f"<wire {self.name}>"

    # --- routing (mitmproxy hooks: O(1), no body) ---------------------------------------------

    def match_path(self, provider: str, path: str, *, anchored: bool) -> Route | None:
        """A route for a path with a variable part: the whole path below the base when
        ``anchored``, else any path that ends like this wire format's (a user endpoint)."""
        return None

    def call_billing(self, headers: Mapping[str, str], path: str) -> str:
        """`billing` of one call, from the wire format's rule and the kind of credential in
        its request headers (``headers.get`` with lower-case names; mitmproxy's are
        case-insensitive). O(1) and in a hook: only the kind is kept, never the credential."""
        if self.billing is Billing.SUBSCRIPTION:
            return BILLING_SUBSCRIPTION
        if self.billing is Billing.FREE:
            return BILLING_UNKNOWN
        if any(headers.get(name) for name in _API_CREDENTIAL_HEADERS):
            return BILLING_API
        return BILLING_UNKNOWN

    def wants_stream_usage(self, route: Route) -> bool:
        """Whether a stream of this route should be asked for its usage (`asks_stream_usage`;
        a wire format whose servers accept the option only in some versions decides here)."""
        return self.asks_stream_usage

    def route(self, provider: str, rule: PathRule) -> Route:
        return Route(provider, self.name, rule.api, zero_cost=rule.zero_cost)

    def is_streaming(self, route: Route, content_type: str | None) -> bool:
        """Whether the response must be tapped chunk by chunk rather than read whole."""
        return is_sse(content_type)

    def stream_parser(self, route: Route, content_type: str | None) -> StreamParser:
        """A fresh incremental parser for one response tapped as a stream."""
        if is_sse(content_type):
            return self.sse_parser(route)
        return BufferedParser(self, route)

    def sse_parser(self, route: Route) -> StreamParser:
        raise NotImplementedError

    # --- reading (the ledger writer thread) -----------------------------------------------------

    def parse_request(self, route: Route, body: bytes) -> RequestInfo:
        """The model asked for and whether a stream was requested."""
        request = loads(body)
        return RequestInfo(model=get_str(request, "model"), stream=dig(request, "stream") is True)

    def parse_response(self, route: Route, body: bytes, http_status: int) -> CallResult:
        """Everything a whole, decompressed response body says; a buffered event stream is
        parsed as one. ``stream_error`` is only kept for an error carried by a 2xx response."""
        if looks_like_sse(body):
            parser = self.sse_parser(route)
            parser.feed(body)
            result = parser.result()
        else:
            result = self.parse_whole(route, body)
        result.stream_error = result.stream_error and 200 <= http_status < 300
        return result

    def parse_whole(self, route: Route, body: bytes) -> CallResult:
        """A body that is not an event stream: decoded, then read by `parse_body`."""
        decoded = loads(body)
        return CallResult() if decoded is None else self.parse_body(route, decoded)

    def parse_body(self, route: Route, obj: object) -> CallResult:
        """A whole (non-streamed) response body, already decoded."""
        raise NotImplementedError

    def socket_result(
        self, route: Route, created: bytes | None, terminal: bytes | None
    ) -> CallResult:
        """One call made over a WebSocket, from the raw messages the capture kept: the
        first event naming the response (``None`` if none came) and the event that ended it
        (``None`` when the socket was cut first)."""
        raise NotImplementedError


class BufferedParser:
    """Fallback for a body that is not a stream after all: kept whole (bounded), parsed at end."""

    def __init__(self, wire: WireFormat, route: Route) -> None:
        self._wire = wire
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
        try:
            return self._wire.parse_response(self._route, b"".join(self._parts), 200)
        except Exception:
            return CallResult()
