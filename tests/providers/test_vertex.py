"""Vertex AI: Gemini, Claude and the OpenAI-compatible endpoint behind one path scheme."""

from __future__ import annotations

import json

import pytest

from halton_meter.providers import Route, Usage, parse_request, parse_response, route_for
from tests.providers.helpers import SSE, feed

CLAUDE = "claude-sonnet-4-5@20250929"
BASE = "/v1/projects/proj-1/locations/us-east5/publishers"


@pytest.mark.parametrize(
    ("host", "path", "api", "model", "family", "region", "project"),
    [
        (
            "us-east5-aiplatform.googleapis.com",
            f"{BASE}/anthropic/models/{CLAUDE}:rawPredict",
            "messages",
            CLAUDE,
            "anthropic",
            "us-east5",
            "proj-1",
        ),
        (
            "us-east5-aiplatform.googleapis.com",
            f"{BASE}/anthropic/models/{CLAUDE}:streamRawPredict",
            "messages",
            CLAUDE,
            "anthropic",
            "us-east5",
            "proj-1",
        ),
        (
            "us-east5-aiplatform.googleapis.com",
            f"{BASE}/anthropic/models/count-tokens:rawPredict",
            "count_tokens",
            None,
            "anthropic",
            "us-east5",
            "proj-1",
        ),
        (
            "us-east5-aiplatform.googleapis.com",
            f"{BASE}/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            "stream_generate_content",
            "gemini-2.5-pro",
            "google",
            "us-east5",
            "proj-1",
        ),
        (
            "aiplatform.googleapis.com",
            "/v1beta1/projects/p2/locations/global/publishers/google/models/gemini-2.5-flash:countTokens",
            "count_tokens",
            "gemini-2.5-flash",
            "google",
            "global",
            "p2",
        ),
        (
            "aiplatform.googleapis.com",
            "/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent",
            "generate_content",
            "gemini-2.5-flash",
            "google",
            None,
            None,
        ),
        (
            "europe-west4-aiplatform.googleapis.com",
            "/v1/projects/p3/locations/europe-west4/endpoints/openapi/chat/completions",
            "chat",
            None,
            None,
            "europe-west4",
            "p3",
        ),
        (
            "aiplatform.eu.rep.googleapis.com",
            "/v1/projects/p4/locations/eu/publishers/google/models/gemini-2.5-flash:generateContent",
            "generate_content",
            "gemini-2.5-flash",
            "google",
            "eu",
            "p4",
        ),
    ],
)
def test_routes(
    host: str,
    path: str,
    api: str,
    model: str | None,
    family: str | None,
    region: str | None,
    project: str | None,
) -> None:
    found = route_for(host, 443, path)
    assert found is not None
    assert (found.provider, found.wire, found.api) == ("vertex", "vertex", api)
    assert (found.model_from_path, found.model_family) == (model, family)
    assert (found.region, found.cloud_project) == (region, project)
    assert found.zero_cost == (api == "count_tokens")


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE}/google/models/veo-3:predictLongRunning",
        f"{BASE}/meta/models/llama-4:rawPredict",  # a body shape we do not read
        "/v1/projects/p/locations/l/endpoints/1234:predict",
        "/v1/projects/p/locations/l/datasets",
    ],
)
def test_not_metered(path: str) -> None:
    assert route_for("us-east5-aiplatform.googleapis.com", 443, path) is None


def claude_route(method: str = "rawPredict") -> Route:
    found = route_for(
        "us-east5-aiplatform.googleapis.com", 443, f"{BASE}/anthropic/models/{CLAUDE}:{method}"
    )
    assert found is not None
    return found


USAGE = {
    "input_tokens": 12,
    "cache_read_input_tokens": 5,
    "cache_creation_input_tokens": 3,
    "output_tokens": 9,
}


def test_claude_request_and_body() -> None:
    info = parse_request(
        claude_route("streamRawPredict"), b'{"stream":true,"anthropic_version":"vertex-2023-10-16"}'
    )
    assert (info.model, info.stream) == (CLAUDE, True)
    body = {
        "id": "msg_vrtx_1",
        "type": "message",
        "model": "claude-sonnet-4-5-20250929",
        "usage": USAGE,
    }
    result = parse_response(claude_route(), json.dumps(body).encode(), 200)
    assert result.usage == Usage(
        input_tokens=12, cache_read_tokens=5, cache_write_tokens=3, output_tokens=9
    )
    assert result.model == CLAUDE and result.tokens_complete


def test_claude_stream_names_the_path_model() -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "m",
            "model": "claude-sonnet-4-5-20250929",
            "usage": {**USAGE, "output_tokens": 1},
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 9},
    }
    data = (
        f"event: message_start\ndata: {json.dumps(start)}\n\n"
        f"event: message_delta\ndata: {json.dumps(delta)}\n\n"
    ).encode()
    result = feed(claude_route("streamRawPredict"), [data], SSE)
    assert result.model == CLAUDE and result.tokens_complete
    assert result.usage.output_tokens == 9 and result.usage.input_tokens == 12


def test_the_openai_endpoint_reads_gemini_usage_by_googles_rules() -> None:
    found = route_for(
        "us-central1-aiplatform.googleapis.com",
        443,
        "/v1/projects/p/locations/us-central1/endpoints/openapi/chat/completions",
    )
    assert found is not None
    info = parse_request(found, b'{"model":"google/gemini-2.5-flash","messages":[]}')
    assert info.model == "google/gemini-2.5-flash"
    # Thinking is outside completion_tokens: the gap to total_tokens is billed as output.
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 150}
    body = {"id": "c1", "model": "google/gemini-2.5-flash", "choices": [], "usage": usage}
    result = parse_response(found, json.dumps(body).encode(), 200)
    assert result.usage.output_tokens == 50 and result.usage.reasoning_tokens == 30
    assert result.usage.input_tokens == 100 and result.tokens_complete
