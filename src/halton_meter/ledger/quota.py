"""Quota windows per account, read from the rate-limit headers kept beside each row.

Each response that carried a provider's rate-limit or quota headers left one
`quota_observations` row (migration 6): the opaque account label, the moment, and the header
families whole. From them, per account: each window's latest utilisation and reset, its trend
(the change per hour over the last hour of the window's observations, and when it would be
full at that pace), and each project's and client's share of the window's use so far (the
account's metered calls since the window began, by API-equivalent value when every one is
priced, else by tokens). `warnings` is what `status`, the dashboard and, later, the budgets'
notifications call.

Reads only the last `LOOKBACK_DAYS` of observations (the longest window known is 7 days).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from halton_meter.ledger.row import utc_iso_ms
from halton_meter.providers.ratelimits import Window, loads, windows

LOOKBACK_DAYS = 8
TREND_SECONDS = 3600.0
MIN_TREND_SPAN = 60.0  # seconds of observations before a trend is worth stating
WARNING_STATUSES = frozenset({"allowed_warning", "rejected"})


@dataclass(slots=True)
class Share:
    """One project's (or client's) part of a window's use so far."""

    name: str
    requests: int = 0
    tokens: int = 0
    value_nanousd: int = 0
    share: float = 0.0


@dataclass(slots=True)
class WindowView:
    name: str
    utilisation: float
    resets_at: str | None
    length_seconds: int | None
    status: str | None
    limit: int | None
    remaining: int | None
    observed_at: str
    expired: bool  # the window has reset since it was last seen: today's figure is unknown
    warning: bool
    since: str | None  # when the window began (reset minus length), when both are known
    trend_per_hour: float | None = None
    full_at: str | None = None  # at the trend's pace, before the reset
    basis: str = "tokens"  # what the shares measure: "value" (API-equivalent) or "tokens"
    projects: list[Share] = field(default_factory=list)
    clients: list[Share] = field(default_factory=list)


@dataclass(slots=True)
class AccountView:
    account: str
    provider: str
    last_seen_at: str
    windows: list[WindowView]


@dataclass(slots=True)
class _Observation:
    at: float
    windows: dict[str, Window]
    project: str
    client: str
    tokens: int
    value: int | None


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else utc_iso_ms(epoch)


def quota_view(
    con: sqlite3.Connection, now: datetime | None = None, warn_at: float = 0.8
) -> list[AccountView]:
    """Every account seen in the last `LOOKBACK_DAYS`, most recently seen first."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    since = utc_iso_ms((moment - timedelta(days=LOOKBACK_DAYS)).timestamp())
    rows = con.execute(
        "SELECT q.account, q.provider, q.observed_at, q.headers, r.project, "
        "COALESCE(r.client_process, '(unknown)'), "
        "COALESCE(r.input_tokens, 0) + COALESCE(r.cache_read_tokens, 0) "
        "+ COALESCE(r.cache_write_tokens, 0) + COALESCE(r.output_tokens, 0), r.cost_nanousd "
        "FROM quota_observations AS q JOIN requests AS r ON r.id = q.request_id "
        "WHERE q.observed_at >= ? ORDER BY q.account, q.observed_at, q.request_id",
        (since,),
    ).fetchall()
    accounts: dict[str, tuple[str, list[_Observation]]] = {}
    for account, provider, observed_at, headers, project, client, tokens, value in rows:
        at = _epoch(observed_at)
        found = {w.name: w for w in windows(loads(headers), at)}
        entry = accounts.setdefault(account, (provider, []))
        entry[1].append(_Observation(at, found, project, client, int(tokens), value))
    views = [
        _account(account, provider, observations, moment.timestamp(), warn_at)
        for account, (provider, observations) in accounts.items()
    ]
    views.sort(key=lambda view: (view.last_seen_at, view.account), reverse=True)
    return views


def _account(
    account: str, provider: str, observations: list[_Observation], now: float, warn_at: float
) -> AccountView:
    latest_at = observations[-1].at
    # The newest sighting of every window this account reported (a response may carry only some).
    current: dict[str, tuple[float, Window]] = {}
    for observation in observations:
        for name, window in observation.windows.items():
            current[name] = (observation.at, window)
    views = []
    for name in sorted(current, key=_window_order):
        seen_at, window = current[name]
        views.append(_window(window, seen_at, observations, now, warn_at))
    return AccountView(account, provider, utc_iso_ms(latest_at), views)


def _window_order(name: str) -> tuple[int, str]:
    return (0 if name.startswith(("unified-", "codex-")) else 1, name)


def _window(
    window: Window, seen_at: float, observations: list[_Observation], now: float, warn_at: float
) -> WindowView:
    expired = window.resets_at is not None and window.resets_at <= now
    start = None
    if window.resets_at is not None and window.length_seconds is not None:
        start = window.resets_at - window.length_seconds
    view = WindowView(
        name=window.name,
        utilisation=window.utilisation,
        resets_at=_iso(window.resets_at),
        length_seconds=window.length_seconds,
        status=window.status,
        limit=window.limit,
        remaining=window.remaining,
        observed_at=utc_iso_ms(seen_at),
        expired=expired,
        warning=not expired
        and (window.utilisation >= warn_at or (window.status or "") in WARNING_STATUSES),
        since=_iso(start),
    )
    if expired:
        return view
    _trend(view, window, seen_at, observations)
    if start is not None:
        _shares(view, [o for o in observations if start <= o.at <= now])
    return view


def _trend(
    view: WindowView, window: Window, seen_at: float, observations: list[_Observation]
) -> None:
    """Utilisation change per hour over the last hour of this window's own observations (the
    same reset), and when it would be full at that pace, if that comes before the reset."""
    points = [
        (o.at, seen.utilisation)
        for o in observations
        if seen_at - TREND_SECONDS <= o.at <= seen_at
        and (seen := o.windows.get(window.name)) is not None
        and (window.resets_at is None or seen.resets_at == window.resets_at)
    ]
    if len(points) < 2 or points[-1][0] - points[0][0] < MIN_TREND_SPAN:
        return
    (first_at, first), (last_at, last) = points[0], points[-1]
    per_second = (last - first) / (last_at - first_at)
    view.trend_per_hour = round(per_second * 3600, 6)
    if per_second > 0 and last < 1:
        full = last_at + (1 - last) / per_second
        if window.resets_at is None or full < window.resets_at:
            view.full_at = utc_iso_ms(full)


def _shares(view: WindowView, inside: list[_Observation]) -> None:
    projects: dict[str, Share] = {}
    clients: dict[str, Share] = {}
    for observation in inside:
        for table, name in ((projects, observation.project), (clients, observation.client)):
            share = table.setdefault(name, Share(name))
            share.requests += 1
            share.tokens += observation.tokens
            share.value_nanousd += observation.value or 0
    priced = bool(inside) and all(o.value is not None for o in inside)
    total_value = sum(o.value or 0 for o in inside)
    total_tokens = sum(o.tokens for o in inside)
    view.basis = "value" if priced and total_value > 0 else "tokens"
    for table in (projects, clients):
        for share in table.values():
            if view.basis == "value":
                share.share = share.value_nanousd / total_value
            elif total_tokens:
                share.share = share.tokens / total_tokens
    view.projects = sorted(projects.values(), key=lambda s: (-s.share, s.name))
    view.clients = sorted(clients.values(), key=lambda s: (-s.share, s.name))


def warnings(accounts: list[AccountView]) -> list[tuple[AccountView, WindowView]]:
    """The windows at or past the warning threshold (or that the provider itself flags as
    `allowed_warning` / `rejected`), still current."""
    return [(account, w) for account in accounts for w in account.windows if w.warning]


def quota_warnings(
    con: sqlite3.Connection, warn_at: float, now: datetime | None = None
) -> list[dict[str, Any]]:
    """`warnings` as plain dicts: what a notifier (the budgets issue) needs to say."""
    return [
        {
            "account": account.account,
            "provider": account.provider,
            "window": window.name,
            "utilisation": window.utilisation,
            "status": window.status,
            "resets_at": window.resets_at,
            "warn_at": warn_at,
        }
        for account, window in warnings(quota_view(con, now, warn_at))
    ]


def view_json(view: AccountView) -> dict[str, Any]:
    """The documented shape of one account in `quota --json` and `GET /v1/quota`."""
    return {
        "account": view.account,
        "provider": view.provider,
        "last_seen_at": view.last_seen_at,
        "windows": [
            {
                "name": w.name,
                "utilisation": w.utilisation,
                "resets_at": w.resets_at,
                "length_seconds": w.length_seconds,
                "status": w.status,
                "limit": w.limit,
                "remaining": w.remaining,
                "observed_at": w.observed_at,
                "expired": w.expired,
                "warning": w.warning,
                "since": w.since,
                "trend_per_hour": w.trend_per_hour,
                "full_at": w.full_at,
                "basis": w.basis,
                "projects": [_share_json(s, "project") for s in w.projects],
                "clients": [_share_json(s, "client") for s in w.clients],
            }
            for w in view.windows
        ],
    }


def _share_json(share: Share, key: str) -> dict[str, Any]:
    return {
        key: share.name,
        "requests": share.requests,
        "tokens": share.tokens,
        "value_nanousd": share.value_nanousd,
        "share": round(share.share, 6),
    }
