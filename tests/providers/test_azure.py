"""Azure OpenAI and Foundry: routes on any resource host, the api-version rule for
`stream_options`, the model from the response rather than the deployment."""

from __future__ import annotations

import json

import pytest

from halton_meter.providers import inject_stream_usage, may_inject_stream_usage, route_for
from tests.providers.helpers import SSE, feed

STREAM = b'{"stream":true,"messages":[]}'


@pytest.mark.parametrize(
    "host",
    ["acme.openai.azure.com", "acme-eu.cognitiveservices.azure.com", "acme.services.ai.azure.com"],
)
@pytest.mark.parametrize(
    ("path", "api", "family"),
    [
        ("/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21", "chat", "openai"),
        (
            "/openai/deployments/my-gpt4o/completions?api-version=2024-10-21",
            "completions",
            "openai",
        ),
        ("/openai/deployments/emb/embeddings?api-version=2024-10-21", "embeddings", "openai"),
        (
            "/openai/deployments/my-gpt4o/responses?api-version=2025-04-01-preview",
            "responses",
            "openai",
        ),
        ("/openai/responses?api-version=2025-03-01-preview", "responses", "openai"),
        ("/openai/v1/chat/completions", "chat", "openai"),
        ("/openai/v1/responses", "responses", "openai"),
        ("/models/chat/completions?api-version=2024-05-01-preview", "chat", None),
        ("/anthropic/v1/messages", "messages", "anthropic"),
    ],
)
def test_routes(host: str, path: str, api: str, family: str | None) -> None:
    found = route_for(host, 443, path)
    assert found is not None
    assert (found.provider, found.wire, found.api, found.model_family) == (
        "azure",
        "azure",
        api,
        family,
    )


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("acme.openai.azure.com", "/openai/deployments/my-gpt4o/images/generations"),
        ("acme.openai.azure.com", "/openai/files"),
        ("acme.blob.core.windows.net", "/openai/v1/chat/completions"),
        ("management.azure.com", "/openai/v1/chat/completions"),
        ("acme.openai.azure.com.evil.net", "/openai/v1/chat/completions"),
    ],
)
def test_not_metered(host: str, path: str) -> None:
    assert route_for(host, 443, path) is None


@pytest.mark.parametrize(
    ("version", "asked"),
    [
        ("2024-06-01", False),
        ("2024-08-01-preview", False),
        ("2024-09-01-preview", True),
        ("2024-10-21", True),
        ("2025-04-01-preview", True),
        ("", False),
        ("preview", False),
    ],
)
def test_stream_usage_is_asked_only_where_the_api_version_accepts_it(
    version: str, asked: bool
) -> None:
    found = route_for(
        "acme.openai.azure.com",
        443,
        f"/openai/deployments/d/chat/completions?api-version={version}",
    )
    assert found is not None
    assert may_inject_stream_usage(found, STREAM) is asked
    assert (inject_stream_usage(found, STREAM) is not None) is asked


def test_the_v1_api_is_always_asked() -> None:
    found = route_for(
        "acme.openai.azure.com", 443, "/openai/v1/chat/completions?api-version=preview"
    )
    assert found is not None and may_inject_stream_usage(found, STREAM)


def test_the_first_chunk_names_no_model() -> None:
    found = route_for(
        "acme.openai.azure.com",
        443,
        "/openai/deployments/d/chat/completions?api-version=2024-10-21",
    )
    assert found is not None
    first = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [],
    }
    content = {
        "id": "c1",
        "model": "gpt-4o-2024-11-20",
        "choices": [{"index": 0, "delta": {"content": "Hi"}}],
        "usage": None,
    }
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    last = {"id": "c1", "model": "gpt-4o-2024-11-20", "choices": [], "usage": usage}
    data = (
        "".join(f"data: {json.dumps(obj)}\n\n" for obj in (first, content, last))
        + "data: [DONE]\n\n"
    )
    result = feed(found, [data.encode()], SSE)
    assert result.model == "gpt-4o-2024-11-20" and result.tokens_complete
    assert (result.usage.input_tokens, result.usage.output_tokens) == (10, 2)
