"""The daemon's self-test endpoint: `https://self-test.halton-meter.invalid/v1/self-test`.

`halton-meter init` ends by sending one request there through the edge. Answering it proves the
whole metering path without any provider: the edge handed the CONNECT to the daemon, the client
trusted the certificate the daemon made with our CA (so `ca-bundle.pem` works), and the call
reached the ledger, because the answer names the row it will be written as and `init` waits
for that row. The row is real and free: provider `halton-meter`, api `self-test`, cost 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import http

from halton_meter import __version__
from halton_meter.ledger.row import LedgerRow, new_request_id, utc_iso_ms
from halton_meter.providers import SELF_TEST_API, SELF_TEST_HOST

SELF_TEST_PATH = "/v1/self-test"
SELF_TEST_PROVIDER = "halton-meter"  # also the rows' project


@dataclass(slots=True)
class SelfTestCall:
    id: str
    started_at: float
    project: str
    user_agent: str | None

    def to_row(self) -> LedgerRow:
        return LedgerRow(
            id=self.id,
            requested_at=utc_iso_ms(self.started_at),
            provider=SELF_TEST_PROVIDER,
            api=SELF_TEST_API,
            host=SELF_TEST_HOST,
            model=None,
            model_requested=None,
            stream=False,
            input_tokens=0,
            cache_read_tokens=0,
            cache_write_tokens=0,
            cache_write_1h_tokens=0,
            output_tokens=0,
            reasoning_tokens=0,
            web_search_requests=0,
            http_status=200,
            status="ok",
            error_class=None,
            provider_error_code=None,
            latency_ms=round((time.time() - self.started_at) * 1000, 3),
            ttft_ms=None,
            tokens_complete=True,
            response_id=None,
            service_tier=None,
            user_agent=self.user_agent,
            project=self.project,
            cost_nanousd=0,
            price_source=SELF_TEST_API,
            provider_cost_usd=None,
            raw_usage=None,
            # Not a client's call: the project is fixed, and `why` says so.
            attribution=SELF_TEST_API,
            attribution_detail=None,
            client_process="halton-meter",
        )


class SelfTestAddon:
    """Answers the self-test host locally (no upstream connection is ever made for it)."""

    def __init__(self, submit: Callable[[SelfTestCall], None]) -> None:
        self._submit = submit

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        if request.method == "CONNECT" or request.pretty_host.lower() != SELF_TEST_HOST:
            return
        if request.method != "POST" or request.path.split("?", 1)[0] != SELF_TEST_PATH:
            flow.response = http.Response.make(404, b"POST /v1/self-test\n")
            return
        call = SelfTestCall(
            id=new_request_id(int(request.timestamp_start * 1000)),
            started_at=request.timestamp_start,
            project=SELF_TEST_PROVIDER,
            user_agent=request.headers.get("user-agent"),
        )
        self._submit(call)
        body = json.dumps({"request_id": call.id, "version": __version__}).encode()
        flow.response = http.Response.make(200, body, {"content-type": "application/json"})
