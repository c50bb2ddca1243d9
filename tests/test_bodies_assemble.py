"""Streams put back together, one per wire format: text, tool calls and thinking, in order."""

from __future__ import annotations

import base64
import json
from typing import Any

from halton_meter.bodies.assemble import assemble_body, assemble_socket, assemble_stream
from halton_meter.providers.eventstream import encode_message


def sse(*events: dict[str, Any], named: bool = False) -> bytes:
    out = b""
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        out += f"{head}data: {json.dumps(event)}\n\n".encode()
    return out


def kinds(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (p["type"], p.get("text") or f"{p.get('name')}({p.get('arguments')})")
        for p in message["parts"]
    ]


def test_anthropic_messages() -> None:
    data = sse(
        {"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage": {}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me "},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "think."},
        },
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Hello "},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "<script>"},
        },
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "tu_1", "name": "grep", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"q": '},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '"x"}'},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
        named=True,
    )
    # Split at odd places: assembly does not care how the bytes were chunked.
    message = assemble_stream(data, "text/event-stream")
    assert kinds(message) == [
        ("thinking", "Let me think."),
        ("text", "Hello <script>"),
        ("tool_call", 'grep({"q": "x"})'),
    ]
    assert message["model"] == "claude-sonnet-4-5" and message["stop_reason"] == "tool_use"


def test_openai_chat() -> None:
    data = (
        sse(
            {
                "model": "gpt-4.1",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            },
            {"model": "gpt-4.1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
            {"model": "gpt-4.1", "choices": [{"index": 0, "delta": {"content": " there"}}]},
            {
                "model": "gpt-4.1",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "c1",
                                    "function": {"name": "ls", "arguments": '{"p":'},
                                }
                            ]
                        },
                    }
                ],
            },
            {
                "model": "gpt-4.1",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"/"}'}}]},
                        "finish_reason": "tool_calls",
                    }
                ],
            },
            {"model": "gpt-4.1", "choices": [], "usage": {"prompt_tokens": 3}},
        )
        + b"data: [DONE]\n\n"
    )
    message = assemble_stream(data, "text/event-stream")
    assert kinds(message) == [("text", "Hi there"), ("tool_call", 'ls({"p":"/"})')]
    assert message["stop_reason"] == "tool_calls"


RESPONSES_EVENTS: list[dict[str, Any]] = [
    {"type": "response.created", "response": {"model": "gpt-5", "output": []}},
    {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning"}},
    {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "Plan."},
    {"type": "response.output_text.delta", "output_index": 1, "delta": "Done"},
    {
        "type": "response.output_item.added",
        "output_index": 2,
        "item": {"type": "function_call", "call_id": "f1", "name": "run"},
    },
    {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": "{}"},
]
RESPONSES_COMPLETED = {
    "type": "response.completed",
    "response": {
        "model": "gpt-5",
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Plan."}]},
            {"type": "message", "content": [{"type": "output_text", "text": "Done"}]},
            {"type": "function_call", "call_id": "f1", "name": "run", "arguments": "{}"},
        ],
    },
}
RESPONSES_PARTS = [("thinking", "Plan."), ("text", "Done"), ("tool_call", "run({})")]


def test_openai_responses_from_deltas_and_from_the_completed_event() -> None:
    assert (
        kinds(assemble_stream(sse(*RESPONSES_EVENTS, named=True), "text/event-stream"))
        == RESPONSES_PARTS
    )
    whole = sse(*RESPONSES_EVENTS, RESPONSES_COMPLETED, named=True)
    message = assemble_stream(whole, "text/event-stream")
    assert kinds(message) == RESPONSES_PARTS and message["stop_reason"] == "completed"


def test_responses_over_a_websocket() -> None:
    created = json.dumps(RESPONSES_EVENTS[0]).encode()
    message = assemble_socket((created, json.dumps(RESPONSES_COMPLETED).encode()))
    assert kinds(message) == RESPONSES_PARTS and message["model"] == "gpt-5"


def test_gemini_stream_and_code_assist_wrapper() -> None:
    chunks = [
        {
            "candidates": [{"content": {"parts": [{"text": "Thinking…", "thought": True}]}}],
            "modelVersion": "gemini-2.5-pro",
        },
        {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]},
        {
            "candidates": [
                {
                    "content": {
                        "parts": [{"text": "lo"}, {"functionCall": {"name": "f", "args": {"a": 1}}}]
                    },
                    "finishReason": "STOP",
                }
            ]
        },
    ]
    expected = [("thinking", "Thinking…"), ("text", "Hello"), ("tool_call", 'f({"a": 1})')]
    assert kinds(assemble_stream(sse(*chunks), "text/event-stream")) == expected
    wrapped = sse(*({"response": c} for c in chunks))
    message = assemble_stream(wrapped, "text/event-stream")
    assert kinds(message) == expected and message["stop_reason"] == "STOP"


def test_gemini_json_array_stream_whole_and_cut() -> None:
    """streamGenerateContent without alt=sse: one JSON array, sent element by element; a
    stream cut by the per-call cap keeps the elements before the cut."""
    chunks = [
        {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}], "modelVersion": "g-1"},
        {"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}]},
    ]
    data = ("[" + ",\r\n".join(json.dumps(c) for c in chunks) + "]").encode()
    message = assemble_stream(data, "application/json")
    assert kinds(message) == [("text", "Hello")] and message["stop_reason"] == "STOP"
    assert assemble_body(data) == message  # the same array buffered whole
    cut = assemble_stream(data[: data.index(b'"lo"')], "application/json")
    assert kinds(cut) == [("text", "Hel")] and cut["model"] == "g-1"


def frame(event: str, payload: dict[str, Any]) -> bytes:
    headers = {":message-type": "event", ":event-type": event, ":content-type": "application/json"}
    return encode_message(headers, json.dumps(payload).encode())


def test_bedrock_invoke_stream_carries_anthropic_events() -> None:
    events = [
        {"type": "message_start", "message": {"model": "claude-3-5-sonnet", "usage": {}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "From Bedrock"},
        },
        {"type": "message_stop"},
    ]
    data = b"".join(
        frame("chunk", {"bytes": base64.b64encode(json.dumps(e).encode()).decode()}) for e in events
    )
    message = assemble_stream(data, "application/vnd.amazon.eventstream")
    assert kinds(message) == [("text", "From Bedrock")]


def test_bedrock_converse_stream() -> None:
    data = b"".join(
        [
            frame("messageStart", {"role": "assistant"}),
            frame(
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}},
            ),
            frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Con"}}),
            frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "verse"}}),
            frame(
                "contentBlockStart",
                {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t", "name": "calc"}}},
            ),
            frame(
                "contentBlockDelta",
                {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"x":2}'}}},
            ),
            frame("messageStop", {"stopReason": "tool_use"}),
        ]
    )
    message = assemble_stream(data, "application/vnd.amazon.eventstream")
    assert kinds(message) == [
        ("thinking", "hmm"),
        ("text", "Converse"),
        ("tool_call", 'calc({"x":2})'),
    ]
    assert message["stop_reason"] == "tool_use"


def test_whole_bodies() -> None:
    anthropic = {
        "type": "message",
        "model": "m",
        "content": [
            {"type": "text", "text": "A"},
            {"type": "tool_use", "id": "1", "name": "t", "input": {"k": "v"}},
        ],
    }
    assert kinds(assemble_body(json.dumps(anthropic).encode()) or {}) == [
        ("text", "A"),
        ("tool_call", 't({"k": "v"})'),
    ]
    chat = {
        "model": "gpt",
        "choices": [{"index": 0, "message": {"content": "B"}, "finish_reason": "stop"}],
    }
    assert kinds(assemble_body(json.dumps(chat).encode()) or {}) == [("text", "B")]
    converse = {"output": {"message": {"content": [{"text": "C"}]}}, "stopReason": "end_turn"}
    assert kinds(assemble_body(json.dumps(converse).encode()) or {}) == [("text", "C")]
    assert assemble_body(b"not json") is None
