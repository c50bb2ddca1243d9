"""The routing table: which (host, port, path) is an LLM call, and which wire format reads it.

Each built-in host names its provider and, per base path, the wire formats it serves there
(wire format objects from the registry's modules). Routing looks at host and path only, so the
proxy can decide before reading any body. A path that is not listed (model lists, file
uploads, batch control) is forwarded but not metered.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from urllib.parse import unquote

from . import anthropic, azure, bedrock, gemini, openai, vertex
from .base import Endpoint, HostFamily, Route
from .claimed import ClaimedHosts
from .registry import WIRES
from .selftest import SELF_TEST_API, SELF_TEST_HOST
from .wireformat import PathRule, WireFormat

__all__ = [
    "GATED_HOSTS",
    "SELF_TEST_API",
    "SELF_TEST_HOST",
    "ClaimedHosts",
    "claimed_hosts",
    "route_for",
    "socket_route_for",
]

_OPENAI = openai.FAMILY
_ANTHROPIC = (anthropic.MESSAGES,)
_Bases = tuple[tuple[str, tuple[WireFormat, ...]], ...]

# host -> (provider, ((base path, wire formats served below it), …))
_HOSTS: dict[str, tuple[str, _Bases]] = {
    "api.anthropic.com": ("anthropic", (("/v1", _ANTHROPIC),)),
    "api.openai.com": ("openai", (("/v1", _OPENAI),)),
    "generativelanguage.googleapis.com": (
        "google",
        (("/v1beta/openai", _OPENAI), ("", (gemini.GEMINI,))),
    ),
    "cloudcode-pa.googleapis.com": ("google", (("", (gemini.CODE_ASSIST,)),)),
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
    # Codex CLI logged in with ChatGPT. Claimed only for the processes `[chatgpt] clients`
    # names (GATED_HOSTS): everyone else's chatgpt.com traffic is tunnelled, never decrypted.
    "chatgpt.com": ("openai", (("/backend-api/codex", (openai.CHATGPT_CODEX,)),)),
    "aiplatform.googleapis.com": ("vertex", (("", (vertex.VERTEX,)),)),
}
# Hosts decrypted only for the client processes the configuration names; the daemon tunnels
# every other process's connections to them untouched (capture/addon.py, `tls_clienthello`).
GATED_HOSTS: frozenset[str] = frozenset({"chatgpt.com"})
_BUILTIN_PORT = 443

# Host families named by pattern, for clouds whose host names carry a region or a customer's
# resource: (regex over the whole host name, provider, bases). A named group `region` becomes
# the route's region. Tried only for a host the exact table does not name, on port 443.
_BEDROCK: _Bases = (("", (bedrock.BEDROCK,)), ("/openai/v1", _OPENAI))
_VERTEX: _Bases = (("", (vertex.VERTEX,)),)
_AZURE: _Bases = (("", (azure.AZURE,)),)
_HOST_PATTERNS: tuple[tuple[str, str, _Bases], ...] = (
    (r"[a-z0-9][a-z0-9-]*\.openai\.azure\.com", "azure", _AZURE),
    (r"[a-z0-9][a-z0-9-]*\.cognitiveservices\.azure\.com", "azure", _AZURE),
    (r"[a-z0-9][a-z0-9-]*\.services\.ai\.azure\.com", "azure", _AZURE),
    (r"(?P<region>[a-z0-9-]+)-aiplatform\.googleapis\.com", "vertex", _VERTEX),
    (r"aiplatform\.(?P<region>us|eu)\.rep\.googleapis\.com", "vertex", _VERTEX),
    (r"bedrock-runtime(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com", "bedrock", _BEDROCK),
    (r"bedrock-runtime(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com\.cn", "bedrock", _BEDROCK),
)


class _HostRoutes:
    """What one host (or host family) serves: fixed paths looked up whole, then the wire
    formats whose paths have a variable part, asked in turn below their base."""

    __slots__ = ("exact", "patterned", "provider")

    def __init__(self, provider: str, bases: _Bases) -> None:
        self.provider = provider
        self.exact: dict[str, Route] = {
            base + rule.path: wire.route(provider, rule)
            for base, wires in bases
            for wire in wires
            for rule in wire.paths
        }
        self.patterned: tuple[tuple[str, WireFormat], ...] = tuple(
            (base, wire)
            for base, wires in bases
            for wire in wires
            if type(wire).match_path is not WireFormat.match_path
        )

    def route(self, clean: str) -> Route | None:
        route = self.exact.get(clean)
        if route is not None:
            return route
        for base, wire in self.patterned:
            if clean.startswith(base):
                route = wire.match_path(self.provider, clean[len(base) :], anchored=True)
                if route is not None:
                    return route
        return None


_EXACT: dict[str, _HostRoutes] = {
    host: _HostRoutes(provider, bases) for host, (provider, bases) in _HOSTS.items()
}
_FAMILIES: tuple[tuple[re.Pattern[str], _HostRoutes], ...] = tuple(
    (re.compile(regex), _HostRoutes(provider, bases)) for regex, provider, bases in _HOST_PATTERNS
)

# Every fixed path of every wire format, longest first, so a user endpoint's path is taken by
# the most specific one: /messages/count_tokens beats /messages, and a /chat/completions path is
# never taken for legacy /completions.
_BY_SUFFIX: tuple[tuple[PathRule, WireFormat], ...] = tuple(
    sorted(
        ((rule, wire) for wire in WIRES.values() for rule in wire.paths),
        key=lambda pair: -len(pair[0].path),
    )
)


_API_VERSION = re.compile(r"[?&]api-version=([^&#]*)")


def _clean_path(path: str) -> str:
    """Drop query and fragment, decode escapes, collapse doubled and trailing slashes."""
    path = unquote(path.split("?", 1)[0].split("#", 1)[0])
    path = re.sub(r"/{2,}", "/", path)
    return path.rstrip("/") or "/"


def _suffix_route(wire_name: str, provider: str, path: str) -> Route | None:
    """Any path that ends like the wire format's own path (a user endpoint, a catalogue host)."""
    wire = WIRES.get(wire_name)
    if wire is None:
        return None
    route = wire.match_path(provider, path, anchored=False)
    if route is None:
        for rule, owner in _BY_SUFFIX:
            if path.endswith(rule.path):
                route = wire.route(provider, rule) if owner is wire else None
                break
    return route


def _endpoint_route(endpoint: Endpoint, path: str) -> Route | None:
    route = _suffix_route(endpoint.wire, endpoint.provider, path)
    return dataclasses.replace(route, user_declared=True) if route is not None else None


def _family_route(host: str, path: str, families: Sequence[HostFamily]) -> Route | None:
    for family in families:
        if re.fullmatch(family.pattern, host) is not None:
            for wire in family.wires:
                route = _suffix_route(wire, family.provider, path)
                if route is not None:
                    return route
            return None
    return None


def route_for(
    host: str,
    port: int,
    path: str,
    endpoints: Sequence[Endpoint] = (),
    families: Sequence[HostFamily] = (),
) -> Route | None:
    """The route for a request, or ``None`` when it is not an LLM call we meter. The user's
    endpoints come first, then the built-in table, then ``families`` (from the catalogue)."""
    host = host.lower().rstrip(".")
    clean = _clean_path(path)
    for endpoint in endpoints:  # the user's declarations win over the built-in table
        if endpoint.host.lower().rstrip(".") == host and endpoint.port == port:
            route = _endpoint_route(endpoint, clean)
            if route is not None:
                return route
    if port != _BUILTIN_PORT:
        return None
    known = _EXACT.get(host)
    if known is not None:
        route = known.route(clean)
    else:
        route = None
        for regex, family in _FAMILIES:
            found = regex.fullmatch(host)
            if found is not None:
                route = family.route(clean)
                region = found.groupdict().get("region")
                if route is not None and region and route.region is None:
                    route = dataclasses.replace(route, region=region)
                break
        else:  # no built-in host family either: a host the catalogue knows?
            route = _family_route(host, clean, families) if families else None
    if route is not None and route.api_version is None and "api-version=" in path:
        version = _API_VERSION.search(path)
        if version is not None:
            route = dataclasses.replace(route, api_version=unquote(version[1]))
    return route


def socket_route_for(
    host: str, port: int, path: str, endpoints: Sequence[Endpoint] = ()
) -> Route | None:
    """The route for a WebSocket upgrade (`GET` with `Upgrade: websocket`), or ``None`` when
    no wire format meters a WebSocket at that path (Realtime, Gemini Live: not metered yet)."""
    route = route_for(host, port, path, endpoints)
    if route is None or not WIRES[route.wire].websocket:
        return None
    return route


def claimed_hosts(
    endpoints: Sequence[Endpoint] = (),
    families: Sequence[HostFamily] = (),
    *,
    gated: bool = True,
) -> ClaimedHosts:
    """Every host whose TLS the proxy may decrypt: built-in hosts and host families on 443 (the
    gated ones only when ``gated``: some client may use them), the self-test host, endpoints,
    then the given (catalogue) families on 443."""
    exact = [(host, _BUILTIN_PORT) for host in _HOSTS if gated or host not in GATED_HOSTS]
    exact.append((SELF_TEST_HOST, _BUILTIN_PORT))
    exact += [(endpoint.host.lower().rstrip("."), endpoint.port) for endpoint in endpoints]
    patterns = [(regex, _BUILTIN_PORT) for regex, _, _ in _HOST_PATTERNS]
    patterns += [(family.pattern, _BUILTIN_PORT) for family in families]
    return ClaimedHosts.of(exact, patterns)
