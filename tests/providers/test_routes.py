"""The routing table: built-in hosts, user endpoints, and what is not metered."""

from __future__ import annotations

import re

import pytest

from halton_meter.providers import ClaimedHosts, Endpoint, Route, claimed_hosts, route_for


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("api.anthropic.com", "/v1/messages", ("anthropic", "anthropic-messages", "messages")),
        (
            "API.Anthropic.com",
            "/v1/messages?beta=true",
            ("anthropic", "anthropic-messages", "messages"),
        ),
        (
            "api.anthropic.com",
            "/v1/messages/count_tokens",
            ("anthropic", "anthropic-messages", "count_tokens"),
        ),
        ("api.openai.com", "/v1/chat/completions", ("openai", "openai-chat", "chat")),
        ("api.openai.com", "/v1/completions", ("openai", "openai-completions", "completions")),
        ("api.openai.com", "/v1/responses", ("openai", "openai-responses", "responses")),
        ("api.openai.com", "/v1/embeddings", ("openai", "openai-embeddings", "embeddings")),
        (
            "chatgpt.com",
            "/backend-api/codex/responses",
            ("openai", "chatgpt-codex", "responses"),
        ),
        (
            "chatgpt.com",
            "/backend-api/codex/responses/compact",
            ("openai", "chatgpt-codex", "responses_compact"),
        ),
        ("api.x.ai", "/v1/chat/completions", ("xai", "openai-chat", "chat")),
        ("api.x.ai", "/v1/responses", ("xai", "openai-responses", "responses")),
        ("api.x.ai", "/v1/messages", ("xai", "anthropic-messages", "messages")),
        ("api.groq.com", "/openai/v1/chat/completions", ("groq", "openai-chat", "chat")),
        ("api.mistral.ai", "/v1/chat/completions", ("mistral", "openai-chat", "chat")),
        ("api.mistral.ai", "/v1/embeddings", ("mistral", "openai-embeddings", "embeddings")),
        ("api.deepseek.com", "/chat/completions", ("deepseek", "openai-chat", "chat")),
        ("api.deepseek.com", "/v1/chat/completions", ("deepseek", "openai-chat", "chat")),
        (
            "api.deepseek.com",
            "/anthropic/v1/messages",
            ("deepseek", "anthropic-messages", "messages"),
        ),
        ("openrouter.ai", "/api/v1/chat/completions", ("openrouter", "openai-chat", "chat")),
        (
            "openrouter.ai",
            "/api/v1/completions",
            ("openrouter", "openai-completions", "completions"),
        ),
        ("openrouter.ai", "/api/v1/responses", ("openrouter", "openai-responses", "responses")),
        ("openrouter.ai", "/api/v1/messages", ("openrouter", "anthropic-messages", "messages")),
        ("api.together.xyz", "/v1/chat/completions", ("together", "openai-chat", "chat")),
        (
            "api.fireworks.ai",
            "/inference/v1/chat/completions",
            ("fireworks", "openai-chat", "chat"),
        ),
        ("api.cerebras.ai", "/v1/chat/completions", ("cerebras", "openai-chat", "chat")),
        ("api.perplexity.ai", "/chat/completions", ("perplexity", "openai-chat", "chat")),
        ("api.perplexity.ai", "/v1/chat/completions", ("perplexity", "openai-chat", "chat")),
        (
            "generativelanguage.googleapis.com",
            "/v1beta/openai/chat/completions",
            ("google", "openai-chat", "chat"),
        ),
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            ("google", "gemini", "generate_content"),
        ),
        (
            "generativelanguage.googleapis.com",
            "/v1alpha/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=AIza",
            ("google", "gemini", "stream_generate_content"),
        ),
        (
            "cloudcode-pa.googleapis.com",
            "/v1internal:streamGenerateContent?alt=sse",
            ("google", "gemini-code-assist", "stream_generate_content"),
        ),
    ],
)
def test_builtin_routes(host: str, path: str, expected: tuple[str, str, str]) -> None:
    route = route_for(host.lower(), 443, path)
    assert route is not None
    assert (route.provider, route.wire, route.api) == expected
    assert route.zero_cost == (route.api == "count_tokens")


def test_gemini_model_from_path() -> None:
    route = route_for(
        "generativelanguage.googleapis.com", 443, "/v1/models/gemini-2.0-flash-001:countTokens"
    )
    assert route == Route("google", "gemini", "count_tokens", "gemini-2.0-flash-001", True)


@pytest.mark.parametrize(
    ("host", "port", "path"),
    [
        ("api.openai.com", 443, "/v1/models"),
        ("api.openai.com", 443, "/v1/files"),
        ("api.openai.com", 443, "/v1/responses/resp_123"),
        ("api.openai.com", 8443, "/v1/chat/completions"),  # built-ins are on 443 only
        ("api.anthropic.com", 443, "/v1/models"),
        ("generativelanguage.googleapis.com", 443, "/v1beta/models"),
        ("generativelanguage.googleapis.com", 443, "/v1beta/models/gemini-2.5-pro"),
        ("generativelanguage.googleapis.com", 443, "/v1beta/models/veo-3:predictLongRunning"),
        ("cloudcode-pa.googleapis.com", 443, "/v1internal:loadCodeAssist"),
        ("example.com", 443, "/v1/chat/completions"),
    ],
)
def test_not_metered(host: str, port: int, path: str) -> None:
    assert route_for(host, port, path) is None


ENDPOINTS = (
    Endpoint("localhost", 4000, "openai-chat", "litellm"),
    Endpoint("gateway.internal", 8443, "anthropic-messages", "corp-gateway"),
    Endpoint("gateway.internal", 8443, "openai-completions", "corp-gateway"),
    Endpoint("vertex-proxy.internal", 443, "gemini", "vertex-proxy"),
    Endpoint("api.openai.com", 443, "openai-chat", "my-openai-proxy"),
)


def test_user_endpoints_match_by_path_suffix() -> None:
    assert route_for("localhost", 4000, "/v1/chat/completions", ENDPOINTS) == Route(
        "litellm", "openai-chat", "chat", user_declared=True
    )
    assert route_for("localhost", 4000, "/openai/deployments/x/chat/completions?v=1", ENDPOINTS)
    assert route_for("localhost", 4000, "/v1/embeddings", ENDPOINTS) is None  # another wire
    assert route_for("localhost", 4001, "/v1/chat/completions", ENDPOINTS) is None
    gateway = route_for("gateway.internal", 8443, "/anthropic/v1/messages", ENDPOINTS)
    assert gateway == Route("corp-gateway", "anthropic-messages", "messages", user_declared=True)
    counting = route_for("gateway.internal", 8443, "/anthropic/v1/messages/count_tokens", ENDPOINTS)
    assert counting == Route(
        "corp-gateway", "anthropic-messages", "count_tokens", zero_cost=True, user_declared=True
    )
    legacy = route_for("gateway.internal", 8443, "/v1/completions", ENDPOINTS)
    assert legacy == Route("corp-gateway", "openai-completions", "completions", user_declared=True)
    # /chat/completions also ends in /completions, but it is not the legacy API.
    assert route_for("gateway.internal", 8443, "/v1/chat/completions", ENDPOINTS) is None
    vertex = route_for(
        "vertex-proxy.internal",
        443,
        "/v1/projects/p/locations/us/publishers/google/models/gemini-2.5-pro:streamGenerateContent",
        ENDPOINTS,
    )
    assert vertex == Route(
        "vertex-proxy", "gemini", "stream_generate_content", "gemini-2.5-pro", user_declared=True
    )


def test_user_endpoints_take_precedence_over_builtins() -> None:
    chat = route_for("api.openai.com", 443, "/v1/chat/completions", ENDPOINTS)
    assert chat == Route("my-openai-proxy", "openai-chat", "chat", user_declared=True)
    responses = route_for("api.openai.com", 443, "/v1/responses", ENDPOINTS)
    assert responses == Route("openai", "openai-responses", "responses")  # not declared: built-in


def test_claimed_hosts() -> None:
    claimed = claimed_hosts(ENDPOINTS)
    assert claimed.claims("api.anthropic.com", 443)
    assert claimed.claims("cloudcode-pa.googleapis.com", 443)
    assert claimed.claims("localhost", 4000) and claimed.claims("gateway.internal", 8443)
    assert claimed.claims("API.OpenAI.com.", 443)  # any case, a trailing dot
    assert not claimed.claims("api.openai.com", 8443)
    assert not claimed.claims("example.com", 443)
    assert claimed_hosts().claims("api.openai.com", 443)


def test_claimed_host_patterns_are_anchored_and_per_port() -> None:
    claimed = ClaimedHosts.of(
        [("api.openai.com", 443)],
        [
            (r"bedrock-runtime(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com", 443),
            (r"api\.moonshot\.(?:ai|cn)", 443),
        ],
    )
    assert claimed.claims("bedrock-runtime.us-east-1.amazonaws.com", 443)
    assert claimed.claims("bedrock-runtime-fips.us-east-1.amazonaws.com", 443)
    assert claimed.claims("api.moonshot.cn", 443)  # a pattern without a literal tail
    assert not claimed.claims("bedrock-runtime.us-east-1.amazonaws.com", 8443)
    assert not claimed.claims("s3.amazonaws.com", 443)
    assert not claimed.claims("bedrock-runtime.us-east-1.amazonaws.com.evil.net", 443)
    assert not claimed.claims("x.bedrock-runtime.us-east-1.amazonaws.com", 443)
    assert not claimed.claims("api.moonshot.cn.evil.net", 443)
    again = ClaimedHosts.from_json(claimed.to_json())
    assert again == claimed and again.claims("api.moonshot.ai", 443)
    patterns = claimed.mitmproxy_patterns()
    assert r"^api\.openai\.com:443$" in patterns
    assert any(re.fullmatch(p, "bedrock-runtime.eu-west-1.amazonaws.com:443") for p in patterns)
    assert not any(re.search(p, "s3.amazonaws.com:443") for p in patterns)


def test_a_damaged_claims_file_is_refused_whole() -> None:
    with pytest.raises(ValueError):
        ClaimedHosts.from_json('{"exact": [["a.example", 443]], "patterns": [["(", 443]]}')
    with pytest.raises(ValueError):
        ClaimedHosts.from_json("[]")


def test_the_builtin_host_families_are_claimed_together() -> None:
    claimed = claimed_hosts()
    for host in (
        "bedrock-runtime.us-east-1.amazonaws.com",
        "bedrock-runtime-fips.us-gov-west-1.amazonaws.com",
        "bedrock-runtime.cn-north-1.amazonaws.com.cn",
        "us-east5-aiplatform.googleapis.com",
        "aiplatform.googleapis.com",
        "aiplatform.eu.rep.googleapis.com",
    ):
        assert claimed.claims(host, 443), host
    for host in ("s3.amazonaws.com", "storage.googleapis.com", "bedrock.us-east-1.amazonaws.com"):
        assert not claimed.claims(host, 443), host
    assert all(re.compile(p) for p in claimed.mitmproxy_patterns())


@pytest.mark.parametrize(
    "path",
    ["/backend-api/wham/usage", "/backend-api/codex/models", "/backend-api/conversation", "/"],
)
def test_chatgpt_backend_meters_only_codex_model_paths(path: str) -> None:
    assert route_for("chatgpt.com", 443, path) is None


def test_websocket_routes_only_where_a_wire_format_reads_sockets() -> None:
    from halton_meter.providers import socket_route_for

    route = socket_route_for("api.openai.com", 443, "/v1/responses")
    assert route is not None and route.wire == "openai-responses"
    chatgpt = socket_route_for("chatgpt.com", 443, "/backend-api/codex/responses")
    assert chatgpt is not None and chatgpt.wire == "chatgpt-codex"
    # Realtime and Chat have no socket reader: relayed, not metered (docs say so).
    assert socket_route_for("api.openai.com", 443, "/v1/realtime?model=gpt-realtime") is None
    assert socket_route_for("api.openai.com", 443, "/v1/chat/completions") is None


def test_chatgpt_is_claimed_only_while_a_client_may_use_it() -> None:
    assert claimed_hosts().claims("chatgpt.com", 443)
    assert not claimed_hosts(gated=False).claims("chatgpt.com", 443)
    assert claimed_hosts(gated=False).claims("api.openai.com", 443)
