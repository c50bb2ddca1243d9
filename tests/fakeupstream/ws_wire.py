"""The Responses API over a WebSocket, as api.openai.com (`/v1/responses`) and the ChatGPT
backend (`chatgpt.com/backend-api/codex/responses`) speak it to Codex CLI and the OpenAI SDK.

`GET` with `Upgrade: websocket` (permessage-deflate accepted when offered, unless the
`no-deflate` scenario says otherwise); then each client text message is one JSON request:
`response.create` (a warm-up when `generate` is false, which generates nothing) is answered
by the Responses stream's typed events, one JSON text message each, ending in
`response.completed` with usage; every response gets its own id, so `previous_response_id`
chains. The ChatGPT backend adds its quota: `x-codex-*` headers on the 101 and a
`codex.rate_limits` event before each response. Scenarios (from the upgrade's
`x-fake-scenario`, or per request from `metadata["x-fake-scenario"]`): `cut` drops the TCP
connection halfway through the events, `error-429` / `quota` answer with the wrapped error
Codex reads (`{"type":"error","status":429,…}`), `incomplete` / `failed` end the response so.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from . import catalog, openai_wire
from .reply import Call, Reply, compact

CHATGPT_HOST = "chatgpt.com"
SOCKET_PATHS = frozenset({"/v1/responses", "/backend-api/codex/responses"})
RESPONSE_ID = "resp_0fakews{:028d}"
# What a warm-up (`generate: false`) reports: nothing generated, nothing read.
WARMUP_USAGE: dict[str, Any] = {
    "input_tokens": 0,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 0,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 0,
}
# The ChatGPT backend's quota headers (openai/codex codex-rs/codex-api/src/rate_limits.rs).
CODEX_HEADERS: list[tuple[str, str]] = [
    ("x-codex-primary-used-percent", "12.5"),
    ("x-codex-primary-window-minutes", "300"),
    ("x-codex-primary-reset-at", str(catalog.CREATED + 14400)),
    ("x-codex-secondary-used-percent", "41"),
    ("x-codex-secondary-window-minutes", "10080"),
    ("x-codex-secondary-reset-at", str(catalog.CREATED + 356000)),
    ("x-codex-credits-has-credits", "False"),
    ("x-codex-credits-unlimited", "false"),
    ("x-codex-plan-type", "plus"),
]
API_HEADERS: list[tuple[str, str]] = [
    ("x-request-id", catalog.OPENAI_REQUEST_ID),
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-remaining-requests", "9999"),
    ("x-ratelimit-reset-requests", "6ms"),
    ("x-ratelimit-limit-tokens", "30000000"),
    ("x-ratelimit-remaining-tokens", "29999000"),
    ("x-ratelimit-reset-tokens", "2ms"),
]
RATE_LIMITS_EVENT: dict[str, Any] = {
    "type": "codex.rate_limits",
    "plan_type": "plus",
    "metered_limit_name": "codex",
    "rate_limits": {
        "allowed": True,
        "limit_reached": False,
        "primary": {"used_percent": 12.5, "window_minutes": 300, "reset_at": catalog.CREATED},
        "secondary": {"used_percent": 41, "window_minutes": 10080, "reset_at": catalog.CREATED},
    },
    "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
}


class Recorder(Protocol):
    def __call__(self, entry: dict[str, Any]) -> None: ...


def is_upgrade(method: str, headers: dict[str, str]) -> bool:
    return method == "GET" and headers.get("upgrade", "").strip().lower() == "websocket"


def codex_headers(reply: Reply) -> Reply:
    """A Responses reply as the ChatGPT backend sends it: the API's, plus its quota headers."""
    reply.headers = [*reply.headers, *CODEX_HEADERS]
    return reply


async def serve(
    head: bytes,
    path: str,
    host: str,
    headers: dict[str, str],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    record: Recorder,
    abort: Any,
) -> None:
    """One WebSocket session, from the upgrade request (`head`) to its close."""
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(head)
    scenarios = _scenarios(headers.get("x-fake-scenario", ""))
    request = next((e for e in ws.events() if isinstance(e, Request)), None)
    if request is None or path not in SOCKET_PATHS:
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        return
    deflate = "no-deflate" not in scenarios and any(
        "permessage-deflate" in offer for offer in request.extensions or []
    )
    extra = CODEX_HEADERS if host == CHATGPT_HOST else API_HEADERS
    writer.write(
        ws.send(
            AcceptConnection(
                extensions=[PerMessageDeflate()] if deflate else [],
                extra_headers=[(k.encode(), v.encode()) for k, v in extra],
            )
        )
    )
    await writer.drain()
    session = _Session(host, path, headers, scenarios, record, deflate)
    parts: list[str] = []
    while True:
        data = await reader.read(65536)
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if not event.message_finished:
                    continue
                text, parts = "".join(parts), []
                replies, cut = session.answer(text)
                for index, message in enumerate(replies):
                    if cut and index >= max(1, len(replies) // 2):
                        await abort(writer)
                        return
                    writer.write(ws.send(TextMessage(data=message)))
                    await writer.drain()
            elif isinstance(event, BytesMessage):
                record({"method": "WS", "host": host, "path": path, "binary": len(event.data)})
            elif isinstance(event, Ping):
                writer.write(ws.send(event.response()))
                await writer.drain()
            elif isinstance(event, CloseConnection):
                if data:
                    writer.write(ws.send(event.response()))
                    await writer.drain()
                return
        if not data:
            return


def _scenarios(value: str) -> frozenset[str]:
    return frozenset(s.strip().lower() for s in value.split(",") if s.strip())


class _Session:
    """The server side of one socket: numbers the responses it creates."""

    def __init__(
        self,
        host: str,
        path: str,
        headers: dict[str, str],
        scenarios: frozenset[str],
        record: Recorder,
        deflate: bool,
    ) -> None:
        self.deflate = deflate
        self.host = host
        self.path = path
        self.headers = headers
        self.scenarios = scenarios
        self.record = record
        self.count = 0

    def answer(self, text: str) -> tuple[list[str], bool]:
        """The messages that answer one client message, and whether to cut halfway."""
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        metadata = body.get("metadata")
        scenarios = self.scenarios | _scenarios(
            str(metadata.get("x-fake-scenario", "")) if isinstance(metadata, dict) else ""
        )
        entry: dict[str, Any] = {
            "seq": None,
            "method": "WS",
            "host": self.host,
            "path": self.path,
            "headers": self.headers,
            "body": text,
            "json": body or None,
            "provider": "openai",
            "scenario": ",".join(sorted(scenarios)),
            "sent": [],
            "deflate": self.deflate,
        }
        self.record(entry)
        if body.get("type") != "response.create":
            return [], False
        self.count += 1
        response_id = RESPONSE_ID.format(self.count)
        messages = [compact(event) for event in self._events(body, scenarios, response_id)]
        if self.host == CHATGPT_HOST:
            messages.insert(0, compact(RATE_LIMITS_EVENT))
        entry["sent"] = messages
        entry["response_id"] = response_id
        return messages, "cut" in scenarios

    def _events(
        self, body: dict[str, Any], scenarios: frozenset[str], response_id: str
    ) -> list[dict[str, Any]]:
        error = next((s[6:] for s in sorted(scenarios) if s.startswith("error-")), None)
        if error or "quota" in scenarios:
            return [_wrapped_error(int(error) if error and error.isdigit() else 429)]
        call = Call(
            method="POST",
            host=self.host,
            path=self.path,
            query={},
            headers=self.headers,
            body=b"",
            json=body,
            provider="openai",
            scenarios=scenarios or frozenset({"ok"}),
        )
        builder = openai_wire._Responses(call)
        previous = body.get("previous_response_id")
        if body.get("generate") is False:
            events: list[tuple[str, dict[str, Any]]] = [
                ("response.created", {"response": builder.response("in_progress", [], None)}),
                ("response.completed", {"response": builder.response("completed", [], None)}),
            ]
            events[1][1]["response"]["usage"] = WARMUP_USAGE
            events = [
                (kind, {"type": kind, "sequence_number": n, **obj})
                for n, (kind, obj) in enumerate(events)
            ]
        else:
            events = builder.events()
        out = []
        for _, event in events:
            response = event.get("response")
            if isinstance(response, dict):
                response["id"] = response_id
                response["previous_response_id"] = previous
                response["store"] = body.get("store", False)
            out.append(event)
        return out


def _wrapped_error(status: int) -> dict[str, Any]:
    """An HTTP error carried on the socket: what a POST would have returned, headers too."""
    if status == 429:
        err = {
            "type": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "plan_type": "plus",
            "resets_at": catalog.CREATED + 3600,
        }
    else:
        err = {"type": "server_error", "message": "The server had an error."}
    return {
        "type": "error",
        "status": status,
        "error": err,
        "headers": {"x-codex-primary-used-percent": "100.0", "x-codex-primary-window-minutes": 300},
    }
