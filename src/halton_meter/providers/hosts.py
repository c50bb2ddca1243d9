"""The routing table: which (host, port, path) is an LLM call, and which adapter reads it.

Routing looks at host and path only, so the proxy can decide before reading any body. A path
that is not listed (model lists, file uploads, batch control) is forwarded but not metered.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from urllib.parse import unquote

from .base import Endpoint, Route

# (path below the base URL, wire, api, zero_cost)
_Rule = tuple[str, str, str, bool]

_ANTHROPIC: tuple[_Rule, ...] = (
    ("/messages", "anthropic-messages", "messages", False),
    ("/messages/count_tokens", "anthropic-messages", "count_tokens", True),
)
_OPENAI: tuple[_Rule, ...] = (
    ("/chat/completions", "openai-chat", "chat", False),
    ("/completions", "openai-completions", "completions", False),
    ("/responses", "openai-responses", "responses", False),
    ("/embeddings", "openai-embeddings", "embeddings", False),
)

# host -> (provider, ((base path, rules), …))
_HOSTS: dict[str, tuple[str, tuple[tuple[str, tuple[_Rule, ...]], ...]]] = {
    "api.anthropic.com": ("anthropic", (("/v1", _ANTHROPIC),)),
    "api.openai.com": ("openai", (("/v1", _OPENAI),)),
    "generativelanguage.googleapis.com": ("google", (("/v1beta/openai", _OPENAI),)),
    "cloudcode-pa.googleapis.com": ("google", ()),
    "api.x.ai": ("xai", (("/v1", _OPENAI + _ANTHROPIC),)),
    "api.groq.com": ("groq", (("/openai/v1", _OPENAI),)),
    "api.mistral.ai": ("mistral", (("/v1", _OPENAI),)),
    "api.deepseek.com": (
        "deepseek",
        (("", _OPENAI), ("/v1", _OPENAI), ("/anthropic/v1", _ANTHROPIC)),
    ),
    "openrouter.ai": ("openrouter", (("/api/v1", _OPENAI + _ANTHROPIC),)),
    "api.together.xyz": ("together", (("/v1", _OPENAI + _ANTHROPIC),)),
    "api.fireworks.ai": ("fireworks", (("/inference/v1", _OPENAI),)),
    "api.cerebras.ai": ("cerebras", (("/v1", _OPENAI),)),
    "api.perplexity.ai": ("perplexity", (("", _OPENAI), ("/v1", _OPENAI))),
}
_BUILTIN_PORT = 443

_EXACT: dict[str, dict[str, Route]] = {
    host: {
        base + path: Route(provider, wire, api, zero_cost=zero_cost)
        for base, rules in bases
        for path, wire, api, zero_cost in rules
    }
    for host, (provider, bases) in _HOSTS.items()
}

# Longest suffix first, so /messages/count_tokens beats /messages and a /chat/completions path
# is never taken for legacy /completions.
_BY_SUFFIX = sorted(_OPENAI + _ANTHROPIC, key=lambda rule: -len(rule[0]))

_GEMINI_METHODS = {
    "generateContent": "generate_content",
    "streamGenerateContent": "stream_generate_content",
    "embedContent": "embed_content",
    "batchEmbedContents": "batch_embed_contents",
    "countTokens": "count_tokens",
}
_GEMINI_PATH = re.compile(r"/(v1[a-z0-9]*)/models/([^/:]+):(\w+)")
_GEMINI_SUFFIX = re.compile(r"/models/([^/:]+):(\w+)$")
_CODE_ASSIST_PATH = re.compile(r"/v1internal:(generateContent|streamGenerateContent|countTokens)")
_CODE_ASSIST_SUFFIX = re.compile(r":(generateContent|streamGenerateContent|countTokens)$")


def _clean_path(path: str) -> str:
    """Drop query and fragment, decode escapes, collapse doubled and trailing slashes."""
    path = unquote(path.split("?", 1)[0].split("#", 1)[0])
    path = re.sub(r"/{2,}", "/", path)
    return path.rstrip("/") or "/"


def _gemini(provider: str, method: str, model: str | None, code_assist: bool) -> Route | None:
    api = _GEMINI_METHODS.get(method)
    if api is None:
        return None
    wire = "gemini-code-assist" if code_assist else "gemini"
    return Route(provider, wire, api, model_from_path=model, zero_cost=api == "count_tokens")


def _endpoint_route(endpoint: Endpoint, path: str) -> Route | None:
    """A user endpoint accepts any path that ends like its wire format's own path."""
    route = _endpoint_route_for_wire(endpoint, path)
    return dataclasses.replace(route, user_declared=True) if route is not None else None


def _endpoint_route_for_wire(endpoint: Endpoint, path: str) -> Route | None:
    wire, provider = endpoint.wire, endpoint.provider
    if wire == "gemini":
        match = _GEMINI_SUFFIX.search(path)
        return _gemini(provider, match[2], match[1], code_assist=False) if match else None
    if wire == "gemini-code-assist":
        match = _CODE_ASSIST_SUFFIX.search(path)
        return _gemini(provider, match[1], None, code_assist=True) if match else None
    for suffix, rule_wire, api, zero_cost in _BY_SUFFIX:
        if path.endswith(suffix):
            return Route(provider, wire, api, zero_cost=zero_cost) if rule_wire == wire else None
    return None


def route_for(host: str, port: int, path: str, endpoints: Sequence[Endpoint] = ()) -> Route | None:
    """The adapter for a request, or ``None`` when it is not an LLM call we meter."""
    host = host.lower().rstrip(".")
    clean = _clean_path(path)
    for endpoint in endpoints:  # the user's declarations win over the built-in table
        if endpoint.host.lower().rstrip(".") == host and endpoint.port == port:
            route = _endpoint_route(endpoint, clean)
            if route is not None:
                return route
    if port != _BUILTIN_PORT or host not in _EXACT:
        return None
    route = _EXACT[host].get(clean)
    if route is not None:
        return route
    provider = _HOSTS[host][0]
    if host == "generativelanguage.googleapis.com":
        match = _GEMINI_PATH.fullmatch(clean)
        return _gemini(provider, match[3], match[2], code_assist=False) if match else None
    if host == "cloudcode-pa.googleapis.com":
        match = _CODE_ASSIST_PATH.fullmatch(clean)
        return _gemini(provider, match[1], None, code_assist=True) if match else None
    return None


# The daemon answers this name itself (`halton-meter init`'s self-test): the edge hands it over
# like an LLM host, and `.invalid` never resolves, so it cannot be reached any other way.
SELF_TEST_HOST = "self-test.halton-meter.invalid"
SELF_TEST_API = "self-test"  # the `api` of its ledger rows (provider "halton-meter")


def claimed_hosts(endpoints: Sequence[Endpoint] = ()) -> list[tuple[str, int]]:
    """Every (host, port) whose TLS the proxy decrypts: built-in hosts on 443, the self-test
    host, then endpoints."""
    claimed = [(host, _BUILTIN_PORT) for host in _HOSTS]
    claimed.append((SELF_TEST_HOST, _BUILTIN_PORT))
    for endpoint in endpoints:
        pair = (endpoint.host.lower().rstrip("."), endpoint.port)
        if pair not in claimed:
            claimed.append(pair)
    return claimed
