"""The contract every wire-format adapter fulfils: pure functions from bytes to usage.

Nothing here knows about mitmproxy, HTTP servers or SQLite. The capture layer feeds bytes in
(already decompressed), and gets back a `CallResult` whose meaning is the same for every
provider (see docs/architecture.md, "Normalised usage").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Usage:
    """Normalised token usage. ``None`` means "the provider did not report it", never zero.

    - ``input_tokens``: uncached prompt tokens billed at the base input rate.
    - ``cache_read_tokens``: prompt tokens served from the cache.
    - ``cache_write_tokens``: all prompt tokens written to the cache (every lifetime).
    - ``cache_write_1h_tokens``: the part of ``cache_write_tokens`` written with a 1-hour lifetime.
    - ``output_tokens``: all billed output, reasoning/thinking included.
    - ``reasoning_tokens``: the reasoning part of ``output_tokens`` (informational).
    - ``web_search_requests``: server-side searches billed per call.

    The prompt's total is input + cache read + cache write.
    """

    input_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    web_search_requests: int | None = None


@dataclass(slots=True)
class RequestInfo:
    """What the request body says about the call."""

    model: str | None = None
    stream: bool = False
    # A Responses `response.create` with `generate: false` (Codex's WebSocket warm-up): it
    # primes the connection and generates nothing.
    warmup: bool = False


@dataclass(slots=True)
class CallResult:
    """Everything an adapter learns from a response body or stream."""

    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    response_id: str | None = None
    service_tier: str | None = None
    # False when the final usage never arrived (stream cut, malformed body, no usage at all).
    tokens_complete: bool = False
    # The provider's own error type/code when the body (or a mid-stream event) carries an error,
    # e.g. "rate_limit_error", "insufficient_quota", "RESOURCE_EXHAUSTED".
    provider_error_code: str | None = None
    # True when an error arrived inside a 200 response (SSE `event: error`, `data: {"error":…}`).
    stream_error: bool = False
    # Cost the provider itself reported for the call (OpenRouter `usage.cost`,
    # Perplexity `cost.total_cost`, xAI `cost_in_usd_ticks`), as an exact decimal string in USD.
    provider_cost_usd: str | None = None
    # The provider's raw usage object, JSON-encoded, kept for auditing and repricing.
    raw_usage: str | None = None


class StreamParser(Protocol):
    """Incremental parser for one streamed response.

    ``feed`` runs on the proxy's event loop for every chunk, so it must be cheap (split events,
    keep the few raw events that matter) and must never raise. ``result`` does the JSON decoding
    and runs later, on the ledger writer thread.
    """

    def feed(self, data: bytes) -> None: ...

    def result(self) -> CallResult: ...


@dataclass(frozen=True, slots=True)
class Route:
    """Which wire format reads a request, decided from host and path alone.

    ``wire`` names a wire format in ``registry.WIRES``; ``api`` is the operation recorded in
    the ledger (``messages``, ``count_tokens``, ``chat``, ``responses``, ``embeddings``,
    ``completions``, ``generate_content``, ``stream_generate_content``, ``embed_content``,
    ``batch_embed_contents``, and Bedrock's ``invoke``, ``invoke_stream``, ``converse``,
    ``converse_stream``); ``model_from_path`` is the model named in the URL (Gemini, Vertex,
    Bedrock).
    ``zero_cost`` marks calls that are recorded but never billed (token counting).
    """

    provider: str
    wire: str
    api: str
    model_from_path: str | None = None
    zero_cost: bool = False
    # From a user's [[endpoints]]: a gateway we know less about. Its requests are never
    # rewritten (some, such as older Azure OpenAI versions, reject `stream_options`).
    user_declared: bool = False
    # What a cloud's URL says about where the call ran: the region (Bedrock's host, Vertex's
    # location), the cloud's project (Vertex), and the family of the model the cloud resells
    # (`anthropic` on Bedrock or Vertex, `google`, `meta`, `openai`, …).
    region: str | None = None
    cloud_project: str | None = None
    model_family: str | None = None
    # The `api-version` the URL names (Azure): what a request may be asked for depends on it.
    api_version: str | None = None


@dataclass(frozen=True, slots=True)
class HostFamily:
    """Hosts known from elsewhere (the price catalogue's provider list): an anchored regex over
    the host name on port 443, the provider rows name, and the wire formats it speaks, whose
    paths are matched by suffix (a catalogue does not say the base path)."""

    pattern: str
    provider: str
    wires: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A user-declared endpoint (`[[endpoints]]` in config.toml): a gateway or self-hosted server
    that speaks one of the known wire formats."""

    host: str
    port: int
    wire: str
    provider: str
