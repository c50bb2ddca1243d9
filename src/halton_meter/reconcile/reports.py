"""The providers' own usage and cost reports, read into one shape: per UTC day and model, the
tokens of each kind, the requests (where reported) and the cost in nano-USD.

Shapes relied on (sources in docs/reconcile.md):

- Anthropic (Admin API, `x-api-key: sk-ant-admin…`, `anthropic-version`):
  `GET /v1/organizations/usage_report/messages` with starting_at, ending_at, bucket_width=1d,
  group_by[]=model
  → `data[].{starting_at, ending_at, results[].{model, uncached_input_tokens,
  cache_read_input_tokens, cache_creation.{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens},
  output_tokens, server_tool_use.web_search_requests}}`, `has_more`, `next_page`; no request count.
  `GET /v1/organizations/cost_report?…&group_by[]=description` → `results[].{amount, currency,
  cost_type, model, token_type}`, `amount` a decimal string in cents ("123.45" = $1.23).
- OpenAI (`Authorization: Bearer` admin key):
  `GET /v1/organization/usage/completions?start_time&end_time&bucket_width=1d&group_by=model`
  → `data[].{start_time, end_time, results[].{model, input_tokens (cached included),
  input_cached_tokens, output_tokens, num_model_requests}}`, `has_more`, `next_page`.
  `GET /v1/organization/costs?…&group_by=line_item` → `results[].{amount.{value, currency},
  line_item}`, value in dollars; a line item reads "MODEL, input|cached input|output".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from halton_meter.money import NANO_PER_USD
from halton_meter.reconcile.fetch import FetchError, Transport

# Token kinds compared, in display order (the ledger's columns in compare.py).
KINDS = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "web_search")
KIND_LABELS = {
    "input": "input",
    "cache_read": "cache read",
    "cache_write_5m": "cache write 5m",
    "cache_write_1h": "cache write 1h",
    "output": "output",
    "web_search": "web searches",
}
UNATTRIBUTED = "(not split by model)"

ANTHROPIC_BASE = "https://api.anthropic.com"
OPENAI_BASE = "https://api.openai.com"
ANTHROPIC_VERSION = "2023-06-01"
PROVIDERS = ("anthropic", "openai")
KEY_ENV = {"anthropic": "ANTHROPIC_ADMIN_KEY", "openai": "OPENAI_ADMIN_KEY"}
MAX_PAGES = 200  # a broken next_page loop ends here


@dataclass(slots=True)
class Cell:
    """The provider's numbers for one day and model."""

    day: str
    model: str
    tokens: dict[str, int] = field(default_factory=dict)
    requests: int | None = None
    cost_nanousd: int | None = None
    # Per kind, from a report that itemises cost (Anthropic's description, OpenAI's line_item).
    kind_cost_nanousd: dict[str, int] = field(default_factory=dict)

    def add_cost(self, nanousd: int, kind: str | None) -> None:
        self.cost_nanousd = (self.cost_nanousd or 0) + nanousd
        if kind is not None:
            self.kind_cost_nanousd[kind] = self.kind_cost_nanousd.get(kind, 0) + nanousd


@dataclass(frozen=True, slots=True)
class Window:
    """Whole UTC days [first, end)."""

    first: date
    end: date

    @property
    def days(self) -> list[str]:
        count = (self.end - self.first).days
        return [(self.first + timedelta(days=n)).isoformat() for n in range(count)]

    def start_dt(self) -> datetime:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC)

    def end_dt(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)


Cells = dict[tuple[str, str], Cell]


class ScopeError(ValueError):
    """A scope the provider's report cannot be filtered by (a workspace of OpenAI, ...)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which part of the organisation's report to compare: Anthropic workspaces, OpenAI
    projects, either's API key ids (the provider's ids, never a key). Empty: the whole
    organisation."""

    workspaces: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.workspaces or self.projects or self.api_keys)

    @property
    def cost_compared(self) -> bool:
        """Neither provider's cost report can be filtered or grouped by API key: a key scope
        compares tokens (and requests) only."""
        return not self.api_keys

    def as_json(self) -> dict[str, list[str]]:
        return {
            name: list(values)
            for name, values in (
                ("workspaces", self.workspaces),
                ("projects", self.projects),
                ("api_keys", self.api_keys),
            )
            if values
        }

    def describe(self) -> str:
        parts = [
            f"{label} {', '.join(values)}"
            for label, values in (
                ("workspace", self.workspaces),
                ("project", self.projects),
                ("API key", self.api_keys),
            )
            if values
        ]
        return "; ".join(parts) or "whole organisation"


def scope_for(
    provider: str,
    workspaces: tuple[str, ...] = (),
    projects: tuple[str, ...] = (),
    api_keys: tuple[str, ...] = (),
) -> Scope:
    """The scope one provider's report can take: Anthropic filters by workspace, OpenAI by
    project; both by API key id. Raises ScopeError for the other provider's kind of scope."""
    if provider == "anthropic" and projects:
        raise ScopeError(
            "Anthropic has workspaces, not projects: use --workspace (`workspace` in [reconcile])"
        )
    if provider == "openai" and workspaces:
        raise ScopeError(
            "OpenAI has projects, not workspaces: use --project (`project` in [reconcile])"
        )
    return Scope(tuple(workspaces), tuple(projects), tuple(api_keys))


def _cell(cells: Cells, day: str, model: str | None) -> Cell:
    name = model or UNATTRIBUTED
    return cells.setdefault((day, name), Cell(day, name))


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return 0


def _pages(
    transport: Transport, url: str, params: list[tuple[str, str]], headers: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """Every bucket of a paginated report (`has_more` / `next_page`)."""
    page: str | None = None
    for _ in range(MAX_PAGES):
        answer = transport.get_json(url, [*params, *([("page", page)] if page else [])], headers)
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise FetchError(f"{url}: the answer has no data list (shape changed?)")
        for bucket in answer["data"]:
            if isinstance(bucket, dict):
                yield bucket
        page = answer.get("next_page")
        if not answer.get("has_more") or not isinstance(page, str) or not page:
            return
    raise FetchError(f"{url}: more than {MAX_PAGES} pages")


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Anthropic ------------------------------------------------------------------------------

_ANTHROPIC_TOKEN_TYPES = {
    "uncached_input_tokens": "input",
    "output_tokens": "output",
    "cache_read_input_tokens": "cache_read",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write_5m",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write_1h",
}


def anthropic(transport: Transport, key: str, window: Window, scope: Scope = Scope()) -> Cells:
    """The usage report filtered by `workspace_ids[]` / `api_key_ids[]`; the cost report has
    no filter, so a workspace scope groups it by `workspace_id` too and keeps that workspace's
    items, and a key scope does not read it (it cannot be split by key)."""
    headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
    span = [
        ("starting_at", _rfc3339(window.start_dt())),
        ("ending_at", _rfc3339(window.end_dt())),
        ("bucket_width", "1d"),
        ("limit", "31"),
    ]
    cells: Cells = {}
    usage_url = f"{ANTHROPIC_BASE}/v1/organizations/usage_report/messages"
    filters = [("workspace_ids[]", w) for w in scope.workspaces]
    filters += [("api_key_ids[]", k) for k in scope.api_keys]
    usage_params = [*span, ("group_by[]", "model"), *filters]
    for bucket in _pages(transport, usage_url, usage_params, headers):
        day = str(bucket.get("starting_at", ""))[:10]
        for result in bucket.get("results") or []:
            if not isinstance(result, dict):
                continue
            cell = _cell(cells, day, result.get("model"))
            creation = result.get("cache_creation") or {}
            tools = result.get("server_tool_use") or {}
            found = {
                "input": _int(result.get("uncached_input_tokens")),
                "cache_read": _int(result.get("cache_read_input_tokens")),
                "cache_write_5m": _int(creation.get("ephemeral_5m_input_tokens")),
                "cache_write_1h": _int(creation.get("ephemeral_1h_input_tokens")),
                "output": _int(result.get("output_tokens")),
                "web_search": _int(tools.get("web_search_requests")),
            }
            for kind, count in found.items():
                cell.tokens[kind] = cell.tokens.get(kind, 0) + count
    if not scope.cost_compared:
        return cells
    cost_url = f"{ANTHROPIC_BASE}/v1/organizations/cost_report"
    cost_params = [*span, ("group_by[]", "description")]
    if scope.workspaces:
        cost_params.append(("group_by[]", "workspace_id"))
    for bucket in _pages(transport, cost_url, cost_params, headers):
        day = str(bucket.get("starting_at", ""))[:10]
        for result in bucket.get("results") or []:
            if not isinstance(result, dict):
                continue
            if scope.workspaces and result.get("workspace_id") not in scope.workspaces:
                continue
            currency = str(result.get("currency") or "USD").upper()
            if currency != "USD":
                raise FetchError(f"Anthropic's cost report is in {currency}, not USD")
            try:
                cents = Decimal(str(result.get("amount")))
            except ArithmeticError:
                continue
            nanousd = int((cents * NANO_PER_USD / 100).to_integral_value())
            token_kind = _ANTHROPIC_TOKEN_TYPES.get(str(result.get("token_type")))
            if result.get("cost_type") == "web_search":
                token_kind = "web_search"
            _cell(cells, day, result.get("model")).add_cost(nanousd, token_kind)
    return cells


# --- OpenAI ---------------------------------------------------------------------------------

_OPENAI_LINE_KINDS = {"input": "input", "cached input": "cache_read", "output": "output"}


def openai(transport: Transport, key: str, window: Window, scope: Scope = Scope()) -> Cells:
    """Usage filtered by `project_ids` / `api_key_ids`, costs by `project_ids`; the cost
    report has no key filter or grouping, so a key scope does not read it."""
    headers = {"authorization": f"Bearer {key}"}
    span = [
        ("start_time", str(int(window.start_dt().timestamp()))),
        ("end_time", str(int(window.end_dt().timestamp()))),
        ("bucket_width", "1d"),
    ]
    cells: Cells = {}
    usage_url = f"{OPENAI_BASE}/v1/organization/usage/completions"
    projects = [("project_ids", p) for p in scope.projects]
    keys = [("api_key_ids", k) for k in scope.api_keys]
    usage_params = [*span, ("group_by", "model"), ("limit", "31"), *projects, *keys]
    for bucket in _pages(transport, usage_url, usage_params, headers):
        day = _day_of(bucket.get("start_time"))
        for result in bucket.get("results") or []:
            if not isinstance(result, dict):
                continue
            cell = _cell(cells, day, result.get("model"))
            cached = _int(result.get("input_cached_tokens"))
            found = {
                "input": _int(result.get("input_tokens")) - cached,
                "cache_read": cached,
                "output": _int(result.get("output_tokens")),
            }
            for kind, count in found.items():
                cell.tokens[kind] = cell.tokens.get(kind, 0) + count
            cell.requests = (cell.requests or 0) + _int(result.get("num_model_requests"))
    if not scope.cost_compared:
        return cells
    cost_url = f"{OPENAI_BASE}/v1/organization/costs"
    cost_params = [*span, ("group_by", "line_item"), ("limit", "180"), *projects]
    for bucket in _pages(transport, cost_url, cost_params, headers):
        day = _day_of(bucket.get("start_time"))
        for result in bucket.get("results") or []:
            if not isinstance(result, dict):
                continue
            amount = result.get("amount") or {}
            currency = str(amount.get("currency") or "usd").upper()
            if currency != "USD":
                raise FetchError(f"OpenAI's cost report is in {currency}, not USD")
            try:
                dollars = Decimal(str(amount.get("value")))
            except ArithmeticError:
                continue
            model, item_kind = _line_item(result.get("line_item"))
            nanousd = int((dollars * NANO_PER_USD).to_integral_value())
            _cell(cells, day, model).add_cost(nanousd, item_kind)
    return cells


def _line_item(value: Any) -> tuple[str | None, str | None]:
    """ "gpt-4o-2024-08-06, cached input" → (model, kind); without ", " not split by model."""
    if not isinstance(value, str) or ", " not in value:
        return None, None
    model, _, label = value.rpartition(", ")
    return model.strip() or None, _OPENAI_LINE_KINDS.get(label.strip().lower())


def _day_of(value: Any) -> str:
    seconds = _int(value)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d")


FETCHERS = {"anthropic": anthropic, "openai": openai}
