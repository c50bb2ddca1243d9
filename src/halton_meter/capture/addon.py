"""The mitmproxy addon that meters LLM calls.

Every hook here runs on mitmproxy's event loop, so each does O(1) work: look up the route,
keep references, set the stream tap, and hand the finished call to the ledger writer. Parsing
happens in `CapturedCall.facts` on the writer thread, and the writer's row builder prices and
attributes the row (ledger/build.py); the attributor here only starts each connection's lookup.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from urllib.parse import unquote

from mitmproxy import connection, ctx, http, tls
from mitmproxy.proxy import server_hooks

from halton_meter import providers
from halton_meter.attribution.resolver import Attributor, Lookup
from halton_meter.attribution.sockets import Address
from halton_meter.bodies.material import StreamKeeper
from halton_meter.bodies.policy import CapturePolicy
from halton_meter.budgets.refusal import http_refusal, socket_refusal_event
from halton_meter.budgets.team import BudgetGate
from halton_meter.budgets.tracker import BudgetTracker, Refusal
from halton_meter.capture.accounts import AccountLabels
from halton_meter.capture.record import CapturedCall
from halton_meter.capture.tap import StreamTap
from halton_meter.capture.websocket import SocketMeter, SocketSession
from halton_meter.decoding import chunk_decoder
from halton_meter.ledger.build import PendingCall
from halton_meter.providers import ratelimits
from halton_meter.providers.base import Endpoint, HostFamily, Route
from halton_meter.providers.websocket import CREATE
from halton_meter.runstate import CLIENT_HEADER, OWNER_WAIT_SECONDS
from halton_meter.slugs import normalise_slug
from halton_meter.upstream import is_loopback_name, resolve_target

log = logging.getLogger(__name__)

INLINE_DECODE_BYTES = 64 * 1024
# How long a gated host's TLS handshake waits for its client process to be known (usually a
# few ms); past it the connection is tunnelled, never decrypted.
GATE_WAIT_SECONDS = 1.0


def tag_from_proxy_authorization(value: str | None) -> str | None:
    """The user part of `http://PROJECT:meter@127.0.0.1:8081`, sent by clients as Basic auth,
    percent-decoded but not yet a slug: the writer side normalises it (`Attributor.attribute`),
    and records a value it must refuse, so `why` can show it and the log says why."""
    if not value or not value.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # rpartition: a project may itself contain ":" (`client:acme`); the password never does.
    user = decoded.rpartition(":")[0] if ":" in decoded else decoded
    return unquote(user).strip() or None


def project_from_proxy_authorization(value: str | None) -> str | None:
    """The project slug the proxy URL names (`Acme%20Web` is `acme-web`), or None."""
    tag = tag_from_proxy_authorization(value)
    return normalise_slug(tag) if tag else None


class MeterAddon:
    def __init__(
        self,
        submit: Callable[[PendingCall], None],
        *,
        own_ports: Collection[int],
        default_project: str = "misc",
        endpoints: Sequence[Endpoint] = (),
        families: Sequence[HostFamily] = (),
        resolve: Mapping[tuple[str, int], tuple[str, int]] | None = None,
        behind_edge: bool = False,
        attributor: Attributor | None = None,
        proxy_port: int | None = None,
        gated_clients: Collection[str] = (),
        capture: CapturePolicy | None = None,
        budgets: BudgetTracker | BudgetGate | None = None,
    ) -> None:
        self._submit = submit
        self._budgets = budgets  # opt-in blocking (budgets/tracker.py); None: never blocks
        self._own_ports = frozenset(own_ports)
        self._default_project = default_project
        self._endpoints = tuple(endpoints)
        self._families = tuple(families)
        self._resolve = dict(resolve or {})
        self._behind_edge = behind_edge
        self._attributor = attributor
        self._proxy_port = proxy_port  # where clients connect (the edge's port behind it)
        # Project named in the proxy URL, per client connection (CONNECT carries it once).
        self._connection_projects: dict[str, str] = {}
        # Client address (ip:port) per connection handed over by the edge.
        self.edge_clients: dict[str, str] = {}
        # The attribution lookup per client connection: started once, when first seen.
        self._lookups: dict[str, Lookup] = {}
        # Metered calls between their request and their response, by flow id: the hooks find
        # their call here, and a shutdown records whatever is still open.
        self._open_calls: dict[str, CapturedCall] = {}
        # Calls made over WebSockets (capture/websocket.py).
        self._sockets = SocketMeter(submit)
        # Client process names whose connections to a gated host (chatgpt.com) are decrypted.
        self._gated_clients = frozenset(name.lower() for name in gated_clients)
        self._accounts = AccountLabels()
        # Body capture (bodies/policy.py): None or nothing configured costs one check per stream.
        self._capture = capture

    # --- connection level -------------------------------------------------------------------

    def _is_own_listener(self, host: str, port: int) -> bool:
        """Names that need no DNS are checked here; names that resolve to loopback are
        refused by the resolver (upstream.py) when the connection is opened."""
        host, port = resolve_target(self._resolve, host, port)
        return port in self._own_ports and is_loopback_name(host)

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if self._is_own_listener(flow.request.host, flow.request.port):
            flow.response = _refusal()
            return
        project = tag_from_proxy_authorization(flow.request.headers.get("proxy-authorization"))
        if project:
            self._connection_projects[flow.client_conn.id] = project
        self._take_client_header(flow)
        await self._owner_known(self._start_lookup(flow.client_conn))

    def _take_client_header(self, flow: http.HTTPFlow) -> None:
        """The edge names the real client (ip:port) when it hands a connection over; kept for
        attribution (trusted only behind the edge), never forwarded."""
        client = flow.request.headers.pop(CLIENT_HEADER, None)
        if client and self._behind_edge:
            self.edge_clients.setdefault(flow.client_conn.id, client)

    def _start_lookup(self, client: connection.Client) -> asyncio.Future[None] | None:
        """Who is behind this connection, looked up once per connection on a worker thread.
        Returns, for the connection's first sighting only, a future done once the socket's
        owner is known."""
        if self._attributor is None or client.id in self._lookups:
            return None
        loop = asyncio.get_running_loop()
        known: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            if not known.done():
                known.set_result(None)

        def notify() -> None:  # on the worker thread
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(done)

        self._lookups[client.id] = self._attributor.lookup(*self._addresses(client), notify)
        return known

    async def _owner_known(self, known: asyncio.Future[None] | None) -> None:
        """Hold the connection's handshake (its CONNECT answer, or its first plain request)
        until the socket's owner is found: a client that got its answer could close the socket
        before a busy worker looks, and a closed socket names nobody. Typically ~0.5 ms, once
        per connection; never longer than OWNER_WAIT_SECONDS."""
        if known is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(known), OWNER_WAIT_SECONDS)

    def _addresses(self, client: connection.Client) -> tuple[Address | None, Address | None]:
        """(client end, server end) of the client's own TCP connection: the edge's behind it,
        otherwise the one mitmproxy accepted."""
        if not self._behind_edge:
            peer, local = client.peername, client.sockname
            if peer is None or local is None:
                return None, None
            return (str(peer[0]), int(peer[1])), (str(local[0]), int(local[1]))
        said = self.edge_clients.get(client.id)
        host, _, port = (said or "").rpartition(":")
        if not host or not port.isdigit() or self._proxy_port is None:
            return None, None
        return (host.strip("[]"), int(port)), ("127.0.0.1", self._proxy_port)

    def client_disconnected(self, client: connection.Client) -> None:
        self._connection_projects.pop(client.id, None)
        self.edge_clients.pop(client.id, None)
        self._lookups.pop(client.id, None)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is not None and self._is_own_listener(address[0], address[1]):
            data.server.error = "Halton Meter refuses to forward to its own listeners"

    async def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """A gated host (chatgpt.com, where only Codex's model calls are metered) is decrypted
        only for the client processes `[chatgpt] clients` names; any other process's
        connection, or one whose process is not known in time, is tunnelled untouched."""
        address = data.context.server.address
        names = {(address[0] if address else "").lower(), (data.client_hello.sni or "").lower()}
        if names.isdisjoint(providers.GATED_HOSTS):
            return
        process = await self._client_process(data.context.client)
        if process is None or process.lower() not in self._gated_clients:
            data.ignore_connection = True
            log.debug("tunnelled %s for %s (not a gated client)", sorted(names), process)

    async def _client_process(self, client: connection.Client) -> str | None:
        lookup = self._lookups.get(client.id)
        if lookup is None:
            return None
        try:
            context = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(lookup)), GATE_WAIT_SECONDS
            )
        except Exception:  # a timeout or a failed lookup: not known, so not decrypted
            return None
        return context.process

    # --- request / response -----------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        if request.method == "CONNECT":
            return
        if self._is_own_listener(request.host, request.port):
            flow.response = _refusal()
            return
        # Plain-HTTP proxy requests carry the project on every request; never forward it.
        auth = request.headers.pop("proxy-authorization", None)
        self._take_client_header(flow)
        if request.method == "GET" and _is_websocket_upgrade(request):
            self._socket_upgrade(flow, auth)
            return
        if request.method != "POST":  # every metered API call is a POST; GET lists, OPTIONS…
            return
        host = request.pretty_host.lower()
        route = providers.route_for(
            host, request.port, request.path, self._endpoints, self._families
        )
        if route is None:
            return
        project = self._project(flow, auth)
        owner_known = self._start_lookup(flow.client_conn)
        call = CapturedCall(
            route=route,
            host=host,
            started_at=request.timestamp_start,
            project=project or (None if self._attributor else self._default_project),
            user_agent=request.headers.get("user-agent"),
            lookup=self._lookups.get(flow.client_conn.id),
        )
        call.owner_known = owner_known
        call.billing = providers.call_billing(route, request.headers, request.path)
        self._open_calls[flow.id] = call

    def _project(self, flow: http.HTTPFlow, auth: str | None) -> str | None:
        """The proxy URL's tag, as the client sent it: the writer normalises it."""
        return tag_from_proxy_authorization(auth) or self._connection_projects.get(
            flow.client_conn.id
        )

    def _socket_upgrade(self, flow: http.HTTPFlow, auth: str | None) -> None:
        """A WebSocket upgrade on a metered path: its calls are tracked from the 101 on."""
        request = flow.request
        host = request.pretty_host.lower()
        route = providers.socket_route_for(host, request.port, request.path, self._endpoints)
        if route is None:
            return
        project = self._project(flow, auth)
        self._start_lookup(flow.client_conn)  # a plain-HTTP upgrade: not waited for
        session = SocketSession(
            route=route,
            host=host,
            project=project or (None if self._attributor else self._default_project),
            user_agent=request.headers.get("user-agent"),
            lookup=self._lookups.get(flow.client_conn.id),
            billing=providers.call_billing(route, request.headers, request.path),
        )
        self._sockets.upgrade(flow, session)

    async def request(self, flow: http.HTTPFlow) -> None:
        call = self._open_calls.get(flow.id)
        if call is None:
            return
        if call.owner_known is not None:  # the first request of a plain-HTTP connection
            await self._owner_known(call.owner_known)
        call.request_body = flow.request.raw_content or b""
        call.request_encoding = flow.request.headers.get("content-encoding")
        budgets = self._budgets
        # One attribute read when no budget blocks; the rest only while one does.
        if budgets is not None and budgets.blocking and await self._refused(flow, call, budgets):
            return
        if call.request_encoding or not providers.may_inject_stream_usage(
            call.route, call.request_body
        ):
            return
        # Deciding needs the request's JSON, which can be megabytes: decode a large one off the
        # loop (a thread hop costs ~0.1 ms, decoding a small body inline ~5 µs).
        if len(call.request_body) <= INLINE_DECODE_BYTES:
            injected = providers.inject_stream_usage(call.route, call.request_body)
        else:
            injected = await asyncio.to_thread(
                providers.inject_stream_usage, call.route, call.request_body
            )
        if injected is not None:
            flow.request.content = injected
            # The usage filter rewrites SSE text, so the stream must come back uncompressed.
            flow.request.headers["accept-encoding"] = "identity"
            call.usage_injected = True

    async def _refused(
        self, flow: http.HTTPFlow, call: CapturedCall, budgets: BudgetTracker | BudgetGate
    ) -> bool:
        """Answer the call ourselves when a blocking budget covers it. Only reached while some
        budget blocks. Any doubt lets the call through."""
        body = None if call.request_encoding else call.request_body
        refusal = await self._budget_refusal(
            budgets, call.route, call.project, call.lookup, call.user_agent, body
        )
        if refusal is None:
            return False
        status, content, headers = http_refusal(call.route.wire, call.user_agent, refusal.message())
        flow.response = http.Response.make(status, content, headers)
        self._open_calls.pop(flow.id, None)  # nothing was spent: no ledger row
        log.info("budget %r refused a call to %s", refusal.budget.name, call.host)
        return True

    async def _budget_refusal(
        self,
        budgets: BudgetTracker | BudgetGate,
        route: Route,
        project: str | None,
        lookup: Lookup | None,
        user_agent: str | None,
        body: bytes | None,
    ) -> Refusal | None:
        """The blocking budget that covers a call, or None. Waits (≤ OWNER_WAIT_SECONDS) for
        the connection's owner if the project or client is not known yet."""
        process = None
        if self._attributor is not None:
            if lookup is not None and not lookup.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        asyncio.shield(asyncio.wrap_future(lookup)), OWNER_WAIT_SECONDS
                    )
            project, process = self._attributor.peek(lookup, project, user_agent)
        return budgets.check(
            route.provider, project, process, user_agent, body, route.model_from_path
        )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        assert response is not None
        call = self._open_calls.get(flow.id)
        if call is None:
            response.stream = True  # not metered: pass through without buffering
            return
        call.http_status = response.status_code
        self._take_quota_headers(flow, call)
        content_type = response.headers.get("content-type")
        if not providers.is_streaming_response(call.route, content_type):
            return  # a JSON body: buffered by mitmproxy, parsed later on the writer thread
        encoding = response.headers.get("content-encoding")
        usage_filter = None
        if call.usage_injected and not encoding:
            usage_filter = providers.InjectedUsageFilter()
        parser = providers.stream_parser(call.route, content_type)
        call.stream_parser = parser
        if self._capture is not None and self._capture.may_capture(call.project, call.lookup):
            call.body_keeper = StreamKeeper(self._capture.settings.max_call_bytes)
            call.content_type = content_type
        response.stream = StreamTap(call, parser, chunk_decoder(encoding), usage_filter)

    def _take_quota_headers(
        self, flow: http.HTTPFlow, call: CapturedCall | SocketSession, *, label: bool = False
    ) -> None:
        """The response's rate-limit and quota headers, kept whole per family, with the
        account they describe as an opaque label (capture/accounts.py); `label`: name the
        account even without headers (a socket's events may bring them). O(headers)."""
        assert flow.response is not None
        fields = flow.response.headers.fields
        quota = ratelimits.collect((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields)
        if quota is not None or label:
            call.quota_headers = quota
            call.quota_account = self._accounts.label(
                call.route.provider, call.billing, flow.request.headers, flow.response.headers
            )

    def response(self, flow: http.HTTPFlow) -> None:
        self._sockets.answered(flow)
        call = self._open_calls.pop(flow.id, None)
        if call is None or flow.response is None:
            return
        call.finished_at = flow.response.timestamp_end or time.time()
        if call.stream_parser is None:
            call.response_body = flow.response.raw_content
            call.response_encoding = flow.response.headers.get("content-encoding")
        self._submit(call)

    def error(self, flow: http.HTTPFlow) -> None:
        self._sockets.failed(flow)
        call = self._open_calls.pop(flow.id, None)
        if call is None:
            return
        call.finished_at = time.time()
        message = (flow.error.msg if flow.error else "").lower()
        call.failure = "timeout" if "timeout" in message or "timed out" in message else "network"
        self._submit(call)

    # --- WebSockets (capture/websocket.py) ----------------------------------------------------

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        session = self._sockets.start(flow)
        if session is not None and flow.response is not None:  # every row keeps the 101's quota
            self._take_quota_headers(flow, session, label=True)

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        budgets = self._budgets
        # One attribute read when no budget blocks; the rest only while one does.
        if budgets is not None and budgets.blocking:
            await self._refuse_socket_call(flow, budgets)
        self._sockets.message(flow)

    async def _refuse_socket_call(
        self, flow: http.HTTPFlow, budgets: BudgetTracker | BudgetGate
    ) -> None:
        """A `response.create` that a blocking budget covers is not forwarded: the client gets
        the provider's wrapped-error event in its place (budgets/refusal.py), the socket stays
        open. Only a create sent while nothing is in flight on the socket is refused, so a
        response already streaming is never cut (Codex sends one at a time; a client that
        pipelines has its next create let through, like any call already in flight)."""
        assert flow.websocket is not None
        messages = flow.websocket.messages
        message = messages[-1] if messages else None
        if message is None or not message.from_client or message.injected or not message.is_text:
            return
        session = self._sockets.session(flow.id)
        if session is None or session.open or providers.message_type(message.content) != CREATE:
            return
        refusal = await self._budget_refusal(
            budgets, session.route, session.project, session.lookup, session.user_agent,
            message.content,
        )  # fmt: skip
        if refusal is None:
            return
        try:
            ctx.master.commands.call(
                "inject.websocket", flow, True, socket_refusal_event(refusal.message()), True
            )
        except Exception:  # cannot answer it: forward it (fail open)
            log.exception(
                "budget %r could not refuse a WebSocket call; forwarded", refusal.budget.name
            )
            return
        message.drop()  # never reaches the provider: nothing spent, no ledger row
        log.info("budget %r refused a WebSocket call to %s", refusal.budget.name, session.host)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._sockets.end(flow)

    def done(self) -> None:
        """mitmproxy is shutting down: calls still in flight get their row too."""
        self.record_open_calls()

    def record_open_calls(self) -> None:
        """Submit every call still open as cut short (network). Also called once the proxy has
        stopped, for calls that arrived on still-open connections after the `done` hook."""
        self._sockets.cut_all()
        for call in self._open_calls.values():
            call.finished_at = time.time()
            call.failure = "network"
            self._submit(call)
        if self._open_calls:
            log.info("shutdown cut %d calls short; recorded them", len(self._open_calls))
        self._open_calls.clear()


def _is_websocket_upgrade(request: http.Request) -> bool:
    return str(request.headers.get("upgrade", "")).strip().lower() == "websocket"


def _refusal() -> http.Response:
    return http.Response.make(
        403,
        b"Halton Meter does not forward requests to its own listeners.\n",
        {"content-type": "text/plain"},
    )
