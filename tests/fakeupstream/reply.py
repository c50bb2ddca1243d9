"""The request/reply model shared by the server and the per-provider wire formats.

Wire modules only turn a parsed request (`Call`) into the provider's exact bytes (`Reply`);
the server owns the transport-level scenarios (cut, compression, delays, holds), so every
provider gets them for free and consistently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import catalog


@dataclass
class Call:
    """One parsed request, plus the knobs clients set through `x-fake-*` headers."""

    method: str
    host: str  # Host header without port, lower-case
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any
    provider: str
    scenarios: frozenset[str]
    events: int = catalog.DEFAULT_EVENTS
    query_string: str = ""  # as sent, for repeated parameters (`group_by[]=a&group_by[]=b`)

    @property
    def body_dict(self) -> dict[str, Any]:
        """The JSON body when it is an object, else an empty dict (saves isinstance checks)."""
        return self.json if isinstance(self.json, dict) else {}

    @property
    def stream(self) -> bool:
        return self.body_dict.get("stream") is True

    @property
    def include_usage(self) -> bool:
        options = self.body_dict.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    def model(self, default: str) -> str:
        """The requested model echoed back (deterministic per request), else `default`."""
        value = self.body_dict.get("model")
        return value if isinstance(value, str) and value else default


@dataclass
class Reply:
    """A provider response: a plain body, or `chunks` streamed one HTTP chunk each.

    `garbage` (a truncated, invalid event) and `error_event` (the provider's mid-stream error)
    let the server apply the `malformed` and `stream-error` scenarios in the right framing.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunks: list[bytes] | None = None
    garbage: bytes = b""
    error_event: bytes = b""
    error_tail: bytes = b""  # sent after error_event (e.g. the closing `]` of a JSON array)


def compact(obj: Any) -> str:
    """JSON without spaces, as Anthropic and OpenAI streams send it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def pretty(obj: Any, indent: int = 2) -> str:
    """Indented JSON, as OpenAI and Google send non-streamed bodies."""
    return json.dumps(obj, indent=indent, ensure_ascii=False)


def sse(data: str, event: str | None = None, *, crlf: bool = False) -> bytes:
    """One SSE event; Google separates events with CRLF pairs, everyone else with LF."""
    nl = "\r\n" if crlf else "\n"
    head = f"event: {event}{nl}" if event else ""
    return f"{head}data: {data}{nl}{nl}".encode()


def truncated(text: str) -> str:
    """An invalid-JSON prefix of `text`, cut right after the usage object opens if present."""
    for key in ('"usageMetadata"', '"usage"'):
        at = text.find(key)
        if at >= 0:
            brace = text.find("{", at)
            if brace >= 0:
                return text[: brace + 1]
    return text[: max(1, len(text) // 2)]
