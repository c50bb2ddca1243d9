"""What the addon knows about one LLM call: facts, collected cheaply on the event loop.

The addon fills a `CapturedCall` with times, status and references to the raw bodies. `facts`
runs later on the ledger writer thread: that is where bodies are decompressed and parsed, so no
JSON decoding of a large body ever happens in a mitmproxy hook. What the row then says (error
class, price, project) is the writer side's business (`ledger/build.py`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from halton_meter import providers
from halton_meter.attribution.resolver import Lookup
from halton_meter.capture.decoding import decode_body
from halton_meter.ledger.build import CallFacts, PendingCall
from halton_meter.ledger.row import new_request_id
from halton_meter.providers import ratelimits
from halton_meter.providers.base import CallResult, Route, StreamParser


@dataclass(slots=True)
class CapturedCall(PendingCall):
    route: Route
    host: str
    started_at: float  # epoch seconds when the proxy got the request
    project: str | None  # the exact tag (proxy URL user part); None: the resolver decides
    user_agent: str | None
    request_body: bytes = b""
    request_encoding: str | None = None
    http_status: int | None = None
    finished_at: float | None = None
    first_byte_at: float | None = None
    response_body: bytes | None = None
    response_encoding: str | None = None
    stream_parser: StreamParser | None = None
    # Set when the connection failed: "timeout" or "network".
    failure: str | None = None
    # The meter asked upstream for stream usage the client did not ask for (OpenAI style).
    usage_injected: bool = False
    # The client connection's pending attribution lookup; settled on the writer thread.
    lookup: Lookup | None = None
    # Set on the first request of a plain-HTTP connection: done once its client is known.
    owner_known: asyncio.Future[None] | None = None
    # How the call is paid for (`api`, `subscription`, `unknown`), decided in requestheaders
    # from the wire format and the kind of credential; never the credential itself.
    billing: str = "unknown"
    # The response's rate-limit/quota header families and the account they describe.
    quota_headers: ratelimits.Snapshot | None = None
    quota_account: str | None = None
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            self.id = new_request_id(int(self.started_at * 1000))

    def facts(self) -> CallFacts:
        return CallFacts(
            id=self.id,
            route=self.route,
            host=self.host,
            started_at=self.started_at,
            finished_at=self.finished_at,
            first_byte_at=self.first_byte_at,
            tapped=self.stream_parser is not None,
            request=providers.parse_request(self.route, self._request_bytes()),
            result=self._result(),
            http_status=self.http_status,
            failure=self.failure,
            project=self.project,
            user_agent=self.user_agent,
            lookup=self.lookup,
            billing=self.billing,
            quota_headers=self.quota_headers,
            quota_account=self.quota_account,
        )

    def _request_bytes(self) -> bytes:
        if not self.request_body:
            return b""
        return decode_body(self.request_body, self.request_encoding) or b""

    def _result(self) -> CallResult:
        if self.stream_parser is not None:
            return self.stream_parser.result()
        if self.response_body is None:
            return CallResult()
        body = decode_body(self.response_body, self.response_encoding)
        if body is None:
            return CallResult()
        return providers.parse_response(self.route, body, self.http_status or 0)
