"""From a captured call's facts to a ledger row: the rules of what a row says.

The proxy side (capture/) only collects facts; on the ledger writer thread the call hands them
over (`PendingCall.facts`, where bodies are decoded and parsed) and the writer's `RowBuilder`
applies the rules: error class, latency, model, price (`pricing.price_row`, with the user's
overrides) and attribution (the `Attributor`, settling the connection's pending lookup). The
overrides and the attributor live here, once, not in every call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from halton_meter.attribution.resolver import Attribution, Attributor, Lookup, project_tag
from halton_meter.ledger.row import LedgerRow, utc_iso_ms
from halton_meter.pricing import PriceOverride, RowFacts, price_row
from halton_meter.providers import BILLING_UNKNOWN, classify_error, ratelimits, row_billing
from halton_meter.providers.base import CallResult, RequestInfo, Route


@dataclass(slots=True)
class CallFacts:
    """Everything known about one call once its bodies are parsed."""

    id: str
    route: Route
    host: str
    started_at: float  # epoch seconds
    finished_at: float | None
    first_byte_at: float | None
    tapped: bool  # the response was read as a stream, chunk by chunk
    request: RequestInfo
    result: CallResult
    http_status: int | None
    failure: str | None  # "timeout" or "network" when the connection failed
    project: str | None  # the proxy URL's tag as sent (the writer makes it a slug); None: none
    user_agent: str | None
    lookup: Lookup | None = None  # the client connection's pending attribution lookup
    # Decided by the caller (the self-test): no resolver is asked.
    attribution: Attribution | None = None
    billing: str = BILLING_UNKNOWN  # api | subscription | unknown (decided in the hook)
    # The response's rate-limit/quota header families and the account label they describe.
    quota_headers: ratelimits.Snapshot | None = None
    quota_account: str | None = None
    # The raw bodies (bodies/material.py), as references: kept only if the project captures.
    body: object | None = None


class PendingCall(ABC):
    """A finished call waiting for the writer thread. `facts` runs there, never in a hook."""

    __slots__ = ()

    @abstractmethod
    def facts(self) -> CallFacts: ...


class RowBuilder:
    """The writer side's rules; one per writer, holding the price overrides and the
    attributor (None: rows take the tag, or the default project)."""

    def __init__(
        self,
        overrides: Sequence[PriceOverride] = (),
        attributor: Attributor | None = None,
        default_project: str = "misc",
        on_row: Sequence[Callable[[LedgerRow, CallFacts], None]] = (),
    ) -> None:
        self.overrides = tuple(overrides)
        # Told of each row as soon as it is built, on the writer thread and before the commit:
        # the budgets' running totals (budgets/tracker.py: a limit is seen at once) and body
        # capture (bodies/sink.py). None of them may raise.
        self.on_row = tuple(on_row)
        self.attributor = attributor
        self.default_project = default_project

    def build(self, facts: CallFacts) -> LedgerRow:
        row = self._build(facts)
        for observer in self.on_row:
            observer(row, facts)
        return row

    def _build(self, facts: CallFacts) -> LedgerRow:
        result, request, route = facts.result, facts.request, facts.route
        usage = result.usage
        error_class = facts.failure or classify_error(facts.http_status, result.provider_error_code)
        if error_class is None and result.stream_error:
            # An error event inside a successful response with no code we know.
            error_class = "server_error"
        status = "ok" if error_class is None else "error"
        latency = None
        if facts.finished_at is not None:
            latency = round((facts.finished_at - facts.started_at) * 1000, 3)
        ttft = None
        if facts.tapped and facts.first_byte_at is not None:
            ttft = round((facts.first_byte_at - facts.started_at) * 1000, 3)
        model = result.model or request.model or route.model_from_path
        quote = price_row(
            RowFacts(
                provider=route.provider,
                wire=route.wire,
                api=route.api,
                model=model,
                usage=usage,
                requested_at=datetime.fromtimestamp(facts.started_at, tz=UTC),
                service_tier=result.service_tier,
                provider_cost_usd=result.provider_cost_usd,
                status=status,
                error_class=error_class,
            ),
            self.overrides,
        )
        who = self._attribution(facts)
        row = LedgerRow(
            id=facts.id,
            requested_at=utc_iso_ms(facts.started_at),
            provider=route.provider,
            api=route.api,
            host=facts.host,
            model=model,
            model_requested=request.model or route.model_from_path,
            stream=facts.tapped or request.stream,
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            web_search_requests=usage.web_search_requests,
            http_status=facts.http_status,
            status=status,
            error_class=error_class,
            provider_error_code=result.provider_error_code,
            latency_ms=latency,
            ttft_ms=ttft,
            tokens_complete=result.tokens_complete,
            response_id=result.response_id,
            service_tier=result.service_tier,
            user_agent=facts.user_agent,
            project=who.project,
            cost_nanousd=quote.cost_nanousd,
            price_source=quote.price_source,
            provider_cost_usd=result.provider_cost_usd,
            raw_usage=result.raw_usage,
            attribution=who.layer,
            attribution_detail=who.detail,
            client_process=who.client_process,
            wire=route.wire,
            billing=row_billing(route.wire, facts.billing),
            quota_account=facts.quota_account if facts.quota_headers else None,
            quota_headers=ratelimits.dumps(facts.quota_headers) if facts.quota_headers else None,
            model_family=route.model_family,
            cloud_region=route.region,
            cloud_project=route.cloud_project,
            git_branch=who.git_branch,
            git_commit=who.git_commit,
        )
        return row

    def _attribution(self, facts: CallFacts) -> Attribution:
        if facts.attribution is not None:
            return facts.attribution
        if self.attributor is None:  # no resolver (tools that build rows themselves)
            tag = project_tag(facts.project)
            layer = "tag" if tag else "default"
            return Attribution(tag or self.default_project, layer, None, "{}")
        return self.attributor.attribute(facts.lookup, facts.project, facts.user_agent)
