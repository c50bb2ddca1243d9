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

from . import anthropic, gemini, openai
from .base import Endpoint, Route
from .registry import WIRES
from .selftest import SELF_TEST_API, SELF_TEST_HOST
from .wireformat import PathRule, WireFormat

__all__ = [
    "GATED_HOSTS",
    "SELF_TEST_API",
    "SELF_TEST_HOST",
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
}
# Hosts decrypted only for the client processes the configuration names; the daemon tunnels
# every other process's connections to them untouched (capture/addon.py, `tls_clienthello`).
GATED_HOSTS: frozenset[str] = frozenset({"chatgpt.com"})
_BUILTIN_PORT = 443

# Fixed paths, looked up whole: host -> {base + path: route}.
_EXACT: dict[str, dict[str, Route]] = {
    host: {
        base + rule.path: wire.route(provider, rule)
        for base, wires in bases
        for wire in wires
        for rule in wire.paths
    }
    for host, (provider, bases) in _HOSTS.items()
}
# Paths with a variable part, per host: (base, wire format) to ask in turn.
_PATTERNED: dict[str, tuple[tuple[str, WireFormat], ...]] = {
    host: tuple(
        (base, wire)
        for base, wires in bases
        for wire in wires
        if type(wire).match_path is not WireFormat.match_path
    )
    for host, (_, bases) in _HOSTS.items()
}

# Every fixed path of every wire format, longest first, so a user endpoint's path is taken by
# the most specific one: /messages/count_tokens beats /messages, and a /chat/completions path is
# never taken for legacy /completions.
_BY_SUFFIX: tuple[tuple[PathRule, WireFormat], ...] = tuple(
    sorted(
        ((rule, wire) for wire in WIRES.values() for rule in wire.paths),
        key=lambda pair: -len(pair[0].path),
    )
)


def _clean_path(path: str) -> str:
    """Drop query and fragment, decode escapes, collapse doubled and trailing slashes."""
    path = unquote(path.split("?", 1)[0].split("#", 1)[0])
    path = re.sub(r"/{2,}", "/", path)
    return path.rstrip("/") or "/"


def _endpoint_route(endpoint: Endpoint, path: str) -> Route | None:
    """A user endpoint accepts any path that ends like its wire format's own path."""
    wire = WIRES.get(endpoint.wire)
    if wire is None:
        return None
    route = wire.match_path(endpoint.provider, path, anchored=False)
    if route is None:
        for rule, owner in _BY_SUFFIX:
            if path.endswith(rule.path):
                route = wire.route(endpoint.provider, rule) if owner is wire else None
                break
    return dataclasses.replace(route, user_declared=True) if route is not None else None


def route_for(host: str, port: int, path: str, endpoints: Sequence[Endpoint] = ()) -> Route | None:
    """The route for a request, or ``None`` when it is not an LLM call we meter."""
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
    for base, wire in _PATTERNED[host]:
        if clean.startswith(base):
            route = wire.match_path(provider, clean[len(base) :], anchored=True)
            if route is not None:
                return route
    return None


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
    endpoints: Sequence[Endpoint] = (), *, gated: bool = True
) -> list[tuple[str, int]]:
    """Every (host, port) whose TLS the proxy may decrypt: built-in hosts on 443 (the gated
    ones only when ``gated``: some client may use them), the self-test host, then endpoints."""
    claimed = [(host, _BUILTIN_PORT) for host in _HOSTS if gated or host not in GATED_HOSTS]
    claimed.append((SELF_TEST_HOST, _BUILTIN_PORT))
    for endpoint in endpoints:
        pair = (endpoint.host.lower().rstrip("."), endpoint.port)
        if pair not in claimed:
            claimed.append(pair)
    return claimed
