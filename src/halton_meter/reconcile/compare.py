"""The ledger against the provider's report, per UTC day and model, with a verdict for each.

Only calls to the provider's own API host count (api.anthropic.com, api.openai.com: what the
organisation's admin report covers), and never a subscription's calls (Claude Pro/Max, ChatGPT
plans are not in the API organisation's report). Tokens are compared exactly (both sides count
whole tokens); cost within `COST_TOLERANCE`: the providers report money rounded (Anthropic in
fractions of a cent, OpenAI in dollars with float precision), so a difference below
max($0.0001, 0.1 %) of their amount is rounding, not a price.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from halton_meter.ledger import spans
from halton_meter.money import NANO_PER_USD, usd_string
from halton_meter.reconcile.reports import KIND_LABELS, KINDS, UNATTRIBUTED, Cell, Cells, Window

HOSTS = {"anthropic": "api.anthropic.com", "openai": "api.openai.com"}
COST_TOLERANCE_NANOUSD = 100_000  # $0.0001
COST_TOLERANCE_RATIO = Decimal("0.001")  # 0.1 %
TOLERANCE_TEXT = "tokens exact; cost within $0.0001 or 0.1 %, whichever is larger"

MATCHES = "matches"
LEDGER_LESS = "ledger_has_less"
LEDGER_MORE = "ledger_has_more"
PRICES_DIFFER = "prices_differ"
TOKENS_DIFFER = "tokens_differ"  # more of one kind, less of another
NOT_PER_MODEL = "not_per_model"  # the provider's cost without a model: shown, not judged
VERDICT_TEXT = {
    MATCHES: "matches",
    LEDGER_LESS: "ledger has less (traffic the meter did not see)",
    LEDGER_MORE: "ledger has more",
    PRICES_DIFFER: "prices differ",
    TOKENS_DIFFER: "tokens differ both ways",
    NOT_PER_MODEL: "cost not split by model (web search, code execution): not compared",
}
# Override keys per kind (pricing/overrides.py PRICE_KEYS).
_PRICE_KEY = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write_5m": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
}


@dataclass(slots=True)
class Comparison:
    """One day and model: both sides, the verdict, and what to do about it."""

    day: str
    model: str
    verdict: str
    ours: Cell
    theirs: Cell
    unpriced_requests: int = 0
    holes: list[dict[str, Any]] = field(default_factory=list)
    override: str | None = None
    next_steps: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        kinds = sorted(set(self.ours.tokens) | set(self.theirs.tokens), key=KINDS.index)
        return {
            "day": self.day,
            "model": self.model,
            "verdict": self.verdict,
            "tokens": {
                kind: {
                    "ledger": self.ours.tokens.get(kind, 0),
                    "provider": self.theirs.tokens.get(kind),
                }
                for kind in kinds
            },
            "requests": {"ledger": self.ours.requests, "provider": self.theirs.requests},
            "cost_usd": {
                "ledger": usd_string(self.ours.cost_nanousd),
                "provider": usd_string(self.theirs.cost_nanousd),
            },
            "unpriced_requests": self.unpriced_requests,
            "unmetered_spans": self.holes,
            "override": self.override,
            "next_steps": self.next_steps,
        }


def ledger_cells(
    con: sqlite3.Connection, provider: str, window: Window
) -> tuple[Cells, dict[tuple[str, str], int]]:
    """The ledger's side: per day and model, tokens by kind, successful requests and money
    spent; and per key the requests left unpriced."""
    sql = (
        "SELECT substr(requested_at, 1, 10), COALESCE(model, model_requested, '(unknown)'), "
        "SUM(status = 'ok'), SUM(COALESCE(input_tokens, 0)), SUM(COALESCE(cache_read_tokens, 0)), "
        "SUM(MAX(COALESCE(cache_write_tokens, 0) - COALESCE(cache_write_1h_tokens, 0), 0)), "
        "SUM(COALESCE(cache_write_1h_tokens, 0)), SUM(COALESCE(output_tokens, 0)), "
        "SUM(COALESCE(web_search_requests, 0)), SUM(COALESCE(cost_nanousd, 0)), "
        "SUM(cost_nanousd IS NULL AND status = 'ok') "
        "FROM requests WHERE provider = ? AND host = ? AND billing != 'subscription' "
        "AND requested_at >= ? AND requested_at < ? GROUP BY 1, 2"
    )
    start, end = window.first.isoformat(), window.end.isoformat()
    cells: Cells = {}
    unpriced: dict[tuple[str, str], int] = {}
    for row in con.execute(sql, (provider, HOSTS[provider], start, end)):
        day, model, requests, *counts, cost, missing = row
        cell = Cell(day, model, dict(zip(KINDS, counts, strict=True)), requests, cost)
        cells[(day, model)] = cell
        unpriced[(day, model)] = missing
    return cells, unpriced


def _within(ours: int, theirs: int) -> bool:
    allowed = max(COST_TOLERANCE_NANOUSD, int(abs(theirs) * COST_TOLERANCE_RATIO))
    return abs(ours - theirs) <= allowed


def verdict(ours: Cell, theirs: Cell) -> str:
    """Compare the kinds the provider reports (a kind it does not report is not judged)."""
    more = less = False
    for kind, count in theirs.tokens.items():
        mine = ours.tokens.get(kind, 0)
        more |= mine > count
        less |= mine < count
    if theirs.requests is not None and ours.requests is not None:
        more |= ours.requests > theirs.requests
        less |= ours.requests < theirs.requests
    if more and less:
        return TOKENS_DIFFER
    if less:
        return LEDGER_LESS
    if more:
        return LEDGER_MORE
    if theirs.cost_nanousd is None or _within(ours.cost_nanousd or 0, theirs.cost_nanousd):
        return MATCHES
    return PRICES_DIFFER


def _price(nanousd: int, tokens: int) -> Decimal:
    """USD per million tokens, to 6 decimals, without trailing zeros."""
    exact = Decimal(nanousd) * 1_000_000 / NANO_PER_USD / tokens
    return exact.quantize(Decimal("0.000001")).normalize()


def suggest_override(provider: str, comparisons: list[Comparison]) -> str | None:
    """The `[[pricing.overrides]]` entry that makes the ledger charge what the provider did,
    from its itemised cost over every day where prices differ (first such day onwards)."""
    if not comparisons:
        return None
    model, first = comparisons[0].model, min(c.day for c in comparisons)
    tokens: dict[str, int] = {}
    money: dict[str, int] = {}
    for comparison in comparisons:
        for kind, cost in comparison.theirs.kind_cost_nanousd.items():
            if kind in _PRICE_KEY and comparison.theirs.tokens.get(kind):
                tokens[kind] = tokens.get(kind, 0) + comparison.theirs.tokens[kind]
                money[kind] = money.get(kind, 0) + cost
    lines = [
        "[[pricing.overrides]]",
        f'name = "{provider}-{model}-as-billed"',
        f'provider = "{provider}"',
        f'model = "{model}"',
    ]
    if tokens:
        for kind in KINDS:
            if kind in tokens:
                lines.append(f"{_PRICE_KEY[kind]} = {_price(money[kind], tokens[kind]):f}")
    else:  # no itemised cost: the ratio of the totals, when the provider charged less
        ours = sum(c.ours.cost_nanousd or 0 for c in comparisons)
        theirs = sum(c.theirs.cost_nanousd or 0 for c in comparisons)
        if not ours or theirs >= ours:
            return None
        discount = ((1 - Decimal(theirs) / Decimal(ours)) * 100).quantize(Decimal("0.01"))
        lines.append(f"discount_pct = {discount.normalize():f}")
    lines.append(f'effective_from = "{first}"')
    return "\n".join(lines)


def _steps(provider: str, item: Comparison) -> list[str]:
    if item.verdict == LEDGER_LESS:
        steps = [
            "The provider billed traffic the meter did not see: another machine or a CI job "
            "using a key of the same organisation or workspace, a tool that bypasses the proxy "
            "(check `halton-meter doctor` and the tool's proxy settings), or a time the meter "
            "was off."
        ]
        if item.holes:
            steps.append("Unmetered spans were recorded that day (listed): see `status`.")
        steps.append(
            "For a clean comparison give this machine its own workspace or key and reconcile "
            "that workspace (docs/reconcile.md, Scope)."
        )
        return steps
    if item.verdict == LEDGER_MORE:
        return [
            "The provider's report can lag by up to an hour: run again later.",
            "Calls that failed after being counted, or a model recorded under another name, "
            "also show here; `halton-meter requests --since` lists that day's calls.",
        ]
    if item.verdict == PRICES_DIFFER:
        steps = ["Same tokens, different cost: a negotiated or changed price."]
        if item.override:
            steps.append(
                "Add the override below to config.toml, then `halton-meter reprice --since "
                f"{item.day}` to correct the ledger's past rows."
            )
        if item.unpriced_requests:
            steps.append(f"{item.unpriced_requests} call(s) have no price in the catalogue.")
        return steps
    if item.verdict == TOKENS_DIFFER:
        return ["Some kinds are higher and others lower: compare the kinds listed above."]
    return []


def compare(
    con: sqlite3.Connection, provider: str, window: Window, theirs_cells: Cells
) -> list[Comparison]:
    """Every day and model either side has, each judged; the unmetered spans of that day to the
    provider's host beside a `ledger has less`."""
    ours_cells, unpriced = ledger_cells(con, provider, window)
    result: list[Comparison] = []
    for key in sorted(set(ours_cells) | set(theirs_cells)):
        day, model = key
        theirs = theirs_cells.get(key) or Cell(day, model, {}, None, None)
        if model == UNATTRIBUTED:
            ours = Cell(day, model, {}, None, None)
            result.append(Comparison(day, model, NOT_PER_MODEL, ours, theirs))
            continue
        ours = ours_cells.get(key) or Cell(day, model, {k: 0 for k in KINDS}, 0, 0)
        if not theirs.tokens and theirs.cost_nanousd is None:
            theirs = Cell(day, model, {k: 0 for k in ours.tokens}, None, None)
        item = Comparison(day, model, verdict(ours, theirs), ours, theirs)
        item.unpriced_requests = unpriced.get(key, 0)
        if item.verdict in (LEDGER_LESS, TOKENS_DIFFER):
            following = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
            item.holes = [
                hole.as_json()
                for hole in spans.holes(con, day, following)
                if hole.host == HOSTS[provider]
            ]
        result.append(item)
    by_model: dict[str, list[Comparison]] = {}
    for item in result:
        if item.verdict == PRICES_DIFFER:
            by_model.setdefault(item.model, []).append(item)
    for items in by_model.values():
        entry = suggest_override(provider, items)
        for item in items:
            item.override = entry
    for item in result:
        item.next_steps = _steps(provider, item)
    return result


def kind_text(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)
