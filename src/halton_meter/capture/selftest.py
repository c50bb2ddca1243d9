"""The daemon's self-test endpoint: `https://self-test.halton-meter.invalid/v1/self-test`.

`halton-meter init` ends by sending one request there through the edge. Answering it proves the
whole metering path without any provider: the edge handed the CONNECT to the daemon, the client
trusted the certificate the daemon made with our CA (so `ca-bundle.pem` works), and the call
reached the ledger, because the answer names the row it will be written as and `init` waits
for that row. The row is real and free: provider `halton-meter`, api and wire `self-test`,
cost 0 (the self-test wire format's billing rule, providers/selftest.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import http

from halton_meter import __version__
from halton_meter.attribution.resolver import Attribution
from halton_meter.ledger.build import CallFacts, PendingCall
from halton_meter.ledger.row import new_request_id
from halton_meter.providers.base import CallResult, RequestInfo, Usage
from halton_meter.providers.selftest import (
    SELF_TEST_API,
    SELF_TEST_HOST,
    SELF_TEST_PROVIDER,
    SELF_TEST_ROUTE,
)

SELF_TEST_PATH = "/v1/self-test"
# Not a client's call: the project is fixed, and `why` says so.
_ATTRIBUTION = Attribution(SELF_TEST_PROVIDER, SELF_TEST_API, "halton-meter", None)


@dataclass(slots=True)
class SelfTestCall(PendingCall):
    id: str
    started_at: float
    user_agent: str | None

    def facts(self) -> CallFacts:
        zero = Usage(0, 0, 0, 0, 0, 0, 0)
        return CallFacts(
            id=self.id,
            route=SELF_TEST_ROUTE,
            host=SELF_TEST_HOST,
            started_at=self.started_at,
            finished_at=time.time(),
            first_byte_at=None,
            tapped=False,
            request=RequestInfo(),
            result=CallResult(usage=zero, tokens_complete=True),
            http_status=200,
            failure=None,
            project=SELF_TEST_PROVIDER,
            user_agent=self.user_agent,
            attribution=_ATTRIBUTION,
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
            user_agent=request.headers.get("user-agent"),
        )
        self._submit(call)
        body = json.dumps({"request_id": call.id, "version": __version__}).encode()
        flow.response = http.Response.make(200, body, {"content-type": "application/json"})
