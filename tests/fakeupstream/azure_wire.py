"""Azure OpenAI / Azure AI Foundry: OpenAI's bodies under Azure's paths, with Azure's quirks.

- Paths: `/openai/deployments/{deployment}/…?api-version=…`, `/openai/responses`,
  `/openai/v1/…`, `/models/chat/completions` (Foundry).
- The response names the deployed model and version (`gpt-4.1-2025-04-14`), never the
  deployment.
- A stream opens with a content-filter chunk (`choices: []`, `model: ""`,
  `prompt_filter_results`).
- `stream_options` is refused with a 400 before api-version 2024-09-01-preview.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from . import catalog, openai_wire
from .reply import Call, Reply, compact

PATH = re.compile(
    r"^(?:/openai/deployments/[^/]+|/openai/v1|/openai|/models)"
    r"/(chat/completions|completions|responses|embeddings)$"
)
STREAM_OPTIONS_SINCE = "2024-09-01"
FILTER = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


class AzureShape(openai_wire.ChatShape):
    chat_id = "chatcmpl-AzureFakeUpstream000000001"

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.model = catalog.AZURE_MODEL  # the deployed model, whatever the deployment is named
        self.usage = catalog.AZURE_CHAT_USAGE

    def prelude(self) -> list[bytes]:
        first = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER}],
        }
        return [openai_wire.data(first)]

    def chunk(self, choices: list[Any], usage: Any = openai_wire.ABSENT) -> dict[str, Any]:
        out = super().chunk(choices, usage)
        out.pop("service_tier", None)
        for choice in choices:
            choice["content_filter_results"] = {} if not choice.get("delta") else FILTER
        return out


# Chat in Azure's shape for rows served by this module (provider "azure").
openai_wire.SHAPES["azure"] = AzureShape


def handle(call: Call) -> Reply:
    match = PATH.match(call.path)
    assert match is not None
    operation = match.group(1)
    version = call.query.get("api-version", "")
    if (
        call.include_usage
        and not call.path.startswith("/openai/v1/")
        and version[:10] < STREAM_OPTIONS_SINCE
    ):
        body = {
            "error": {
                "message": "Unrecognized request argument supplied: stream_options",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        return Reply(
            status=400, headers=[("content-type", "application/json")], body=compact(body).encode()
        )
    if operation == "chat/completions":
        reply = openai_wire.chat(dataclasses.replace(call, provider="azure"))
    else:
        # The response names the real model, not the deployment the request named.
        model = catalog.OPENAI_EMBEDDING_MODEL if operation == "embeddings" else catalog.AZURE_MODEL
        real = dataclasses.replace(call, json={**call.body_dict, "model": model})
        reply = {
            "responses": openai_wire.responses,
            "embeddings": openai_wire.embeddings,
            "completions": openai_wire.completions,
        }[operation](real)
    reply.headers = [
        *[(k, v) for k, v in reply.headers if not k.startswith("openai-")],
        ("apim-request-id", "3a1c6a1e-0000-4000-8000-0000000a2e00"),
        ("x-ms-region", "East US"),
    ]
    return reply


def error(call: Call, code: str) -> Reply:
    status = int(code) if code.isdigit() else 500
    body = {"error": {"code": str(status), "message": "fake failure"}}
    return Reply(
        status=status,
        headers=[("content-type", "application/json")],
        body=json.dumps(body).encode(),
    )
