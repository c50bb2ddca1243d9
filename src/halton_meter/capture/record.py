"""What the addon knows about one LLM call, and how it becomes a ledger row.

The addon fills a `CapturedCall` with cheap facts on the event loop (times, status, references to
the raw bodies). `to_row` runs later on the ledger writer thread: that is where bodies are
decoded and parsed, so no JSON decoding of a large body ever happens in a mitmproxy hook.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from halton_meter import providers
from halton_meter.attribution.resolver import Attribution, Attributor, Lookup
from halton_meter.capture.decoding import decode_body
from halton_meter.ledger.row import LedgerRow, new_request_id, utc_iso_ms
from halton_meter.pricing import PriceOverride, PriceQuote, price_call
from halton_meter.providers.base import CallResult, Route, StreamParser


@dataclass(slots=True)
class CapturedCall:
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
    price_overrides: tuple[PriceOverride, ...] = ()
    # The client connection's pending lookup; settled in `to_row`, on the writer thread.
    attributor: Attributor | None = None
    lookup: Lookup | None = None
    # Set on the first request of a plain-HTTP connection: done once its client is known.
    owner_known: asyncio.Future[None] | None = None
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            self.id = new_request_id(int(self.started_at * 1000))

    def to_row(self) -> LedgerRow:
        request = providers.parse_request(self.route, self._request_bytes())
        result = self._result()
        usage = result.usage
        error_class = self.failure or providers.classify_error(
            self.http_status, result.provider_error_code
        )
        if error_class is None and result.stream_error:
            # An error event inside a successful response with no code we know.
            error_class = "server_error"
        latency = None
        if self.finished_at is not None:
            latency = round((self.finished_at - self.started_at) * 1000, 3)
        ttft = None
        if self.stream_parser is not None and self.first_byte_at is not None:
            ttft = round((self.first_byte_at - self.started_at) * 1000, 3)
        model = result.model or request.model or self.route.model_from_path
        quote = self._price(model, result, error_class)
        who = self._attribution()
        return LedgerRow(
            id=self.id,
            requested_at=utc_iso_ms(self.started_at),
            provider=self.route.provider,
            api=self.route.api,
            host=self.host,
            model=model,
            model_requested=request.model or self.route.model_from_path,
            stream=self.stream_parser is not None or request.stream,
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            web_search_requests=usage.web_search_requests,
            http_status=self.http_status,
            status="ok" if error_class is None else "error",
            error_class=error_class,
            provider_error_code=result.provider_error_code,
            latency_ms=latency,
            ttft_ms=ttft,
            tokens_complete=result.tokens_complete,
            response_id=result.response_id,
            service_tier=result.service_tier,
            user_agent=self.user_agent,
            project=who.project,
            cost_nanousd=quote.cost_nanousd,
            price_source=quote.price_source,
            provider_cost_usd=result.provider_cost_usd,
            raw_usage=result.raw_usage,
            attribution=who.layer,
            attribution_detail=who.detail,
            client_process=who.client_process,
        )

    def _attribution(self) -> Attribution:
        if self.attributor is None:  # no resolver (tools that build rows themselves)
            layer = "tag" if self.project else "default"
            return Attribution(self.project or "misc", layer, None, "{}")
        return self.attributor.attribute(self.lookup, self.project, self.user_agent)

    def _price(self, model: str | None, result: CallResult, error_class: str | None) -> PriceQuote:
        """Cost at write time, with provenance. Code Assist (Gemini CLI signed in with Google)
        is billed by subscription, not per token: its rows stay unpriced rather than show an
        API list price nobody is invoiced."""
        if self.route.wire == "gemini-code-assist":
            return PriceQuote(None, None, None)
        tier = result.service_tier
        return price_call(
            provider=self.route.provider,
            model=model,
            usage=result.usage,
            requested_at=datetime.fromtimestamp(self.started_at, tz=UTC),
            service_tier=tier,
            batch=tier == "batch",
            provider_cost_usd=result.provider_cost_usd,
            zero_cost=self.route.zero_cost and error_class is None,
            overrides=self.price_overrides,
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
