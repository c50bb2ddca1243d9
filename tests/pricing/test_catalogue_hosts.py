"""Every OpenAI-compatible provider in the price catalogue is routed from the catalogue's own
provider list: a host-only pattern and a usage extractor we can read are enough."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from halton_meter.pricing.catalogue_hosts import catalogue_families, families_of, host_pattern
from halton_meter.providers import claimed_hosts, route_for


@dataclass
class Extractor:
    api_flavor: str


@dataclass
class FakeProvider:
    """A stand-in for `genai_prices.types.Provider` with only what routing reads."""

    id: str
    api_pattern: str
    extractors: list[Extractor] = field(default_factory=list)


def test_the_installed_catalogue_routes_its_openai_compatible_providers() -> None:
    routed = {family.provider for family in catalogue_families()}
    assert {"moonshotai", "zai", "minimax", "github-copilot", "baseten", "zhipuai"} <= routed
    # Built-in providers keep their own table; a pattern naming a path (a host shared with
    # other APIs) and providers without a readable extractor are never routed from here.
    assert routed.isdisjoint(
        {"openai", "openai-decisions", "anthropic", "google", "aws", "azure", "groq", "x-ai"}
    )
    assert routed.isdisjoint(
        {"cloudflare", "databricks", "huggingface_novita", "cursor", "typesafe"}
    )


@pytest.mark.parametrize(
    ("api_pattern", "host"),
    [
        (r"https://api\.z\.ai", r"api\.z\.ai"),
        (r"https://api\.arcee\.ai(?:/|$)", r"api\.arcee\.ai"),
        (r"https://api\.moonshot\.", r"api\.moonshot\.[a-z0-9-]+"),
        (r"https://[^/]+\.modal\.(?:run|direct)(?:/|$)", r"[a-z0-9-]+\.modal\.(?:run|direct)"),
        (r"https://api\.cloudflare\.com/client/v4/accounts/[^/]+/ai(?:/|$)", None),
        (r"https://router\.huggingface\.co/novita", None),
    ],
)
def test_host_patterns(api_pattern: str, host: str | None) -> None:
    assert host_pattern(api_pattern) == host


def test_a_provider_the_catalogue_adds_is_metered() -> None:
    families = families_of(
        [
            FakeProvider("newcomer", r"https://api\.newcomer\.example", [Extractor("chat")]),
            FakeProvider("unreadable", r"https://api\.unreadable\.example", [Extractor("default")]),
            FakeProvider("openai", r"https://api\.openai\.com", [Extractor("chat")]),
        ]
    )
    assert [family.provider for family in families] == ["newcomer"]
    route = route_for("api.newcomer.example", 443, "/v2/chat/completions", (), families)
    assert route is not None and (route.provider, route.wire, route.api) == (
        "newcomer",
        "openai-chat",
        "chat",
    )
    claimed = claimed_hosts((), families)
    assert claimed.claims("api.newcomer.example", 443)
    assert not claimed.claims("api.unreadable.example", 443)


def test_catalogue_hosts_route_by_path_suffix() -> None:
    families = catalogue_families()
    zai = route_for("api.z.ai", 443, "/api/paas/v4/chat/completions", (), families)
    assert zai is not None and (zai.provider, zai.api) == ("zai", "chat")
    kimi = route_for("api.moonshot.cn", 443, "/v1/chat/completions", (), families)
    assert kimi is not None and kimi.provider == "moonshotai"
    assert route_for("api.moonshot.ai", 443, "/v1/files", (), families) is None
    # Built-in hosts keep their own routes.
    openai = route_for("api.openai.com", 443, "/v1/responses", (), families)
    assert openai is not None and openai.provider == "openai"


def test_catalogue_hosts_never_claim_other_hosts() -> None:
    claimed = claimed_hosts((), catalogue_families())
    assert claimed.claims("api.moonshot.ai", 443) and claimed.claims("api.z.ai", 443)
    for host in (
        "s3.amazonaws.com",
        "storage.googleapis.com",
        "api.cloudflare.com",
        "github.com",
        "api.z.ai.evil.net",
        "api.moonshot.ai.evil.net",
        "router.huggingface.co",
    ):
        assert not claimed.claims(host, 443), host
