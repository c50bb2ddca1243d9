"""Google Vertex AI: Gemini, Claude and the OpenAI-compatible endpoint, on
`aiplatform.googleapis.com` and `<region>-aiplatform.googleapis.com`.

Every call names its project and location in the path, and the model for the publishers'
models:

    /{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent
        (also :streamGenerateContent with and without alt=sse, :countTokens)
    /{v}/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict
        (also :streamRawPredict; `count-tokens:rawPredict` counts tokens)
    /{v}/projects/{p}/locations/{l}/endpoints/openapi/chat/completions
    /{v}/publishers/google/models/{m}:generateContent        (express mode, an API key)

The bodies are the publisher's own: Gemini's (gemini.py), Anthropic's Messages without `model`
(anthropic.py), OpenAI Chat (openai.py). One wire format reads all three, choosing by the
route's family; project and location become the row's cloud facts, never its attribution.
"""

from __future__ import annotations

import dataclasses
import re

from . import anthropic, gemini, openai
from .base import CallResult, RequestInfo, Route, StreamParser
from .wireformat import WireFormat

_PREFIX = r"/(?:v1[a-z0-9]*)(?:/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+))?"
_PUBLISHED = re.compile(
    _PREFIX
    + r"/publishers/(?P<publisher>google|anthropic)/models/(?P<model>[^/:]+):(?P<method>\w+)"
)
_OPENAPI = re.compile(_PREFIX + r"/endpoints/openapi/chat/completions")
_ANTHROPIC_METHODS = {"rawPredict": "messages", "streamRawPredict": "messages"}
_CHAT = "chat"


class Vertex(WireFormat):
    """Vertex AI's three body shapes behind one path scheme; each route's family picks the
    reader (`google`: Gemini, `anthropic`: Messages, none: OpenAI Chat)."""

    name = "vertex"
    zero_cost_apis = frozenset({"count_tokens"})
    declarable = False  # a user endpoint names the body's own wire format instead

    def match_path(self, provider: str, path: str, *, anchored: bool) -> Route | None:
        if not anchored:
            return None
        found = _PUBLISHED.fullmatch(path)
        if found is not None:
            publisher, model, method = found["publisher"], found["model"], found["method"]
            if publisher == "google":
                api = gemini.METHODS.get(method)
            elif model == "count-tokens" and method == "rawPredict":
                api, model = "count_tokens", None
            else:
                api = _ANTHROPIC_METHODS.get(method)
            if api is None:
                return None
            return Route(
                provider,
                self.name,
                api,
                model_from_path=model,
                zero_cost=api in self.zero_cost_apis,
                region=found["location"],
                cloud_project=found["project"],
                model_family=publisher,
            )
        found = _OPENAPI.fullmatch(path)
        if found is not None:
            return Route(
                provider,
                self.name,
                _CHAT,
                region=found["location"],
                cloud_project=found["project"],
            )
        return None

    @staticmethod
    def _reader(route: Route) -> tuple[WireFormat, Route]:
        """The publisher's wire format, and the route as it expects it (Gemini's OpenAI-style
        usage rules are keyed by the provider name `google`)."""
        if route.model_family == "google":
            return gemini.GEMINI, route
        if route.model_family == "anthropic":
            return anthropic.MESSAGES, route
        return openai.CHAT, dataclasses.replace(route, provider="google")

    def is_streaming(self, route: Route, content_type: str | None) -> bool:
        wire, inner = self._reader(route)
        return wire.is_streaming(inner, content_type)

    def stream_parser(self, route: Route, content_type: str | None) -> StreamParser:
        wire, inner = self._reader(route)
        parser = wire.stream_parser(inner, content_type)
        if route.model_family == "anthropic" and route.model_from_path:
            return _PathModel(parser, route.model_from_path)
        return parser

    def parse_request(self, route: Route, body: bytes) -> RequestInfo:
        wire, inner = self._reader(route)
        if wire is gemini.GEMINI:
            return wire.parse_request(inner, body)
        info = wire.parse_request(inner, body)
        if route.model_from_path is not None:
            info.model = route.model_from_path  # Claude's body has no model
        return info

    def parse_response(self, route: Route, body: bytes, http_status: int) -> CallResult:
        wire, inner = self._reader(route)
        result = wire.parse_response(inner, body, http_status)
        if route.model_family == "anthropic" and route.model_from_path:
            result.model = route.model_from_path  # what is billed: the path's model
        return result


class _PathModel:
    """A stream parser whose result names the path's model (what is billed)."""

    __slots__ = ("_model", "_parser")

    def __init__(self, parser: StreamParser, model: str) -> None:
        self._parser, self._model = parser, model

    def feed(self, data: bytes) -> None:
        self._parser.feed(data)

    def result(self) -> CallResult:
        result = self._parser.result()
        result.model = self._model
        return result


VERTEX = Vertex()
