"""The response as the client saw it, put together: text, tool calls and thinking, in order.

Runs on the writer thread, only for calls whose project captures. Events are recognised by
their shape rather than by wire name, so the wire formats that carry another's body (Vertex,
Azure, Bedrock's invoke, Code Assist's `response` wrapper) need nothing of their own; Gemini's
stream without `alt=sse` is one JSON array, read element by element.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from halton_meter.providers.eventstream import EventStreamReader
from halton_meter.providers.sse import SseSplitter, decode_events, looks_like_sse

Part = dict[str, Any]
_ARGUMENT_DELTAS = (
    "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta",
)


@dataclass(slots=True)
class Message:
    """The assembled answer: parts in the order they started."""

    parts: dict[str, Part] = field(default_factory=dict)
    model: str | None = None
    stop_reason: str | None = None

    def part(self, key: str, kind: str, **fields: Any) -> Part:
        found = self.parts.get(key)
        if found is None:
            found = {"type": kind, **fields}
            if kind == "tool_call":
                found.setdefault("arguments", "")
            else:
                found.setdefault("text", "")
            self.parts[key] = found
        return found

    def add_text(self, key: str, kind: str, text: str) -> None:
        if text:
            part = self.part(key, kind)
            part["text"] = part.get("text", "") + text

    def add_arguments(self, key: str, text: str, **fields: Any) -> None:
        part = self.part(key, "tool_call", **fields)
        for name, value in fields.items():
            if value and not part.get(name):
                part[name] = value
        if text:
            part["arguments"] = part.get("arguments", "") + text

    def to_dict(self) -> dict[str, Any]:
        parts = [p for p in self.parts.values() if p.get("text") or p["type"] == "tool_call"]
        return {"model": self.model, "stop_reason": self.stop_reason, "parts": parts}


def assemble_stream(data: bytes, content_type: str | None) -> dict[str, Any]:
    """A decoded stream (SSE or AWS event-stream) as one message."""
    message = Message()
    if content_type and "amazon.eventstream" in content_type.lower():
        reader = EventStreamReader()
        for frame in reader.feed(data):
            payload = _json(frame.payload)
            if not isinstance(payload, dict):
                continue
            inner = payload.get("bytes")
            if frame.event_type == "chunk" and isinstance(inner, str):
                try:
                    event = _json(base64.b64decode(inner, validate=True))
                except (binascii.Error, ValueError):
                    continue
                if isinstance(event, dict):
                    see_event(message, event)
            else:
                _converse_event(message, frame.event_type or "", payload)
        return message.to_dict()
    if data.lstrip()[:1] == b"[":  # Gemini's streamGenerateContent without alt=sse
        for obj in _array_items(data):
            if isinstance(obj, dict):
                see_event(message, obj)
        return message.to_dict()
    splitter = SseSplitter(max_event_bytes=None)
    raws = splitter.feed(data)
    tail = splitter.take()
    if tail.strip():
        raws.append(tail)
    for _name, obj in decode_events(raws):
        if isinstance(obj, dict):
            see_event(message, obj)
    return message.to_dict()


def assemble_body(body: bytes) -> dict[str, Any] | None:
    """A whole response body (JSON, or a buffered stream) as one message; None if neither."""
    if looks_like_sse(body) or body.lstrip()[:1] == b"[":
        return assemble_stream(body, "text/event-stream")
    obj = _json(body)
    if not isinstance(obj, dict):
        return None
    message = Message()
    see_whole(message, obj)
    return message.to_dict()


def assemble_socket(messages: tuple[bytes, ...]) -> dict[str, Any]:
    """Responses over a WebSocket: each message is one event (the terminal one holds all)."""
    message = Message()
    for raw in messages:
        obj = _json(raw)
        if isinstance(obj, dict):
            see_event(message, obj)
    return message.to_dict()


# --- stream events ----------------------------------------------------------------------------


def see_event(message: Message, event: dict[str, Any]) -> None:
    kind = event.get("type")
    if isinstance(kind, str) and kind.startswith("response."):
        _responses_event(message, kind, event)
    elif isinstance(kind, str) and kind.startswith(("message_", "content_block_")):
        _anthropic_event(message, kind, event)
    elif "choices" in event:
        _chat_chunk(message, event)
    elif "candidates" in event or isinstance(event.get("response"), dict):
        _gemini_chunk(message, event)


def _anthropic_event(message: Message, kind: str, event: dict[str, Any]) -> None:
    index = str(event.get("index", 0))
    if kind == "message_start":
        message.model = _str(_dig(event, "message", "model")) or message.model
    elif kind == "content_block_start":
        block = event.get("content_block") or {}
        block_type = block.get("type")
        if block_type in ("tool_use", "server_tool_use"):
            message.add_arguments(index, "", id=block.get("id"), name=block.get("name"))
        elif block_type in ("thinking", "redacted_thinking"):
            message.add_text(index, "thinking", _str(block.get("thinking")) or "")
        elif block_type == "text":
            message.add_text(index, "text", _str(block.get("text")) or "")
    elif kind == "content_block_delta":
        delta = event.get("delta") or {}
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            message.add_text(index, "text", _str(delta.get("text")) or "")
        elif delta_type == "thinking_delta":
            message.add_text(index, "thinking", _str(delta.get("thinking")) or "")
        elif delta_type == "input_json_delta":
            message.add_arguments(index, _str(delta.get("partial_json")) or "")
    elif kind == "message_delta":
        message.stop_reason = _str(_dig(event, "delta", "stop_reason")) or message.stop_reason


def _chat_chunk(message: Message, chunk: dict[str, Any]) -> None:
    message.model = _str(chunk.get("model")) or message.model
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        n = choice.get("index", 0)
        delta = choice.get("delta") or choice.get("message") or {}
        for name in ("reasoning_content", "reasoning"):
            message.add_text(f"{n}:thinking", "thinking", _str(delta.get(name)) or "")
        message.add_text(f"{n}:text", "text", _str(delta.get("content")) or "")
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                function = call.get("function") or {}
                message.add_arguments(
                    f"{n}:tool:{call.get('index', 0)}",
                    _str(function.get("arguments")) or "",
                    id=call.get("id"),
                    name=function.get("name"),
                )
        message.stop_reason = _str(choice.get("finish_reason")) or message.stop_reason


def _responses_event(message: Message, kind: str, event: dict[str, Any]) -> None:
    index = str(event.get("output_index", 0))
    if kind in ("response.completed", "response.incomplete", "response.failed"):
        response = event.get("response") or {}
        if response.get("output"):  # the whole answer: it replaces the deltas
            message.parts.clear()
            _responses_output(message, response)
        message.model = _str(response.get("model")) or message.model
        message.stop_reason = _str(response.get("status")) or message.stop_reason
    elif kind == "response.created":
        message.model = _str(_dig(event, "response", "model")) or message.model
    elif kind == "response.output_text.delta":
        message.add_text(index, "text", _str(event.get("delta")) or "")
    elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        message.add_text(index, "thinking", _str(event.get("delta")) or "")
    elif kind == "response.output_item.added":
        item = event.get("item") or {}
        if item.get("type") in ("function_call", "custom_tool_call"):
            message.add_arguments(index, "", id=item.get("call_id"), name=item.get("name"))
    elif kind in _ARGUMENT_DELTAS:
        message.add_arguments(index, _str(event.get("delta")) or "")


def _responses_output(message: Message, response: dict[str, Any]) -> None:
    for n, item in enumerate(response.get("output") or []):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for content in item.get("content") or []:
                if isinstance(content, dict):
                    text = content.get("text") or content.get("refusal")
                    message.add_text(f"{n}", "text", _str(text) or "")
        elif kind == "reasoning":
            for summary in item.get("summary") or item.get("content") or []:
                if isinstance(summary, dict):
                    message.add_text(f"{n}", "thinking", _str(summary.get("text")) or "")
        elif kind in ("function_call", "custom_tool_call"):
            arguments = item.get("arguments", item.get("input"))
            message.add_arguments(
                f"{n}", _str(arguments) or "", id=item.get("call_id"), name=item.get("name")
            )


def _gemini_chunk(message: Message, chunk: dict[str, Any]) -> None:
    if isinstance(chunk.get("response"), dict):  # Code Assist wraps the Gemini answer
        chunk = chunk["response"]
    message.model = _str(chunk.get("modelVersion")) or message.model
    for candidate in chunk.get("candidates") or []:
        if not isinstance(candidate, dict):
            continue
        n = candidate.get("index", 0)
        for i, part in enumerate(_dig(candidate, "content", "parts") or []):
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("functionCall"), dict):
                call = part["functionCall"]
                arguments = json.dumps(call.get("args", {}), ensure_ascii=False)
                key = f"{n}:tool:{len(message.parts)}:{i}"
                message.add_arguments(key, arguments, name=call.get("name"), id=call.get("id"))
            elif part.get("thought"):
                message.add_text(f"{n}:thinking", "thinking", _str(part.get("text")) or "")
            else:
                message.add_text(f"{n}:text", "text", _str(part.get("text")) or "")
        message.stop_reason = _str(candidate.get("finishReason")) or message.stop_reason


def _converse_event(message: Message, kind: str, event: dict[str, Any]) -> None:
    index = str(event.get("contentBlockIndex", 0))
    if kind == "contentBlockStart":
        tool = _dig(event, "start", "toolUse") or {}
        message.add_arguments(index, "", id=tool.get("toolUseId"), name=tool.get("name"))
    elif kind == "contentBlockDelta":
        delta = event.get("delta") or {}
        if "text" in delta:
            message.add_text(index, "text", _str(delta.get("text")) or "")
        elif isinstance(delta.get("toolUse"), dict):
            message.add_arguments(index, _str(delta["toolUse"].get("input")) or "")
        elif isinstance(delta.get("reasoningContent"), dict):
            message.add_text(index, "thinking", _str(delta["reasoningContent"].get("text")) or "")
    elif kind == "messageStop":
        message.stop_reason = _str(event.get("stopReason")) or message.stop_reason


# --- whole bodies -----------------------------------------------------------------------------


def see_whole(message: Message, obj: dict[str, Any]) -> None:
    if isinstance(obj.get("content"), list) and obj.get("type") == "message":  # Anthropic
        message.model = _str(obj.get("model"))
        message.stop_reason = _str(obj.get("stop_reason"))
        for n, block in enumerate(obj["content"]):
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind in ("tool_use", "server_tool_use"):
                arguments = json.dumps(block.get("input", {}), ensure_ascii=False)
                message.add_arguments(str(n), arguments, id=block.get("id"), name=block.get("name"))
            elif kind == "thinking":
                message.add_text(str(n), "thinking", _str(block.get("thinking")) or "")
            elif kind == "text":
                message.add_text(str(n), "text", _str(block.get("text")) or "")
    elif "choices" in obj:
        _chat_chunk(message, obj)
    elif "output" in obj and isinstance(obj.get("output"), list):
        _responses_output(message, obj)
        message.model = _str(obj.get("model"))
    elif isinstance(_dig(obj, "output", "message"), dict):  # Bedrock Converse
        for n, block in enumerate(_dig(obj, "output", "message", "content") or []):
            if not isinstance(block, dict):
                continue
            if "text" in block:
                message.add_text(str(n), "text", _str(block["text"]) or "")
            elif isinstance(block.get("toolUse"), dict):
                tool = block["toolUse"]
                arguments = json.dumps(tool.get("input", {}), ensure_ascii=False)
                message.add_arguments(
                    str(n), arguments, id=tool.get("toolUseId"), name=tool.get("name")
                )
        message.stop_reason = _str(obj.get("stopReason"))
    else:
        _gemini_chunk(message, obj)


def _array_items(data: bytes) -> Iterator[Any]:
    """The elements of a streamed JSON array, one by one; stops where the kept bytes end (a
    stream cut by the per-call cap is still an answer up to the cut)."""
    text = data.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    at = text.find("[") + 1
    while True:
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        if at >= len(text) or text[at] == "]":
            return
        try:
            item, at = decoder.raw_decode(text, at)
        except ValueError:
            return
        yield item


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
