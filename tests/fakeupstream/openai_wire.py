"""OpenAI wire formats (Chat, legacy Completions, Responses, Embeddings) and the
OpenAI-compatible providers' Chat variants, each with its usage quirk (providers.md section 6).

A `ChatShape` subclass per provider decides key order and where usage goes in a stream; the
shared `chat()` builds the sequence, so all providers stream the same text deterministically.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, ClassVar

from . import catalog
from .reply import Call, Reply, compact, pretty, sse, truncated

ABSENT: Any = object()  # marks "no usage member at all", as opposed to `"usage": null`
DONE = b"data: [DONE]\n\n"


def headers(*, stream: bool = False) -> list[tuple[str, str]]:
    content_type = "text/event-stream; charset=utf-8" if stream else "application/json"
    return [
        ("content-type", content_type),
        ("x-request-id", catalog.OPENAI_REQUEST_ID),
        ("openai-processing-ms", "123"),
        ("openai-version", "2020-10-01"),
    ]


def data(obj: Any) -> bytes:
    return sse(compact(obj))


# --- Chat Completions: one shape per provider ---------------------------------------------------


class ChatShape:
    """OpenAI's own Chat Completions bytes; subclasses override only what their provider changes.

    `usage_mode` "include": usage only with stream_options.include_usage (then `"usage": null`
    on every chunk and an extra `choices: []` chunk); "finish": usage on the finish chunk always.
    """

    chat_id: ClassVar[str] = catalog.OPENAI_CHAT_ID
    default_model: ClassVar[str] = catalog.OPENAI_MODEL
    usage_mode: ClassVar[str] = "include"

    def __init__(self, call: Call) -> None:
        self.call = call
        self.model = call.model(self.default_model)
        self.usage = catalog.chat_usage(call.provider)

    # non-stream
    def encode(self, obj: Any) -> bytes:
        return pretty(obj).encode()

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "object": "chat.completion",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
            "service_tier": "default",
            "system_fingerprint": catalog.OPENAI_FINGERPRINT,
        }

    # stream
    def prelude(self) -> list[bytes]:
        return []

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": catalog.CREATED,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": catalog.OPENAI_FINGERPRINT,
            "choices": choices,
        }
        if usage is not ABSENT:
            out["usage"] = usage
        return out

    def choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def role_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": "", "refusal": None}

    def opening(self, usage_null: Any) -> list[dict[str, Any]]:
        """Chunks before the text: OpenAI announces the role with empty content."""
        return [self.chunk([self.choice(self.role_delta(), None)], usage_null)]

    def content_chunk(self, text: str, index: int, usage_null: Any) -> dict[str, Any]:
        return self.chunk([self.choice({"content": text}, None)], usage_null)

    def finish_chunk(self, usage_null: Any) -> list[dict[str, Any]]:
        """The finish chunk(s); "finish"-mode providers attach usage here."""
        usage = self.usage if self.usage_mode == "finish" else usage_null
        return [self.chunk([self.choice({}, "stop")], usage)]

    def stream_error(self) -> bytes:
        return data({"error": _openai_error_obj(500)})


class XaiShape(ChatShape):
    chat_id = "3f5c0a9e-fake-4e0d-9a51-000000000001"
    default_model = "grok-4"

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "object": "chat.completion",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
            "system_fingerprint": "fp_fakexai01",
        }

    def encode(self, obj: Any) -> bytes:
        return compact(obj).encode()

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": choices,
            "system_fingerprint": "fp_fakexai01",
        }
        if usage is not ABSENT:
            out["usage"] = usage
        return out

    def role_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": ""}


class GroqShape(ChatShape):
    """Groq: `x_groq.id` on the first chunk, `x_groq.usage` on the finish chunk, always."""

    chat_id = "chatcmpl-fake-groq-0000-000000000001"
    default_model = "llama-3.3-70b-versatile"
    groq_request = "req_01fakegroq0000000000000001"

    def encode(self, obj: Any) -> bytes:
        return compact(obj).encode()

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "object": "chat.completion",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
            "usage_breakdown": None,
            "system_fingerprint": "fp_fakegroq1",
            "x_groq": {"id": self.groq_request},
            "service_tier": "on_demand",
        }

    def chunk(
        self, choices: list[Any], usage: Any = ABSENT, x_groq: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": catalog.CREATED,
            "model": self.model,
            "system_fingerprint": "fp_fakegroq1",
            "choices": choices,
        }
        if x_groq is not None:
            out["x_groq"] = x_groq
        if usage is not ABSENT:
            out["usage"] = usage
        return out

    def role_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": ""}

    def opening(self, usage_null: Any) -> list[dict[str, Any]]:
        choices = [self.choice(self.role_delta(), None)]
        return [self.chunk(choices, usage_null, x_groq={"id": self.groq_request})]

    def finish_chunk(self, usage_null: Any) -> list[dict[str, Any]]:
        x_groq = {"id": self.groq_request, "usage": self.usage}
        return [self.chunk([self.choice({}, "stop")], usage_null, x_groq=x_groq)]


class MistralShape(ChatShape):
    chat_id = "cmpl-fakemistral00000000000000001"
    default_model = "mistral-small-latest"
    usage_mode = "finish"

    def encode(self, obj: Any) -> bytes:
        return compact(obj).encode()

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "object": "chat.completion",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "tool_calls": None, "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
        }

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": choices,
        }
        if usage is not ABSENT and usage is not None:
            out["usage"] = usage
        return out

    def choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "finish_reason": finish}

    def role_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": ""}

    def finish_chunk(self, usage_null: Any) -> list[dict[str, Any]]:
        return [self.chunk([self.choice({"content": ""}, "stop")], self.usage)]


class DeepseekShape(ChatShape):
    chat_id = "fake-deepseek-0000-0000-000000000001"
    default_model = "deepseek-chat"

    def encode(self, obj: Any) -> bytes:
        return compact(obj).encode()

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "object": "chat.completion",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
            "system_fingerprint": "fp_fakedeepseek",
        }

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": catalog.CREATED,
            "model": self.model,
            "system_fingerprint": "fp_fakedeepseek",
            "choices": choices,
        }
        if usage is not ABSENT:
            out["usage"] = usage
        return out

    def role_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": ""}


class OpenRouterShape(ChatShape):
    """OpenRouter: `: OPENROUTER PROCESSING` comments, usage (with `cost`) always in the last event,
    whitespace keep-alive before non-streamed JSON, errors after a 200 as chunks with `error`."""

    chat_id = "gen-1767225600-FakeOpenRouter0001"
    default_model = "openai/gpt-4o"

    def encode(self, obj: Any) -> bytes:
        return b"\n         \n\n         \n" + compact(obj).encode()

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "provider": "OpenAI",
            "model": self.model,
            "object": "chat.completion",
            "created": catalog.CREATED,
            "choices": [
                {
                    "logprobs": None,
                    "finish_reason": "stop",
                    "native_finish_reason": "stop",
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "reasoning": None,
                    },
                }
            ],
            "usage": self.usage,
        }

    def prelude(self) -> list[bytes]:
        return [b": OPENROUTER PROCESSING\n\n", b": OPENROUTER PROCESSING\n\n"]

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.chat_id,
            "provider": "OpenAI",
            "model": self.model,
            "object": "chat.completion.chunk",
            "created": catalog.CREATED,
            "choices": choices,
        }
        if usage is not ABSENT and usage is not None:
            out["usage"] = usage
        return out

    def choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "index": 0,
            "delta": delta,
            "finish_reason": finish,
            "native_finish_reason": finish,
            "logprobs": None,
        }

    def role_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": ""}

    def content_chunk(self, text: str, index: int, usage_null: Any) -> dict[str, Any]:
        return self.chunk([self.choice({"role": "assistant", "content": text}, None)])

    def finish_chunk(self, usage_null: Any) -> list[dict[str, Any]]:
        empty = {"role": "assistant", "content": ""}
        return [
            self.chunk([self.choice(empty, "stop")]),
            self.chunk([self.choice(empty, None)], self.usage),
        ]

    def stream_error(self) -> bytes:
        err = {"code": "server_error", "message": "Provider returned error"}
        obj = self.chunk([self.choice({"content": ""}, "error")])
        obj["error"] = err
        return data(obj)


class TogetherShape(ChatShape):
    """Together: usage (top-level `cached_tokens`) on the finish chunk; extra `text`, `seed`,
    `token_id` members."""

    chat_id = "fake-together-00000000000000001"
    default_model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    usage_mode = "finish"

    def encode(self, obj: Any) -> bytes:
        return compact(obj).encode()

    def opening(self, usage_null: Any) -> list[dict[str, Any]]:
        return []

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "object": "chat.completion",
            "created": catalog.CREATED,
            "model": self.model,
            "prompt": [],
            "choices": [
                {
                    "finish_reason": "stop",
                    "seed": 4242424242,
                    "logprobs": None,
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "tool_calls": []},
                }
            ],
            "usage": self.usage,
        }

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": choices,
            "usage": None if usage is ABSENT else usage,
        }

    def together_choice(self, text: str, token_id: int, finish: str | None) -> dict[str, Any]:
        return {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish,
            "seed": 4242424242 if finish else None,
            "delta": {
                "token_id": token_id,
                "role": "assistant",
                "content": text,
                "tool_calls": None,
            },
        }

    def content_chunk(self, text: str, index: int, usage_null: Any) -> dict[str, Any]:
        return self.chunk([self.together_choice(text, 1000 + index, None)])

    def finish_chunk(self, usage_null: Any) -> list[dict[str, Any]]:
        return [self.chunk([self.together_choice("", 128009, "stop")], self.usage)]


class FireworksShape(ChatShape):
    chat_id = "fake-fireworks-0000-000000000001"
    default_model = "accounts/fireworks/models/llama-v3p3-70b-instruct"

    def encode(self, obj: Any) -> bytes:
        return compact(obj).encode()

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "object": "chat.completion",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
        }

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": catalog.CREATED,
            "model": self.model,
            "choices": choices,
        }
        if usage is not ABSENT:
            out["usage"] = usage
        return out

    def choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "finish_reason": finish}

    def role_delta(self) -> dict[str, Any]:
        return {"role": "assistant"}


class CerebrasShape(ChatShape):
    """Cerebras: usage and `time_info` on the finish chunk; other chunks carry no usage."""

    chat_id = "chatcmpl-fake-cerebras-000000000001"
    default_model = "llama3.1-8b"
    usage_mode = "finish"

    def encode(self, obj: Any) -> bytes:
        return compact(obj).encode()

    def completion(self, text: str) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "choices": [
                {
                    "finish_reason": "stop",
                    "index": 0,
                    "message": {"content": text, "role": "assistant"},
                }
            ],
            "created": catalog.CREATED,
            "model": self.model,
            "system_fingerprint": "fp_fakecerebras",
            "object": "chat.completion",
            "usage": self.usage,
            "time_info": catalog.CEREBRAS_TIME_INFO,
        }

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.chat_id,
            "choices": choices,
            "created": catalog.CREATED,
            "model": self.model,
            "system_fingerprint": "fp_fakecerebras",
            "object": "chat.completion.chunk",
        }
        if usage is not ABSENT and usage is not None:
            out["usage"] = usage
            out["time_info"] = catalog.CEREBRAS_TIME_INFO
        return out

    def choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        if finish is None:
            return {"delta": delta, "index": 0}
        return {"delta": delta, "finish_reason": finish, "index": 0}

    def role_delta(self) -> dict[str, Any]:
        return {"role": "assistant"}


class PerplexityShape(ChatShape):
    """Perplexity: search-flavoured usage (citation tokens, searches, `cost`) on the last chunk."""

    chat_id = "fake-perplexity-0000-000000000001"
    default_model = "sonar"
    usage_mode = "finish"
    citations: ClassVar[list[str]] = [
        "https://example.org/fake-citation-1",
        "https://example.org/fake-citation-2",
    ]

    def encode(self, obj: Any) -> bytes:
        return compact(obj).encode()

    def _envelope(self, obj: str, usage: Any, choices: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.chat_id, "model": self.model, "created": catalog.CREATED}
        if usage is not ABSENT and usage is not None:
            out["usage"] = usage
        out["citations"] = self.citations
        out["search_results"] = [
            {"title": f"Fake result {i + 1}", "url": url, "date": None}
            for i, url in enumerate(self.citations)
        ]
        out["object"] = obj
        out["choices"] = choices
        return out

    def completion(self, text: str) -> dict[str, Any]:
        choice = {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": text},
        }
        return self._envelope("chat.completion", self.usage, [choice])

    def chunk(self, choices: list[Any], usage: Any = ABSENT) -> dict[str, Any]:
        return self._envelope("chat.completion.chunk", usage, choices)

    def opening(self, usage_null: Any) -> list[dict[str, Any]]:
        return []

    def content_chunk(self, text: str, index: int, usage_null: Any) -> dict[str, Any]:
        so_far = catalog.full_text(index + 1)
        choice = {
            "index": 0,
            "finish_reason": None,
            "message": {"role": "assistant", "content": so_far},
            "delta": {"role": "assistant", "content": text},
        }
        return self.chunk([choice])

    def finish_chunk(self, usage_null: Any) -> list[dict[str, Any]]:
        choice = {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": catalog.full_text(self.call.events)},
            "delta": {"role": "assistant", "content": ""},
        }
        return [self.chunk([choice], self.usage)]


SHAPES: dict[str, type[ChatShape]] = {
    "xai": XaiShape,
    "groq": GroqShape,
    "mistral": MistralShape,
    "deepseek": DeepseekShape,
    "openrouter": OpenRouterShape,
    "together": TogetherShape,
    "fireworks": FireworksShape,
    "cerebras": CerebrasShape,
    "perplexity": PerplexityShape,
}


def chat(call: Call) -> Reply:
    """`POST …/chat/completions` in the shape of the provider that owns the Host."""
    shape = SHAPES.get(call.provider, ChatShape)(call)
    pieces = catalog.text_pieces(call.events)
    if not call.stream:
        return Reply(headers=headers(), body=shape.encode(shape.completion("".join(pieces))))

    include = shape.usage_mode == "include" and call.include_usage
    usage_null = None if include else ABSENT
    objs = shape.opening(usage_null)
    objs += [shape.content_chunk(piece, i, usage_null) for i, piece in enumerate(pieces)]
    objs.extend(shape.finish_chunk(usage_null))
    if include:
        objs.append(shape.chunk([], shape.usage))

    chunks = shape.prelude() + [data(obj) for obj in objs] + [DONE]
    garbage = sse(truncated(compact(objs[len(objs) // 2])))
    return Reply(
        headers=headers(stream=True),
        chunks=chunks,
        garbage=garbage,
        error_event=shape.stream_error(),
    )


# --- legacy Completions --------------------------------------------------------------------------


def completions(call: Call) -> Reply:
    """`POST /v1/completions` (legacy text completions), JSON or SSE."""
    model = call.model(catalog.OPENAI_COMPLETIONS_MODEL)
    usage = catalog.OPENAI_COMPLETIONS_USAGE
    pieces = catalog.text_pieces(call.events)

    def choice(text: str, finish: str | None) -> dict[str, Any]:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    def envelope(choices: list[Any], usage_value: Any = ABSENT) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": catalog.OPENAI_COMPLETION_ID,
            "object": "text_completion",
            "created": catalog.CREATED,
            "model": model,
            "choices": choices,
        }
        if usage_value is not ABSENT:
            out["usage"] = usage_value
        return out

    if not call.stream:
        body = envelope([choice("".join(pieces), "stop")], usage)
        return Reply(headers=headers(), body=pretty(body).encode())
    usage_null = None if call.include_usage else ABSENT
    objs = [envelope([choice(p, None)], usage_null) for p in pieces]
    objs.append(envelope([choice("", "stop")], usage_null))
    if call.include_usage:
        objs.append(envelope([], usage))
    return Reply(
        headers=headers(stream=True),
        chunks=[data(obj) for obj in objs] + [DONE],
        garbage=sse(truncated(compact(objs[0]))),
        error_event=data({"error": _openai_error_obj(500)}),
    )


# --- Embeddings ----------------------------------------------------------------------------------


def embeddings(call: Call) -> Reply:
    """`POST /v1/embeddings`: one vector per input; base64 float32 when the SDK asks for it."""
    inputs = call.body_dict.get("input", "")
    count = len(inputs) if isinstance(inputs, list) and inputs and not _is_tokens(inputs) else 1
    as_base64 = call.body_dict.get("encoding_format") == "base64"
    vector: Any = catalog.EMBEDDING_VECTOR
    if as_base64:
        packed = struct.pack(f"<{len(vector)}f", *vector)
        vector = base64.b64encode(packed).decode()
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)],
        "model": call.model(catalog.OPENAI_EMBEDDING_MODEL),
        "usage": catalog.OPENAI_EMBEDDINGS_USAGE,
    }
    return Reply(headers=headers(), body=pretty(body).encode())


def _is_tokens(inputs: list[Any]) -> bool:
    return all(isinstance(x, int) for x in inputs)


# --- Responses -----------------------------------------------------------------------------------


class _Responses:
    """Builds one `/v1/responses` reply; terminal status from the scenario (completed,
    `incomplete` → response.incomplete, `failed` → response.failed)."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.model = call.model(catalog.OPENAI_MODEL)
        self.pieces = catalog.text_pieces(call.events)
        self.text = "".join(self.pieces)
        if "incomplete" in call.scenarios:
            self.status = "incomplete"
        elif "failed" in call.scenarios:
            self.status = "failed"
        else:
            self.status = "completed"
        tools = call.body_dict.get("tools")
        self.tools: list[Any] = tools if isinstance(tools, list) else []
        self.web_search = any(
            isinstance(t, dict) and str(t.get("type", "")).startswith("web_search")
            for t in self.tools
        )

    def response(self, status: str, output: list[Any], usage: Any) -> dict[str, Any]:
        error = None
        incomplete = None
        if status == "failed":
            error = {"code": "server_error", "message": "The model failed to generate a response."}
        if status == "incomplete":
            incomplete = {"reason": "max_output_tokens"}
        return {
            "id": catalog.OPENAI_RESPONSE_ID,
            "object": "response",
            "created_at": catalog.CREATED,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": self.call.body_dict.get("instructions"),
            "max_output_tokens": self.call.body_dict.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": "medium", "summary": None},
            "service_tier": "default",
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": self.tools,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }

    def reasoning_item(self) -> dict[str, Any]:
        return {"id": catalog.OPENAI_RESPONSE_REASONING_ID, "type": "reasoning", "summary": []}

    def search_item(self, status: str) -> dict[str, Any]:
        return {
            "id": catalog.OPENAI_RESPONSE_SEARCH_ID,
            "type": "web_search_call",
            "status": status,
            "action": {"type": "search", "query": "fake upstream query"},
        }

    def part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def message_item(self, status: str, content: list[Any]) -> dict[str, Any]:
        return {
            "id": catalog.OPENAI_RESPONSE_MESSAGE_ID,
            "type": "message",
            "status": status,
            "content": content,
            "role": "assistant",
        }

    def final_output(self) -> list[Any]:
        items = [self.reasoning_item()]
        if self.web_search:
            items.append(self.search_item("completed"))
        message_status = "incomplete" if self.status == "incomplete" else "completed"
        items.append(self.message_item(message_status, [self.part(self.text)]))
        return items

    def body(self) -> bytes:
        usage = catalog.OPENAI_RESPONSES_USAGE
        return pretty(self.response(self.status, self.final_output(), usage)).encode()

    def chunks(self) -> tuple[list[bytes], bytes, bytes]:
        """(events, garbage event, mid-stream error event)."""
        events = self.events()
        chunks = [sse(compact(obj), kind) for kind, obj in events]
        mid_kind, mid_obj = events[len(events) // 2]
        garbage = sse(truncated(compact(mid_obj)), mid_kind)
        err = {
            "type": "error",
            "sequence_number": len(events) // 2,
            "code": "server_error",
            "message": "The server had an error while processing your request. Sorry about that!",
            "param": None,
        }
        return chunks, garbage, sse(compact(err), "error")

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """The typed events of one streamed response, as (type, event) pairs."""
        events: list[tuple[str, dict[str, Any]]] = []

        def add(kind: str, **fields: Any) -> None:
            events.append((kind, {"type": kind, "sequence_number": len(events), **fields}))

        add("response.created", response=self.response("in_progress", [], None))
        add("response.in_progress", response=self.response("in_progress", [], None))
        pre = [self.reasoning_item()] + ([self.search_item("completed")] if self.web_search else [])
        for index, item in enumerate(pre):
            started = dict(item, status="in_progress") if "status" in item else item
            add("response.output_item.added", output_index=index, item=started)
            add("response.output_item.done", output_index=index, item=item)
        out_index = len(pre)
        ids = {"item_id": catalog.OPENAI_RESPONSE_MESSAGE_ID, "output_index": out_index}
        add(
            "response.output_item.added",
            output_index=out_index,
            item=self.message_item("in_progress", []),
        )
        add("response.content_part.added", **ids, content_index=0, part=self.part(""))
        for piece in self.pieces:
            add("response.output_text.delta", **ids, content_index=0, delta=piece, logprobs=[])
        add("response.output_text.done", **ids, content_index=0, text=self.text, logprobs=[])
        add("response.content_part.done", **ids, content_index=0, part=self.part(self.text))
        final_item = self.final_output()[-1]
        add("response.output_item.done", output_index=out_index, item=final_item)
        usage = catalog.OPENAI_RESPONSES_USAGE
        add(
            f"response.{self.status}",
            response=self.response(self.status, self.final_output(), usage),
        )
        return events


def responses(call: Call) -> Reply:
    """`POST /v1/responses`: JSON, or typed SSE events ending in completed/incomplete/failed."""
    builder = _Responses(call)
    if not call.stream:
        return Reply(headers=headers(), body=builder.body())
    chunks, garbage, error_event = builder.chunks()
    return Reply(
        headers=headers(stream=True), chunks=chunks, garbage=garbage, error_event=error_event
    )


# --- errors --------------------------------------------------------------------------------------

OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("We could not parse the JSON body of your request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided: sk-fake***0000. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("Country, region, or territory not supported", "request_forbidden", "unsupported"),
    404: (
        "The model `fake` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: (
        "Rate limit reached for gpt-4.1 in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}
QUOTA = (
    "You exceeded your current quota, please check your plan and billing details.",
    "insufficient_quota",
    "insufficient_quota",
)


def _openai_error_obj(status: int, quota: bool = False) -> dict[str, Any]:
    message, kind, code = QUOTA if quota else OPENAI_ERRORS.get(status, OPENAI_ERRORS[500])
    return {"message": message, "type": kind, "param": None, "code": code}


def error(call: Call, code: str) -> Reply:
    """The error JSON of the provider behind the Host; "529" (overloaded) becomes its 503."""
    quota = code == "quota"
    status = 429 if quota else (int(code) if code.isdigit() else 500)
    if status == 529:
        status = 503
    provider = call.provider
    if provider in {"openrouter", "deepseek"} and quota:
        status = 402  # their "out of credits"
    message = GENERIC_MESSAGES.get(status, GENERIC_MESSAGES[500])
    if provider == "openai":
        text = json.dumps({"error": _openai_error_obj(status, quota)}, indent=4) + "\n"
    elif provider == "xai":
        if status in {400, 401}:
            message = "Incorrect API key provided: xai-fake***0000. You can obtain an API key "
            message += "from https://console.x.ai."
        text = compact({"code": _XAI_CODES.get(status, "Internal error"), "error": message})
    elif provider == "mistral":
        kind = "rate_limited" if status == 429 else "invalid_request_error"
        err = {"object": "error", "message": message, "type": kind, "param": None}
        text = compact({**err, "code": str(status)})
    elif provider == "openrouter":
        text = compact({"error": {"code": status, "message": message}})
    else:
        err = _openai_error_obj(status, quota)
        text = compact({"error": {**err, "message": message}})
    extra = [("retry-after", "1")] if status == 429 else []
    return Reply(status=status, headers=headers() + extra, body=text.encode())


GENERIC_MESSAGES = {
    400: "Invalid request",
    401: "Invalid API key",
    402: "Insufficient credits",
    403: "Forbidden",
    404: "Not found",
    429: "Rate limit exceeded",
    500: "Internal server error",
    503: "Service overloaded, please try again later",
}

_XAI_CODES = {
    400: "Client specified an invalid argument",
    401: "Unauthenticated",
    403: "Permission denied",
    404: "Some requested entity was not found",
    429: "Some resource has been exhausted",
    500: "Internal error",
    503: "The service is currently unavailable",
}
