"""The price catalogue's providers as host families: every provider genai-prices lists with an
API host is routed, so a provider the catalogue adds is metered after an upgrade.

A provider is routed when the catalogue gives it (1) a pattern naming a host only (an API whose
pattern also names a path, such as Cloudflare's `api.cloudflare.com/client/v4/accounts/…/ai`,
shares its host with other APIs, so decrypting the host is not ours to decide), and (2) a usage
extractor for a wire format we parse: OpenAI's Chat, Responses or Embeddings, or Anthropic's
Messages. Their paths are matched by suffix (the catalogue does not say the base path). Providers
the built-in table already routes (`PROVIDER_IDS`) are skipped. Any other host is tunnelled.

Computed once at the daemon's start; the edge learns the hosts from the daemon's claimed-hosts
file and never imports the catalogue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from genai_prices.data import providers as _PROVIDERS
from genai_prices.types import Provider

from ..providers.base import HostFamily
from .catalogue import PROVIDER_IDS

# The catalogue's api flavours we can read, and the wire formats each asks for.
_FLAVOUR_WIRES = {
    "chat": ("openai-chat", "openai-completions"),
    "responses": ("openai-responses",),
    "embeddings": ("openai-embeddings",),
    "anthropic": ("anthropic-messages",),
}
_SCHEME = re.compile(r"^(?:\(https\?://\)\?|https://|https\?://)")
_END = re.compile(r"(?:\(\?:/\|\$\)|\(/\|\$\)|/)$")
_HOST_CHARS = re.compile(r"^[A-Za-z0-9\\.\-()?:|\[\]+*^]+$")


def host_pattern(api_pattern: str) -> str | None:
    """A catalogue URL pattern as an anchored host regex, or None when it names more than a
    host. genai-prices matches its patterns as URL prefixes, so one ending in a dot
    (`api\\.moonshot\\.`) stands for one more label there (`.ai`, `.cn`)."""
    host = _END.sub("", _SCHEME.sub("", api_pattern, count=1), count=1)
    host = host.replace("[^/]+", "[a-z0-9-]+")  # one label of a host (`*.modal.run`)
    if "/" in host or not host or not _HOST_CHARS.match(host):
        return None
    if host.endswith("\\."):
        host += r"[a-z0-9-]+"
    try:
        re.compile(host)
    except re.error:
        return None
    return host


def _wires(provider: Provider) -> tuple[str, ...]:
    flavours = [extractor.api_flavor for extractor in provider.extractors or ()]
    return tuple(dict.fromkeys(w for f in flavours for w in _FLAVOUR_WIRES.get(f, ())))


def families_of(providers: Iterable[Provider]) -> tuple[HostFamily, ...]:
    """The host families of a catalogue's provider list, in its order."""
    providers = list(providers)
    built_in = set(PROVIDER_IDS.values())
    # A pattern the built-in table's providers use (OpenAI's, shared by `openai-decisions`).
    seen = {
        pattern
        for provider in providers
        if provider.id in built_in
        and provider.api_pattern
        and (pattern := host_pattern(provider.api_pattern)) is not None
    }
    out: list[HostFamily] = []
    for provider in providers:
        pattern = host_pattern(provider.api_pattern) if provider.api_pattern else None
        wires = _wires(provider)
        if provider.id in built_in or pattern is None or not wires or pattern in seen:
            continue
        seen.add(pattern)
        out.append(HostFamily(pattern, provider.id, wires))
    return tuple(out)


@lru_cache(maxsize=1)
def catalogue_families() -> tuple[HostFamily, ...]:
    """The installed catalogue's host families."""
    return families_of(_PROVIDERS)
