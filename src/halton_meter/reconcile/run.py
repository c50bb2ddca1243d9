"""One reconciliation: find the admin key, fetch the provider's reports, compare with the
ledger, and keep a short summary in `reconcile.json` (for `status`, the dashboard, /metrics).

The key is read from the environment (ANTHROPIC_ADMIN_KEY, OPENAI_ADMIN_KEY) or, for the CLI,
the OS keychain (lifecycle/keychain.py, whose lookup the CLI hands in); it lives in memory
for the duration of the fetch and is never written anywhere: not the ledger, config.toml,
the state file or a log line.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from halton_meter.config import ReconcileSettings, UpstreamSettings
from halton_meter.money import usd_string
from halton_meter.reconcile import compare, reports
from halton_meter.reconcile.fetch import FetchError, KeyRefused, Transport
from halton_meter.runstate import read_state, write_atomic

STATE_FILE = "reconcile.json"
KEYCHAIN_SERVICE = "halton-meter"  # lifecycle/keychain.py's SERVICE
KEYCHAIN_ACCOUNT = {"anthropic": "anthropic-admin", "openai": "openai-admin"}


class NoKey(Exception):
    """No admin key in the environment (or the keychain, where allowed)."""


# Reads a named secret from the OS keychain (lifecycle/keychain.py, handed in by the CLI: this
# part sits below lifecycle/); None for the daemon, which reads the environment only.
KeyLookup = Callable[[str], str | None]


def find_key(provider: str, lookup: KeyLookup | None = None) -> tuple[str, str]:
    """(key, where it came from, without the key). The environment first, then the keychain."""
    variable = reports.KEY_ENV[provider]
    value = os.environ.get(variable, "").strip()
    if value:
        return value, f"${variable}"
    if lookup is not None:
        found = lookup(KEYCHAIN_ACCOUNT[provider])
        if found and found.strip():
            return found.strip(), f"keychain ({KEYCHAIN_SERVICE}/{KEYCHAIN_ACCOUNT[provider]})"
    raise NoKey(variable)


def window_for(days: int, today: date | None = None, include_today: bool = False) -> reports.Window:
    """The last `days` whole UTC days (today's partial day only when asked: the providers'
    reports lag behind the meter by minutes to an hour)."""
    today = today or datetime.now(UTC).date()
    end = today + timedelta(days=1) if include_today else today
    return reports.Window(end - timedelta(days=days), end)


@dataclass(slots=True)
class Result:
    provider: str
    window: reports.Window
    key_source: str
    comparisons: list[compare.Comparison] = field(default_factory=list)
    scope: reports.Scope = field(default_factory=reports.Scope)

    def counts(self) -> dict[str, int]:
        return dict(Counter(item.verdict for item in self.comparisons))

    @property
    def matches(self) -> bool:
        judged = (compare.MATCHES, compare.NOT_PER_MODEL)
        return all(item.verdict in judged for item in self.comparisons)

    def cost_difference_nanousd(self) -> int | None:
        """Provider minus ledger, over the window (positive: the provider billed more); None
        when the provider's cost was not read (a key scope)."""
        if not self.scope.cost_compared:
            return None
        theirs = sum(item.theirs.cost_nanousd or 0 for item in self.comparisons)
        ours = sum(item.ours.cost_nanousd or 0 for item in self.comparisons)
        return theirs - ours

    def summary(self, alert_above_usd: Decimal = Decimal(1)) -> dict[str, Any]:
        difference = self.cost_difference_nanousd()
        return {
            "alert": difference is not None and abs(difference) > int(alert_above_usd * 10**9),
            "alert_above_usd": f"{alert_above_usd.normalize():f}",
            "provider": self.provider,
            "scope": self.scope.as_json(),
            "cost_compared": self.scope.cost_compared,
            "from": self.window.first.isoformat(),
            "until": self.window.end.isoformat(),
            "days": len(self.window.days),
            "matches": self.matches,
            "verdicts": self.counts(),
            "cost_difference_usd": None if difference is None else usd_string(difference),
            "differences": [
                {"day": item.day, "model": item.model, "verdict": item.verdict}
                for item in self.comparisons
                if item.verdict != compare.MATCHES
            ][:20],
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "key_source": self.key_source,
            "tolerance": compare.TOLERANCE_TEXT,
            "comparisons": [item.as_json() for item in self.comparisons],
        }


def scope_of(provider: str, settings: ReconcileSettings) -> reports.Scope:
    """`[reconcile]` workspace / project / api_key for one provider (ScopeError when an
    `api_key` would be sent to a provider it does not belong to)."""
    alone = len(settings.providers) == 1  # takes every scope given (a wrong one is an error)
    workspaces = settings.workspace if alone or provider == "anthropic" else ()
    projects = settings.project if alone or provider == "openai" else ()
    if settings.api_key and len(settings.providers) != 1:
        raise reports.ScopeError(
            "[reconcile] api_key names one provider's key: set providers to that provider only"
        )
    return reports.scope_for(provider, workspaces, projects, settings.api_key)


def reconcile(
    provider: str,
    ledger: Path,
    upstream: UpstreamSettings,
    window: reports.Window,
    lookup: KeyLookup | None = None,
    scope: reports.Scope | None = None,
) -> Result:
    """Raises NoKey, KeyRefused or FetchError; sqlite3.Error when the ledger cannot be read.
    With a scope the provider's side is that workspace, project or key; the ledger's side is
    every call this meter saw to that provider (it records no key, workspace or project:
    docs/reconcile.md, Scope)."""
    scope = scope or reports.Scope()
    key, source = find_key(provider, lookup)
    theirs = reports.FETCHERS[provider](Transport(upstream), key, window, scope)
    del key
    con = sqlite3.connect(f"file:{ledger.as_posix()}?mode=ro", uri=True, timeout=10)
    try:
        comparisons = compare.compare(con, provider, window, theirs)
    finally:
        con.close()
    return Result(provider, window, source, comparisons, scope)


# --- the state file ------------------------------------------------------------------------


def state_path(home: Path) -> Path:
    return home / STATE_FILE


def save(
    home: Path, results: dict[str, dict[str, Any]], alerted: dict[str, str] | None = None
) -> dict[str, Any]:
    """Merge per-provider summaries (or errors) into reconcile.json; returns the new state.
    `alerted`: per provider the UTC day its difference was last alerted (the daemon's)."""
    state = read_state(state_path(home)) or {}
    providers = state.get("providers") if isinstance(state.get("providers"), dict) else {}
    assert isinstance(providers, dict)
    before = state.get("alerted") if isinstance(state.get("alerted"), dict) else {}
    assert isinstance(before, dict)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for provider, summary in results.items():
        providers[provider] = {**summary, "checked_at": now}
    state = {"checked_at": now, "providers": providers, "alerted": {**before, **(alerted or {})}}
    write_atomic(state_path(home), _dumps(state))
    return state


def load(home: Path) -> dict[str, Any] | None:
    return read_state(state_path(home))


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


def error_summary(provider: str, error: Exception) -> dict[str, Any]:
    kind = (
        "scope"
        if isinstance(error, reports.ScopeError)
        else "no_key"
        if isinstance(error, NoKey)
        else "key_refused"
        if isinstance(error, KeyRefused)
        else "unreachable"
        if isinstance(error, FetchError)
        else "ledger"
    )
    return {"provider": provider, "error": kind, "message": describe_error(provider, error)}


def describe_error(provider: str, error: Exception) -> str:
    """A message that says what to do; never the key."""
    if isinstance(error, reports.ScopeError):
        return f"{provider}: {error}"
    if isinstance(error, NoKey):
        return (
            f"no {provider} admin key: set {reports.KEY_ENV[provider]} or store it in the OS "
            "keychain (docs/reconcile.md)"
        )
    if isinstance(error, KeyRefused):
        kind = "an Admin API key (sk-ant-admin…)" if provider == "anthropic" else "an admin key"
        return (
            f"{provider} refused the admin key ({error.status}: {error}). Reconcile needs "
            f"{kind} allowed to read the organisation's usage and cost reports; a normal API "
            "key, a revoked key or one without that permission is refused."
        )
    return f"{provider}: {error}"


def scope_text(summary: dict[str, Any]) -> str:
    """ " (workspace wrkspc_…)" for a scoped summary, "" for the whole organisation."""
    scoped = summary.get("scope") or {}
    if not isinstance(scoped, dict) or not scoped:
        return ""
    named = reports.Scope(
        tuple(scoped.get("workspaces", ())),
        tuple(scoped.get("projects", ())),
        tuple(scoped.get("api_keys", ())),
    )
    return f" ({named.describe()})"


def verdicts_text(summary: dict[str, Any]) -> str:
    """ "1 ledger has less (…), 2 prices differ": the verdicts other than matches."""
    verdicts = summary.get("verdicts") or {}
    return ", ".join(
        f"{count} {compare.VERDICT_TEXT.get(name, name)}"
        for name, count in sorted(verdicts.items())
        if name != compare.MATCHES
    )


def status_line(state: dict[str, Any] | None) -> str | None:
    """One line for `status` and the dashboard: matches for the last N days, or the
    difference."""
    if not state or not isinstance(state.get("providers"), dict):
        return None
    parts = []
    for provider, summary in sorted(state["providers"].items()):
        if not isinstance(summary, dict):
            continue
        provider += scope_text(summary)
        if summary.get("error"):
            parts.append(f"{provider}: not reconciled ({summary.get('message')})")
        elif summary.get("matches"):
            parts.append(
                f"{provider}: matches the provider's report for the last {summary.get('days')} days"
            )
        else:
            counted = verdicts_text(summary)
            difference = summary.get("cost_difference_usd")
            money = (
                "cost not compared"
                if difference is None
                else (f"provider minus ledger ${difference}")
            )
            parts.append(
                f"{provider}: differs from the provider's report over the last "
                f"{summary.get('days')} days ({counted}; {money})"
            )
    return "; ".join(parts) if parts else None
