"""Each mitmproxy hook of the meter's addons, in process, with mitmproxy's own test helpers
(`taddons.context` sets up a master and `ctx`, `tflow`/`tutils` make flows), the way mitmproxy
tests its addons. Fast and beside the end-to-end tests (test_proxy.py and others), which run a
real daemon.

The assertions are on what the hooks do to the flow and on what they hand to the ledger
writer's queue (route, status, timing, failure, project, id), not on how the addon keeps its
calls in between.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterable
from typing import Any

import pytest
from mitmproxy import flow, hooks, http
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import HttpConnectHook, HttpRequestHeadersHook
from mitmproxy.test import taddons, tflow, tutils

from halton_meter.capture.addon import MeterAddon, project_from_proxy_authorization
from halton_meter.capture.selftest import SELF_TEST_PATH, SelfTestAddon
from halton_meter.capture.tap import StreamTap
from halton_meter.ledger.build import RowBuilder
from halton_meter.providers import SELF_TEST_HOST
from halton_meter.providers.base import Endpoint

OWN_PORT = 9765  # one of the meter's own listeners, as the daemon passes them
OPENAI_CHAT = ("api.openai.com", "/v1/chat/completions")
ANTHROPIC_MESSAGES = ("api.anthropic.com", "/v1/messages")
STREAM_CHAT = b'{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}'
INJECTED = b'"stream_options":{"include_usage":true}'
SSE = "text/event-stream; charset=utf-8"


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def basic(user: str, password: str = "x") -> str:
    """The Proxy-Authorization a client sends for `http://USER:PASSWORD@127.0.0.1:port`."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def llm_flow(
    target: tuple[str, str] = OPENAI_CHAT,
    *,
    method: str = "POST",
    body: bytes = b'{"model":"gpt-4.1","messages":[]}',
    headers: Iterable[tuple[str, str]] = (),
    port: int = 443,
    scheme: str = "https",
    started: float = 1_800_000_000.25,
) -> http.HTTPFlow:
    host, path = target
    request = tutils.treq(
        host=host,
        port=port,
        scheme=scheme.encode(),
        method=method.encode(),
        path=path.encode(),
        headers=http.Headers(
            [(b"content-type", b"application/json")]
            + [(k.encode(), v.encode()) for k, v in headers]
        ),
        content=body,
        timestamp_start=started,
        timestamp_end=started + 0.01,
    )
    return tflow.tflow(req=request)


def response(
    status: int = 200,
    content_type: str = "application/json",
    body: bytes = b"{}",
    ended: float = 1_800_000_001.5,
) -> http.Response:
    return tutils.tresp(
        status_code=status,
        headers=http.Headers([(b"content-type", content_type.encode())]),
        content=body,
        timestamp_start=ended - 0.5,
        timestamp_end=ended,
    )


class Meter:
    """A MeterAddon whose writer queue is a list, inside a mitmproxy test context."""

    def __init__(self, **options: Any) -> None:
        self.handed: list[Any] = []
        options.setdefault("own_ports", (OWN_PORT,))
        self.addon = MeterAddon(self.handed.append, **options)

    async def cycle(self, f: http.HTTPFlow) -> None:
        """requestheaders, request, then responseheaders + response or error, as mitmproxy
        calls them for a finished flow."""
        with taddons.context(self.addon) as tctx:
            await tctx.cycle(self.addon, f)

    async def request_only(self, f: http.HTTPFlow) -> None:
        """The request hooks alone: a call still waiting for its answer."""
        response, error = f.response, f.error
        f.response, f.error = None, None
        await self.cycle(f)
        f.response, f.error = response, error


# --- requestheaders: what is metered, the project, refusals ---------------------------------


def test_a_post_to_a_known_route_is_handed_over_with_its_route() -> None:
    meter = Meter()
    f = llm_flow(OPENAI_CHAT)
    f.response = response()
    run(meter.cycle(f))
    (call,) = meter.handed
    assert (call.route.provider, call.route.api) == ("openai", "chat")
    assert call.host == "api.openai.com"
    g = llm_flow(ANTHROPIC_MESSAGES)
    g.response = response()
    run(meter.cycle(g))
    assert (meter.handed[1].route.provider, meter.handed[1].route.api) == (
        "anthropic",
        "messages",
    )
    assert meter.handed[1].id != call.id


@pytest.mark.parametrize("method", ["GET", "OPTIONS", "HEAD"])
def test_only_posts_are_metered(method: str) -> None:
    """GET on a chat path lists stored completions; OPTIONS is a preflight."""
    meter = Meter()
    f = llm_flow(OPENAI_CHAT, method=method, body=b"")
    f.response = response()
    run(meter.cycle(f))
    assert meter.handed == []
    assert f.response is not None and f.response.stream is True  # passed through unbuffered


@pytest.mark.parametrize(
    ("host", "path"),
    [("example.org", "/v1/chat/completions"), ("api.openai.com", "/v1/models/gpt-4.1/unknown")],
)
def test_a_post_that_is_no_llm_call_is_not_metered(host: str, path: str) -> None:
    meter = Meter()
    f = llm_flow((host, path))
    f.response = response()
    run(meter.cycle(f))
    assert meter.handed == []


def test_plain_http_drops_proxy_authorization_and_takes_its_project() -> None:
    """A plain-HTTP proxy request carries the proxy URL's user part on every request; it names
    the project and is never forwarded upstream (GET included)."""
    meter = Meter()
    f = llm_flow(OPENAI_CHAT, headers=[("Proxy-Authorization", basic("acme-web"))])
    f.response = response()
    run(meter.cycle(f))
    assert "proxy-authorization" not in f.request.headers
    assert meter.handed[0].project == "acme-web"
    g = llm_flow(OPENAI_CHAT, method="GET", headers=[("Proxy-Authorization", basic("a"))])
    run(meter.cycle(g))
    assert "proxy-authorization" not in g.request.headers


@pytest.mark.parametrize(
    ("header", "project"),
    [
        (basic("Acme-Web"), "acme-web"),  # lowercased
        (basic("client:acme", "secret"), "client:acme"),  # a ":" in the project
        (basic("client%3Aacme"), "client:acme"),  # percent-encoded by the client
        (basic("team/app"), "team/app"),
        ("Basic " + base64.b64encode(b"solo").decode(), "solo"),  # no password at all
        (basic("not a slug!"), None),
        (basic("-leading"), "leading"),  # normalised as every other project value
        (basic("Acme%20Web%2FAPI.v2"), "acme-web/api-v2"),  # issue 16, item 8
        (basic("Team.Web"), "team-web"),
        (basic("caf\u00e9"), None),
        ("Basic %%%not-base64", None),
        ("Bearer " + base64.b64encode(b"acme:x").decode(), None),
        ("", None),
    ],
)
def test_project_from_the_proxy_url_user_part(header: str, project: str | None) -> None:
    assert project_from_proxy_authorization(header) == project


def test_an_invalid_project_tag_falls_back_to_the_default_project() -> None:
    meter = Meter(default_project="misc")
    f = llm_flow(OPENAI_CHAT, headers=[("Proxy-Authorization", basic("Not A Slug!"))])
    f.response = response()

    async def scenario() -> Any:  # one loop: mitmproxy's log handler takes the warning
        await meter.cycle(f)
        return RowBuilder(default_project="misc").build(meter.handed[0].facts())

    row = run(scenario())
    assert "proxy-authorization" not in f.request.headers
    # The addon hands the tag over as sent; the writer side refuses it (and says so).
    assert meter.handed[0].project == "Not A Slug!"
    assert (row.project, row.attribution) == ("misc", "default")


def test_a_tag_that_needs_normalising_is_kept_as_a_tag() -> None:
    """Issue 16, item 8: `Acme%20Web%2FAPI.v2` is the project acme-web/api-v2, not dropped."""
    meter = Meter(default_project="misc")
    f = llm_flow(OPENAI_CHAT, headers=[("Proxy-Authorization", basic("Acme%20Web%2FAPI.v2"))])
    f.response = response()
    run(meter.cycle(f))
    row = RowBuilder(default_project="misc").build(meter.handed[0].facts())
    assert (row.project, row.attribution) == ("acme-web/api-v2", "tag")


def test_the_connect_carries_the_project_for_the_connection() -> None:
    """HTTPS clients send the proxy URL's user part once, on CONNECT; every call on that
    connection has the project, and a connection without one does not."""
    meter = Meter(default_project="misc")
    connect = tflow.tflow(
        req=tutils.treq(
            method=b"CONNECT",
            host="api.openai.com",
            port=443,
            path=b"",
            authority=b"api.openai.com:443",
            headers=http.Headers([(b"proxy-authorization", basic("acme-api").encode())]),
            content=b"",
        )
    )
    with taddons.context(meter.addon) as tctx:
        run(tctx.master.addons.invoke_addon(meter.addon, HttpConnectHook(connect)))
    assert connect.response is None  # not refused: the tunnel opens
    first = llm_flow(OPENAI_CHAT)
    first.client_conn = connect.client_conn
    first.response = response()
    other = llm_flow(OPENAI_CHAT)  # another client connection
    other.response = response()
    run(meter.cycle(first))
    run(meter.cycle(other))
    assert [call.project for call in meter.handed] == ["acme-api", "misc"]


def test_the_edge_client_header_is_never_forwarded() -> None:
    alone, behind = Meter(), Meter(behind_edge=True)
    for meter in (alone, behind):
        f = llm_flow(OPENAI_CHAT, headers=[("x-halton-client", "127.0.0.1:50123")])
        with taddons.context(meter.addon) as tctx:
            tctx.master.addons.invoke_addon_sync(meter.addon, HttpRequestHeadersHook(f))
        assert "x-halton-client" not in f.request.headers
        # Trusted (kept for attribution) only behind the edge, which sets it.
        assert list(meter.addon.edge_clients.values()) == (
            ["127.0.0.1:50123"] if meter is behind else []
        )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1", "[::1]", "0.0.0.0"])
def test_a_request_to_an_own_listener_is_refused(host: str) -> None:
    meter = Meter()
    f = llm_flow((host, "/v1/chat/completions"), port=OWN_PORT, scheme="http")
    with taddons.context(meter.addon) as tctx:
        tctx.master.addons.invoke_addon_sync(meter.addon, HttpRequestHeadersHook(f))
    assert f.response is not None and f.response.status_code == 403
    assert b"own listeners" in f.response.content
    assert meter.handed == []


def test_own_listeners_are_refused_by_connect_and_through_resolve() -> None:
    meter = Meter(resolve={("sneaky.example", 443): ("127.0.0.1", OWN_PORT)})
    connect = tflow.tflow(
        req=tutils.treq(method=b"CONNECT", host="localhost", port=OWN_PORT, path=b"", content=b"")
    )
    sneaky = llm_flow(("sneaky.example", "/v1/chat/completions"))
    elsewhere = llm_flow(("127.0.0.1", "/v1/chat/completions"), port=OWN_PORT + 1)
    with taddons.context(meter.addon) as tctx:
        run(tctx.master.addons.invoke_addon(meter.addon, HttpConnectHook(connect)))
        for f in (sneaky, elsewhere):
            tctx.master.addons.invoke_addon_sync(meter.addon, HttpRequestHeadersHook(f))
    assert connect.response is not None and connect.response.status_code == 403
    assert sneaky.response is not None and sneaky.response.status_code == 403
    assert elsewhere.response is None  # another port on loopback is not ours


def test_a_server_connection_to_an_own_listener_fails() -> None:
    meter = Meter()
    ours, theirs = tflow.tserver_conn(), tflow.tserver_conn()
    ours.address, theirs.address = ("localhost", OWN_PORT), ("api.openai.com", 443)
    for server in (ours, theirs):
        meter.addon.server_connect(
            server_hooks.ServerConnectionHookData(server=server, client=tflow.tclient_conn())
        )
    assert ours.error is not None and "own listeners" in ours.error
    assert theirs.error is None


# --- request: the include_usage rewrite -----------------------------------------------------


def test_a_streamed_openai_chat_asks_for_usage() -> None:
    meter = Meter()
    f = llm_flow(OPENAI_CHAT, body=STREAM_CHAT)
    run(meter.request_only(f))
    sent = f.request.content or b""
    assert INJECTED in sent
    assert json.loads(sent)["messages"] == json.loads(STREAM_CHAT)["messages"]
    # The usage filter rewrites SSE text, so the stream must come back uncompressed.
    assert f.request.headers["accept-encoding"] == "identity"


def test_a_large_streamed_body_is_rewritten_too() -> None:
    """Bodies past the inline limit are decided on a worker thread; same outcome."""
    meter = Meter()
    big = {
        "model": "gpt-4.1",
        "stream": True,
        "messages": [{"role": "user", "content": "x" * 100_000}],
    }
    f = llm_flow(OPENAI_CHAT, body=json.dumps(big).encode())
    run(meter.request_only(f))
    assert json.loads(f.request.content or b"")["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("target", "body", "headers"),
    [
        (OPENAI_CHAT, b'{"model":"gpt-4.1","messages":[]}', []),  # not streamed
        (OPENAI_CHAT, b'{"model":"gpt-4.1","stream":false,"messages":[]}', []),
        (
            OPENAI_CHAT,
            b'{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true}}',
            [],
        ),  # the client asked itself
        (OPENAI_CHAT, STREAM_CHAT, [("content-encoding", "gzip")]),  # never decoded inline
        (ANTHROPIC_MESSAGES, b'{"model":"claude-sonnet-4-5","stream":true}', []),
    ],
)
def test_requests_that_need_no_rewrite_go_out_as_sent(
    target: tuple[str, str], body: bytes, headers: list[tuple[str, str]]
) -> None:
    meter = Meter()
    f = llm_flow(target, body=body, headers=headers)
    run(meter.request_only(f))
    assert f.request.raw_content == body
    assert "accept-encoding" not in f.request.headers


def test_a_user_declared_endpoint_is_never_rewritten() -> None:
    gateway = Endpoint(host="gateway.internal", port=8443, wire="openai-chat", provider="azure")
    meter = Meter(endpoints=(gateway,))
    f = llm_flow(("gateway.internal", "/v1/chat/completions"), port=8443, body=STREAM_CHAT)
    f.response = response()
    run(meter.cycle(f))
    assert f.request.raw_content == STREAM_CHAT
    assert meter.handed[0].route.provider == "azure"


# --- responseheaders: the stream tap --------------------------------------------------------


def usage_only_event() -> bytes:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


TEXT_EVENT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":'
    b'[{"index":0,"delta":{"content":"hi"}}],"usage":null}\n\n'
)


def stream_of(meter: Meter, body: bytes, content_type: str = SSE) -> Any:
    """The response stream the hooks set for a streamed call (after the request hooks)."""
    f = llm_flow(OPENAI_CHAT, body=body)
    run(meter.request_only(f))
    f.response = response(content_type=content_type, body=b"")
    meter.addon.responseheaders(f)
    return f.response.stream


def test_a_streamed_answer_is_tapped_and_forwarded_chunk_by_chunk() -> None:
    tap = stream_of(
        Meter(), b'{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true}}'
    )
    assert isinstance(tap, StreamTap)
    # Not asked for by the meter: every byte goes to the client as it came.
    assert tap(TEXT_EVENT) == TEXT_EVENT
    assert tap(usage_only_event()) == usage_only_event()
    assert tap(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"
    assert tap(b"") == b""


def test_usage_the_meter_asked_for_is_kept_from_the_client() -> None:
    """The client did not ask for the usage chunk, so it does not get one."""
    tap = stream_of(Meter(), STREAM_CHAT)
    assert isinstance(tap, StreamTap)
    # The text arrives (less the `"usage": null` the client would not have seen either).
    assert tap(TEXT_EVENT) in (TEXT_EVENT, TEXT_EVENT.replace(b',"usage":null', b""))
    assert tap(usage_only_event()) == []  # nothing to forward (b"" would end the body)
    assert tap(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"


def test_a_json_answer_is_buffered_not_tapped() -> None:
    meter = Meter()
    f = llm_flow(OPENAI_CHAT)
    run(meter.request_only(f))
    f.response = response()
    meter.addon.responseheaders(f)
    assert f.response.stream is False  # mitmproxy reads it whole; parsed on the writer thread


def test_a_gemini_array_stream_is_tapped_under_a_json_content_type() -> None:
    meter = Meter()
    target = (
        "generativelanguage.googleapis.com",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    )
    f = llm_flow(target, body=b'{"contents":[]}')
    run(meter.request_only(f))
    f.response = response(content_type="application/json")
    meter.addon.responseheaders(f)
    assert isinstance(f.response.stream, StreamTap)


def test_an_unmetered_answer_passes_through_unbuffered() -> None:
    meter = Meter()
    f = llm_flow(("example.org", "/upload"))
    run(meter.request_only(f))
    f.response = response(content_type=SSE)
    meter.addon.responseheaders(f)
    assert f.response.stream is True


# --- response / error: the call handed to the writer ----------------------------------------


@pytest.mark.parametrize("status", [200, 429, 500])
def test_a_finished_call_is_handed_over_with_its_status_and_times(status: int) -> None:
    meter = Meter()
    f = llm_flow(OPENAI_CHAT, started=1_800_000_000.25)
    f.response = response(status, ended=1_800_000_002.75)
    run(meter.cycle(f))
    (call,) = meter.handed
    assert call.http_status == status
    assert call.failure is None
    assert call.started_at == 1_800_000_000.25
    assert call.finished_at == 1_800_000_002.75
    assert call.id
    meter.addon.response(f)  # a second response event for the same flow hands nothing more
    assert len(meter.handed) == 1


def test_a_streamed_call_is_handed_over_when_the_stream_ends() -> None:
    meter = Meter()
    f = llm_flow(OPENAI_CHAT, body=STREAM_CHAT)
    f.response = response(content_type=SSE, body=b"")
    run(meter.cycle(f))
    (call,) = meter.handed
    assert call.http_status == 200
    assert call.route.api == "chat"


@pytest.mark.parametrize(
    ("message", "failure"),
    [
        ("Connection timed out", "timeout"),
        ("Upstream Timeout", "timeout"),
        ("Server disconnected.", "network"),
        ("Connection killed.", "network"),
    ],
)
def test_a_failed_call_is_handed_over_with_its_failure_class(message: str, failure: str) -> None:
    meter = Meter()
    f = llm_flow(OPENAI_CHAT)
    f.error = flow.Error(message)
    before = time.time()
    run(meter.cycle(f))
    (call,) = meter.handed
    assert call.failure == failure
    assert call.http_status is None
    assert call.finished_at is not None and before <= call.finished_at <= time.time()


def test_an_error_after_the_answer_began_keeps_its_status() -> None:
    """The connection broke mid-stream: the status that arrived is kept with the failure."""
    meter = Meter()
    f = llm_flow(OPENAI_CHAT, body=STREAM_CHAT)
    run(meter.request_only(f))
    f.response = response(content_type=SSE, body=b"")
    meter.addon.responseheaders(f)
    f.error = flow.Error("Server disconnected.")
    meter.addon.error(f)
    (call,) = meter.handed
    assert (call.http_status, call.failure) == (200, "network")


def test_an_error_on_an_unmetered_flow_hands_nothing() -> None:
    meter = Meter()
    f = llm_flow(("example.org", "/x"))
    f.error = flow.Error("Server disconnected.")
    run(meter.cycle(f))
    assert meter.handed == []


# --- done: calls still open at shutdown -----------------------------------------------------


def test_calls_still_open_at_shutdown_are_recorded_as_cut_short() -> None:
    meter = Meter()
    first, second = llm_flow(OPENAI_CHAT), llm_flow(ANTHROPIC_MESSAGES)
    finished = llm_flow(OPENAI_CHAT)
    finished.response = response()
    for f in (first, second):
        run(meter.request_only(f))
    run(meter.cycle(finished))
    with taddons.context(meter.addon) as tctx:
        tctx.master.addons.invoke_addon_sync(meter.addon, hooks.DoneHook())
    assert len(meter.handed) == 3
    cut = meter.handed[1:]
    assert sorted(call.route.provider for call in cut) == ["anthropic", "openai"]
    assert {call.failure for call in cut} == {"network"}
    assert all(call.finished_at is not None for call in cut)
    # Each is recorded once: a late answer or a second shutdown adds nothing.
    first.response = response()
    meter.addon.response(first)
    meter.addon.record_open_calls()
    assert len(meter.handed) == 3


# --- the self-test host ---------------------------------------------------------------------


def self_test_flow(method: str = "POST", path: str = SELF_TEST_PATH) -> http.HTTPFlow:
    return llm_flow((SELF_TEST_HOST, path), method=method, body=b"{}", started=1_800_000_000.5)


def test_the_self_test_host_is_answered_locally_with_the_row_id() -> None:
    handed: list[Any] = []
    addon = SelfTestAddon(handed.append)
    f = self_test_flow()
    with taddons.context(addon) as tctx:
        tctx.master.addons.invoke_addon_sync(addon, HttpRequestHeadersHook(f))
    assert f.response is not None and f.response.status_code == 200
    assert f.response.headers["content-type"] == "application/json"
    answer = json.loads(f.response.content or b"")
    (call,) = handed
    assert answer["request_id"] == call.id
    assert answer["version"]
    assert call.started_at == 1_800_000_000.5


@pytest.mark.parametrize(("method", "path"), [("GET", SELF_TEST_PATH), ("POST", "/v1/other")])
def test_the_self_test_host_refuses_anything_else(method: str, path: str) -> None:
    handed: list[Any] = []
    addon = SelfTestAddon(handed.append)
    f = self_test_flow(method, path)
    addon.requestheaders(f)
    assert f.response is not None and f.response.status_code == 404
    assert handed == []


def test_the_self_test_addon_leaves_other_hosts_alone() -> None:
    handed: list[Any] = []
    addon = SelfTestAddon(handed.append)
    f = llm_flow(OPENAI_CHAT)
    addon.requestheaders(f)
    assert f.response is None
    assert handed == []
