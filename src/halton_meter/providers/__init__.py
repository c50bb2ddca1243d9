"""Provider adapters: pure functions from request and response bytes to normalised usage.

No I/O and no knowledge of the proxy: the capture layer routes a request with ``route_for``,
reads the request with ``parse_request``, and then either parses a whole body with
``parse_response`` or feeds a stream to a ``stream_parser``. Each of these asks the route's
wire format (``WireFormat``, named in ``registry.py``). Nothing here raises on bad input.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import (
    CallResult,
    Endpoint,
    HostFamily,
    RequestInfo,
    Route,
    StreamParser,
    Usage,
)
from .claimed import ClaimedHosts
from .errors import classify_error
from .hosts import (
    GATED_HOSTS,
    SELF_TEST_API,
    SELF_TEST_HOST,
    claimed_hosts,
    route_for,
    socket_route_for,
)
from .registry import DECLARABLE, WIRES, backfill_wire, row_wire, wire_format
from .stream_usage import InjectedUsageFilter, inject_stream_usage, may_inject_stream_usage
from .websocket import message_type
from .wireformat import (
    BILLING_API,
    BILLING_KINDS,
    BILLING_SUBSCRIPTION,
    BILLING_UNKNOWN,
    Billing,
    PathRule,
    WireFormat,
)

__all__ = [
    "BILLING_API",
    "BILLING_KINDS",
    "BILLING_SUBSCRIPTION",
    "BILLING_UNKNOWN",
    "DECLARABLE",
    "GATED_HOSTS",
    "SELF_TEST_API",
    "SELF_TEST_HOST",
    "WIRES",
    "Billing",
    "CallResult",
    "ClaimedHosts",
    "Endpoint",
    "HostFamily",
    "InjectedUsageFilter",
    "PathRule",
    "RequestInfo",
    "Route",
    "StreamParser",
    "Usage",
    "WireFormat",
    "backfill_wire",
    "call_billing",
    "claimed_hosts",
    "classify_error",
    "inject_stream_usage",
    "is_streaming_response",
    "may_inject_stream_usage",
    "message_type",
    "parse_request",
    "parse_response",
    "route_for",
    "row_billing",
    "row_wire",
    "socket_result",
    "socket_route_for",
    "stream_parser",
    "wire_format",
]


def parse_request(route: Route, body: bytes) -> RequestInfo:
    """The model asked for and whether a stream was requested (never raises)."""
    try:
        return WIRES[route.wire].parse_request(route, body)
    except Exception:
        return RequestInfo(model=route.model_from_path)


def parse_response(route: Route, body: bytes, http_status: int) -> CallResult:
    """Everything a whole, decompressed response body says (never raises).

    A buffered event stream or Gemini JSON-array stream is recognised and parsed as one.
    ``stream_error`` is only set for an error carried by a 2xx response.
    """
    try:
        return WIRES[route.wire].parse_response(route, body, http_status)
    except Exception:
        return CallResult()


def is_streaming_response(route: Route, content_type: str | None) -> bool:
    """Whether the response must be tapped chunk by chunk rather than read whole."""
    return WIRES[route.wire].is_streaming(route, content_type)


def call_billing(route: Route, headers: Mapping[str, str], path: str) -> str:
    """`api`, `subscription` or `unknown` for one call, from its wire format's rule and the
    kind of credential its request carries (O(1), for a hook; never raises)."""
    try:
        return WIRES[route.wire].call_billing(headers, path)
    except Exception:
        return BILLING_UNKNOWN


def row_billing(wire: str | None, call: str | None) -> str:
    """A row's `billing`: the wire format's rule first (a subscription's surface, such as Code
    Assist or the ChatGPT backend, is always `subscription`), then what the hook saw."""
    known = wire_format(wire)
    if known is not None and known.billing is Billing.SUBSCRIPTION:
        return BILLING_SUBSCRIPTION
    return call if call in BILLING_KINDS else BILLING_UNKNOWN


def stream_parser(route: Route, content_type: str | None) -> StreamParser:
    """A fresh incremental parser for one streamed response."""
    return WIRES[route.wire].stream_parser(route, content_type)


def socket_result(route: Route, created: bytes | None, terminal: bytes | None) -> CallResult:
    """One call made over a WebSocket, from the raw messages kept for it (never raises)."""
    try:
        return WIRES[route.wire].socket_result(route, created, terminal)
    except Exception:
        return CallResult()
