"""Quota-share budgets: "acme may use 30 % of the Claude 5-hour window", for subscription users
whose calls cost no money.

Read from the quota windows the providers report (ledger/quota.py `quota_view`): for each
account of a provider in scope and each current window whose name matches `quota_window`, the
scope's part of the window is the window's utilisation times the share of its use made by the
scope's projects (or, with a client condition and no project condition, its clients; with
neither, the whole window). `percent` is that part against the budget's `quota_percent`, so
the budget's thresholds apply as for USD budgets. Shown by `budget list/show`; the daemon's
tracker (budgets/tracker.py) re-reads it on its keeper thread to alert and block.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from halton_meter.budget_model import Budget
from halton_meter.ledger.quota import Share, WindowView, quota_view


def _share(shares: list[Share], globs: tuple[str, ...]) -> float:
    return sum(
        s.share for s in shares if any(fnmatchcase(s.name.lower(), g.lower()) for g in globs)
    )


def scope_share(budget: Budget, window: WindowView) -> float:
    scope = budget.scope
    if scope.project:
        return _share(window.projects, scope.project)
    if scope.client:
        return _share(window.clients, scope.client)
    return 1.0


def quota_share_views(
    con: sqlite3.Connection | None,
    budgets: Sequence[Budget],
    now: datetime | None = None,
    warn_at: float = 0.8,
) -> list[dict[str, Any]]:
    """One view per quota-share budget: every matching window with the scope's use of it.
    `con` None (no ledger yet): each budget with no window seen so far."""
    chosen = [b for b in budgets if b.kind == "quota_share"]
    if not chosen:
        return []
    accounts = quota_view(con, now, warn_at) if con is not None else []
    views = []
    for budget in chosen:
        assert budget.quota_window is not None and budget.quota_percent is not None
        found: list[dict[str, Any]] = []
        for account in accounts:
            provider = budget.scope.matches(None, ("",), account.provider, None)
            if provider is False:
                continue
            for window in account.windows:
                if window.expired or not fnmatchcase(window.name, budget.quota_window):
                    continue
                used = window.utilisation * scope_share(budget, window)
                percent = round(used * 100 / (budget.quota_percent / 100), 1)
                found.append(
                    {
                        "account": account.account,
                        "provider": account.provider,
                        "window": window.name,
                        "resets_at": window.resets_at,
                        "since": window.since,
                        "window_utilisation": window.utilisation,
                        "scope_used": round(used, 4),
                        "percent": percent,
                        "thresholds_reached": [t for t in budget.thresholds if percent >= t],
                    }
                )
        top: float | None = max((float(w["percent"]) for w in found), default=None)
        views.append(
            {
                **budget.to_json(),
                "windows": found,
                "percent": top,
                "state": "over" if top is not None and top >= 100 else "ok",
            }
        )
    return views
