"""Azure OpenAI and Azure AI Foundry, on `<resource>.openai.azure.com`,
`<resource>.cognitiveservices.azure.com` and `<resource>.services.ai.azure.com`, with no
per-resource configuration:

    /openai/deployments/{deployment}/chat/completions|completions|embeddings|responses
        ?api-version=…                        (the deployment API)
    /openai/responses?api-version=…          (Responses: the deployment is the body's model)
    /openai/v1/chat/completions|completions|responses|embeddings   (the v1 API)
    /models/chat/completions|embeddings?api-version=…             (Foundry model inference)
    /anthropic/v1/messages                    (Claude in Foundry)

The bodies are OpenAI's (openai.py) and Anthropic's (anthropic.py). A deployment name is not a
model: the row's model is the response's (`gpt-4o-2024-11-20`), which is what prices it.
Azure streams report usage only when asked, and only api-versions from 2024-09-01(-preview)
on (and the v1 API) accept `stream_options`: older ones answer 400, so they are never asked.
"""

from __future__ import annotations

import re

from . import anthropic, openai
from .base import CallResult, RequestInfo, Route, StreamParser
from .wireformat import WireFormat

_OPENAI_WIRES: dict[str, WireFormat] = {
    "chat/completions": openai.CHAT,
    "completions": openai.COMPLETIONS,
    "responses": openai.RESPONSES,
    "embeddings": openai.EMBEDDINGS,
}
_OPERATION = r"(chat/completions|completions|responses|embeddings)"
_PATHS: tuple[tuple[re.Pattern[str], str | None], ...] = (
    (re.compile(r"/openai/deployments/[^/]+/" + _OPERATION), "openai"),
    (re.compile(r"/openai/(responses)"), "openai"),
    (re.compile(r"/openai/v1/" + _OPERATION), "openai"),
    (re.compile(r"/models/(chat/completions|embeddings)"), None),
)
_ANTHROPIC = "/anthropic/v1/messages"
# `stream_options` is accepted from this api-version on (2024-09-01-preview, GA 2024-10-21).
_STREAM_OPTIONS_SINCE = "2024-09-01"
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")
_V1 = "v1"  # the api_version of a v1 API route, whatever its query says


def accepts_stream_options(route: Route) -> bool:
    """Whether the call's api-version accepts `stream_options` (the v1 API always does)."""
    version = route.api_version
    if version == _V1:
        return True
    return (
        version is not None
        and _DATED.match(version) is not None
        and (version[:10] >= _STREAM_OPTIONS_SINCE)
    )


class Azure(WireFormat):
    """Azure's paths for OpenAI's and Anthropic's bodies; each route's api picks the reader."""

    name = "azure"
    zero_cost_apis = frozenset({"count_tokens"})
    declarable = False  # a user endpoint names the body's own wire format instead

    def match_path(self, provider: str, path: str, *, anchored: bool) -> Route | None:
        if not anchored:
            return None
        if path in (_ANTHROPIC, _ANTHROPIC + "/count_tokens"):
            api = "messages" if path == _ANTHROPIC else "count_tokens"
            zero_cost = api in self.zero_cost_apis
            return Route(provider, self.name, api, zero_cost=zero_cost, model_family="anthropic")
        for regex, family in _PATHS:
            found = regex.fullmatch(path)
            if found is not None:
                rule = _OPENAI_WIRES[found[1]].paths[0]
                version = _V1 if path.startswith("/openai/v1/") else None
                return Route(
                    provider, self.name, rule.api, model_family=family, api_version=version
                )
        return None

    @staticmethod
    def _reader(route: Route) -> WireFormat:
        if route.model_family == "anthropic":
            return anthropic.MESSAGES
        for wire in _OPENAI_WIRES.values():
            if wire.paths[0].api == route.api:
                return wire
        return openai.CHAT

    def wants_stream_usage(self, route: Route) -> bool:
        return self._reader(route).asks_stream_usage and accepts_stream_options(route)

    def is_streaming(self, route: Route, content_type: str | None) -> bool:
        return self._reader(route).is_streaming(route, content_type)

    def stream_parser(self, route: Route, content_type: str | None) -> StreamParser:
        return self._reader(route).stream_parser(route, content_type)

    def parse_request(self, route: Route, body: bytes) -> RequestInfo:
        return self._reader(route).parse_request(route, body)

    def parse_response(self, route: Route, body: bytes, http_status: int) -> CallResult:
        return self._reader(route).parse_response(route, body, http_status)


AZURE = Azure()
