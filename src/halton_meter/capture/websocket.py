"""Calls made over a WebSocket: one ledger row per `response.create` (Responses over a
WebSocket, as Codex CLI and the OpenAI Agents SDK speak it, on api.openai.com and on the
ChatGPT backend).

One socket carries many calls in sequence: a `response.create` from the client opens a call,
the server's typed events answer it (the SSE stream's events, one JSON text message each) and
its terminal event (`response.completed`, `.incomplete`, `.failed`, or a wrapped `error`)
closes it. mitmproxy reassembles each message, inflating permessage-deflate, before its
`websocket_message` hook and forwards it afterwards; the hook here reads the message's type
from its first bytes, keeps references to at most three messages per call (the request, the
first event naming the response, the terminal event) and hands the closed call to the ledger
queue. It then forgets the message: mitmproxy would otherwise keep every message of the
socket in `flow.websocket.messages` for as long as the socket lives. JSON is decoded on the
ledger writer thread (`SocketCall.facts`). A call still open when the socket ends was cut:
its row says `tokens_complete = 0`.

Quota: every row of a socket carries the rate-limit headers of its 101 answer (taken by the
addon at `websocket_start`), overlaid by the latest `codex.rate_limits` event the ChatGPT
backend sent on the socket before the call closed (a reference kept in the hook, decoded on
the writer thread and mapped to the `x-codex-*` names) and by the `headers` of a wrapped
error that ended the call.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mitmproxy import http
from mitmproxy.websocket import WebSocketMessage

from halton_meter import providers
from halton_meter.attribution.resolver import Lookup
from halton_meter.bodies.material import BodyMaterial
from halton_meter.ledger.build import CallFacts, PendingCall
from halton_meter.ledger.row import new_request_id
from halton_meter.providers import BILLING_UNKNOWN, ratelimits
from halton_meter.providers._common import get_int, loads
from halton_meter.providers.base import Route
from halton_meter.providers.websocket import CREATE, CREATED, ERROR, RATE_LIMITS, TERMINAL

log = logging.getLogger(__name__)

# The ledger `api` of a `response.create` with `generate: false`: Codex's warm-up, which
# primes the socket and generates nothing. Its usage is recorded (and priced) as reported.
WARMUP_API = "responses_warmup"


@dataclass(slots=True)
class SocketCall(PendingCall):
    """One `response.create` and what the server answered, as the hook saw them."""

    route: Route
    host: str
    started_at: float  # when the proxy received the client's `response.create`
    project: str | None
    user_agent: str | None
    lookup: Lookup | None
    request_body: bytes  # the `response.create` message: a reference, never copied
    first_byte_at: float | None = None  # the first server message after it
    finished_at: float | None = None
    created: bytes | None = None  # `response.created`: names the response of a cut call
    terminal: bytes | None = None  # the event that ended the call
    failure: str | None = None  # "network" when the socket ended first
    billing: str = BILLING_UNKNOWN
    # The 101's quota headers and their account (shared with the session, never copied).
    quota_headers: ratelimits.Snapshot | None = None
    quota_account: str | None = None
    rate_limits: bytes | None = None  # the latest `codex.rate_limits` event when it closed
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            self.id = new_request_id(int(self.started_at * 1000))

    def facts(self) -> CallFacts:
        request = providers.parse_request(self.route, self.request_body)
        route = self.route
        if request.warmup:
            route = dataclasses.replace(route, api=WARMUP_API)
        return CallFacts(
            id=self.id,
            route=route,
            host=self.host,
            started_at=self.started_at,
            finished_at=self.finished_at,
            first_byte_at=self.first_byte_at,
            tapped=True,
            request=request,
            result=providers.socket_result(route, self.created, self.terminal),
            http_status=self._http_status(),
            failure=self.failure,
            project=self.project,
            user_agent=self.user_agent,
            lookup=self.lookup,
            # The terminal event holds the whole response: nothing more is kept for capture.
            body=BodyMaterial(
                wire=route.wire,
                api=route.api,
                request=self.request_body,
                socket_messages=tuple(m for m in (self.created, self.terminal) if m is not None),
            ),
            billing=self.billing,
            quota_headers=self._quota(),
            quota_account=self.quota_account,
        )

    def _quota(self) -> ratelimits.Snapshot | None:
        """The upgrade's quota headers, then what the socket said since: the latest
        `codex.rate_limits` event, then a wrapped error's `headers` (newest wins)."""
        event = ratelimits.from_codex_event(loads(self.rate_limits)) if self.rate_limits else None
        error = None
        if self.terminal is not None and providers.message_type(self.terminal) == ERROR:
            wrapped = loads(self.terminal)
            if isinstance(wrapped, dict):
                error = ratelimits.from_header_map(wrapped.get("headers"))
        return ratelimits.merge(self.quota_headers, event, error)

    def _http_status(self) -> int | None:
        """What the same call would have had over HTTP: the status a wrapped error carries
        (`{"type":"error","status":429,…}`), else 200 once the server answered at all."""
        if self.terminal is not None:
            status = get_int(loads(self.terminal), "status")
            if status is not None and 100 <= status <= 599:
                return status
        return 200 if self.first_byte_at is not None else None


@dataclass(slots=True)
class SocketSession:
    """What the upgrade request said, shared by every call on the socket."""

    route: Route
    host: str
    project: str | None
    user_agent: str | None
    lookup: Lookup | None
    billing: str = BILLING_UNKNOWN  # from the upgrade's credential, as for a POST
    # The 101 answer's quota headers and the account they describe (set at websocket_start).
    quota_headers: ratelimits.Snapshot | None = None
    quota_account: str | None = None
    # The latest `codex.rate_limits` event: a reference, decoded on the writer thread.
    rate_limits: bytes | None = None
    # Calls sent and not yet answered, oldest first (Codex sends one at a time).
    open: deque[SocketCall] = field(default_factory=deque)

    def see(self, message: WebSocketMessage, submit: Callable[[PendingCall], None]) -> None:
        if message.dropped or message.injected:  # a budget's refusal: never reached the provider
            return
        data = message.content
        if message.from_client:
            if message.is_text and providers.message_type(data) == CREATE:
                self.open.append(self._call(message.timestamp, data))
            return
        call = self.open[0] if self.open else None
        if call is not None and call.first_byte_at is None:
            call.first_byte_at = message.timestamp
        if not message.is_text:
            return
        kind = providers.message_type(data)
        if kind == RATE_LIMITS:
            self.rate_limits = data
        elif call is None:
            return
        elif kind == CREATED and call.created is None:
            call.created = data
        elif kind in TERMINAL or kind == ERROR:
            call.terminal = data
            call.finished_at = message.timestamp
            self.open.popleft()
            self._submit(call, submit)

    def _call(self, at: float, body: bytes) -> SocketCall:
        return SocketCall(
            route=self.route,
            host=self.host,
            started_at=at,
            project=self.project,
            user_agent=self.user_agent,
            lookup=self.lookup,
            request_body=body,
            billing=self.billing,
        )

    def _submit(self, call: SocketCall, submit: Callable[[PendingCall], None]) -> None:
        """Hand a closed call over with what the socket knew of the quota at that moment."""
        call.quota_headers, call.quota_account = self.quota_headers, self.quota_account
        call.rate_limits = self.rate_limits
        submit(call)

    def cut(self, submit: Callable[[PendingCall], None]) -> int:
        """The socket ended: every call still open is recorded as cut short."""
        count = len(self.open)
        now = time.time()
        while self.open:
            call = self.open.popleft()
            call.finished_at, call.failure = now, "network"
            self._submit(call, submit)
        return count


class SocketMeter:
    """The WebSocket side of the addon: sessions by flow id, from the upgrade request to the
    socket's end. Every method is O(1) per message."""

    def __init__(self, submit: Callable[[PendingCall], None]) -> None:
        self._submit = submit
        self._upgrading: dict[str, SocketSession] = {}  # upgrade sent, no 101 yet
        self._sessions: dict[str, SocketSession] = {}

    def upgrade(self, flow: http.HTTPFlow, session: SocketSession) -> None:
        self._upgrading[flow.id] = session

    def answered(self, flow: http.HTTPFlow) -> None:
        """The upgrade got its answer; without a WebSocket (a 426, 401, 429…) no
        `response.create` was ever sent, so there is no call to record."""
        if flow.websocket is None and self._upgrading.pop(flow.id, None) is not None:
            status = flow.response.status_code if flow.response else None
            log.info("WebSocket upgrade to %s refused (%s)", flow.request.pretty_host, status)

    def session(self, flow_id: str) -> SocketSession | None:
        """The metered session of an open socket (None: not metered)."""
        return self._sessions.get(flow_id)

    def failed(self, flow: http.HTTPFlow) -> None:
        self._upgrading.pop(flow.id, None)

    def start(self, flow: http.HTTPFlow) -> SocketSession | None:
        """The 101 came: the session is metered from here on (None: a socket not metered)."""
        session = self._upgrading.pop(flow.id, None)
        if session is not None:
            self._sessions[flow.id] = session
        else:
            log.info(
                "WebSocket to %s%s is relayed, not metered",
                flow.request.pretty_host,
                flow.request.path.split("?", 1)[0],
            )
        return session

    def message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        messages = flow.websocket.messages
        session = self._sessions.get(flow.id)
        if session is not None and messages:
            try:
                session.see(messages[-1], self._submit)
            except Exception:  # never let metering break the relay
                log.exception("WebSocket metering failed for a message; relayed unchanged")
        # mitmproxy forwards the message object it holds, not the list: forgetting it here
        # keeps a long socket's memory flat.
        messages.clear()

    def end(self, flow: http.HTTPFlow) -> None:
        session = self._sessions.pop(flow.id, None)
        if session is not None and session.cut(self._submit):
            log.info("a WebSocket to %s ended mid-response", session.host)

    def cut_all(self) -> None:
        """Shutdown: calls in flight on sockets still open get their row too."""
        for session in self._sessions.values():
            session.cut(self._submit)
        self._sessions.clear()
        self._upgrading.clear()
