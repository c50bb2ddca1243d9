"""The meter's own self-test call (`halton-meter init`), as a wire format so its rows are
priced and re-priced by the same rule as every other: free, `price_source` "self-test".

The daemon answers it itself (capture/selftest.py); no host routes to it and no user endpoint
may name it, so nothing here reads a body.
"""

from __future__ import annotations

from .base import CallResult, RequestInfo, Route, StreamParser
from .wireformat import Billing, BufferedParser, WireFormat

# The daemon answers this name itself: the edge hands it over like an LLM host, and `.invalid`
# never resolves, so it cannot be reached any other way.
SELF_TEST_HOST = "self-test.halton-meter.invalid"
SELF_TEST_API = "self-test"  # the `api`, wire and `price_source` of its ledger rows
SELF_TEST_PROVIDER = "halton-meter"  # also the rows' project


class SelfTest(WireFormat):
    name = SELF_TEST_API
    billing = Billing.FREE
    declarable = False

    def is_streaming(self, route: Route, content_type: str | None) -> bool:
        return False

    def stream_parser(self, route: Route, content_type: str | None) -> StreamParser:
        return BufferedParser(self, route)

    def parse_request(self, route: Route, body: bytes) -> RequestInfo:
        return RequestInfo()

    def parse_body(self, route: Route, obj: object) -> CallResult:
        return CallResult()


SELF_TEST = SelfTest()
SELF_TEST_ROUTE = Route(SELF_TEST_PROVIDER, SELF_TEST.name, SELF_TEST_API)
