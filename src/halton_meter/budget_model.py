"""What a budget is: a name, a scope, a period in a time zone, an amount and thresholds.

Periods are calendar days, weeks (Monday to Monday), months or rolling N days, always cut at
local midnight in the budget's time zone (zoneinfo, so DST days are 23 or 25 hours long). A
window is [start, end) in UTC epoch seconds plus its local description, so every output can
say exactly where it begins and ends.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from fnmatch import translate
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = ("day", "week", "month", "rolling")
ACTIONS = ("warn", "block")
SCOPE_KEYS = ("project", "client", "provider", "model")
DEFAULT_THRESHOLDS = (50, 80, 100)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class BudgetProblem(ValueError):
    """One key of one `[[budgets]]` entry is wrong; config.py adds the file and line."""

    def __init__(self, index: int, key: str | None, problem: str) -> None:
        super().__init__(problem)
        self.index = index
        self.key = key
        self.problem = problem


def local_zone() -> tzinfo:
    """The user's time zone, by IANA name where the system says it (TZ, /etc/localtime), so
    DST changes are followed; otherwise the current fixed offset."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    return datetime.now().astimezone().tzinfo or UTC


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


@dataclass(frozen=True, slots=True)
class Window:
    """One period: [start, end) as UTC epoch seconds, with its local wall-clock edges."""

    start: float
    end: float
    local_start: datetime
    local_end: datetime

    def describe(self) -> str:
        zone = zone_name(self.local_start.tzinfo or UTC)
        return f"{self.local_start:%Y-%m-%d %H:%M} to {self.local_end:%Y-%m-%d %H:%M} {zone}"

    def to_json(self) -> dict[str, str]:
        return {
            "start": self.local_start.isoformat(),
            "end": self.local_end.isoformat(),
            "start_utc": _utc(self.start),
            "end_utc": _utc(self.end),
        }


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _midnight(day: date, zone: tzinfo) -> datetime:
    # A wall-clock midnight that does not exist (a DST jump at 00:00) folds forward by itself
    # when converted through UTC; zoneinfo handles the rest.
    naive = datetime(day.year, day.month, day.day)
    return naive.replace(tzinfo=zone)


def window_at(period: str, rolling_days: int, zone: tzinfo, when: float) -> Window:
    """The period that contains epoch second `when`."""
    today = datetime.fromtimestamp(when, zone).date()
    if period == "day":
        first, last = today, today + timedelta(days=1)
    elif period == "week":
        first = today - timedelta(days=today.weekday())
        last = first + timedelta(days=7)
    elif period == "month":
        first = today.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    else:  # rolling: today and the N-1 days before it
        first = today - timedelta(days=rolling_days - 1)
        last = today + timedelta(days=1)
    start, end = _midnight(first, zone), _midnight(last, zone)
    return Window(start.timestamp(), end.timestamp(), start, end)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which calls count: every condition given must match (AND); a condition is one glob or
    a list of globs (OR). No condition at all: every call."""

    project: tuple[str, ...] = ()
    client: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key in SCOPE_KEYS:
            globs = getattr(self, key)
            if globs:
                pattern = "|".join(f"(?:{translate(glob.lower())})" for glob in globs)
                self._compiled[key] = re.compile(pattern)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key in SCOPE_KEYS if getattr(self, key))

    def matches(
        self,
        project: str | None,
        client: tuple[str | None, ...],
        provider: str | None,
        model: str | None,
    ) -> bool | None:
        """True/False, or None when a condition names a fact not known (yet)."""
        unknown = False
        for key, pattern in self._compiled.items():
            if key == "client":
                values = [value.lower() for value in client if value]
                if not values:
                    unknown = True
                    continue
                if not any(pattern.match(value) for value in values):
                    return False
                continue
            value = {"project": project, "provider": provider, "model": model}[key]
            if value is None:
                unknown = True
                continue
            if not pattern.match(value.lower()):
                return False
        return None if unknown else True

    def describe(self) -> str:
        parts = [f"{key}={','.join(getattr(self, key))}" for key in self.keys]
        return " ".join(parts) or "all calls"

    def to_json(self) -> dict[str, list[str]]:
        return {key: list(getattr(self, key)) for key in self.keys}


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    amount_usd: float
    period: str = "month"
    rolling_days: int = 0
    scope: Scope = field(default_factory=Scope)
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    action: str = "warn"
    timezone: str | None = None  # IANA name; None: the user's local zone
    # The other kind of amount: a share of a subscription's quota window (budgets/quota_share.py)
    # instead of USD; e.g. quota_window = "unified-5h", quota_percent = 30.
    quota_window: str | None = None
    quota_percent: float | None = None

    @property
    def kind(self) -> str:
        return "quota_share" if self.quota_percent is not None else "usd"

    @property
    def limit_nanousd(self) -> int:
        return round(self.amount_usd * 1e9)

    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone) if self.timezone else local_zone()

    def window(self, when: float, zone: tzinfo | None = None) -> Window:
        return window_at(self.period, self.rolling_days, zone or self.zone(), when)

    def period_label(self) -> str:
        return f"rolling {self.rolling_days} days" if self.period == "rolling" else self.period

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "amount_usd": self.amount_usd,
            "period": self.period,
            "rolling_days": self.rolling_days or None,
            "scope": self.scope.to_json(),
            "thresholds": list(self.thresholds),
            "action": self.action,
            "timezone": self.timezone or zone_name(local_zone()),
            "kind": self.kind,
            "quota_window": self.quota_window,
            "quota_percent": self.quota_percent,
        }


# --- reading [[budgets]] -------------------------------------------------------------------

BUDGET_KEYS = (
    "name",
    "amount_usd",
    "period",
    "days",
    *SCOPE_KEYS,
    "thresholds",
    "action",
    "timezone",
    "quota_window",
    "quota_percent",
)


def _globs(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise ValueError('expected a glob like "acme*" or a list of them')
    return tuple(item.strip() for item in items)


def parse_budget(index: int, entry: Mapping[str, Any]) -> Budget:
    """One `[[budgets]]` table, checked key by key."""

    def fail(key: str | None, problem: str) -> BudgetProblem:
        return BudgetProblem(index, key, problem)

    for key in entry:
        if key not in BUDGET_KEYS:
            raise fail(key, f"unknown key (known: {', '.join(BUDGET_KEYS)})")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise fail("name", "needs a name: lowercase letters, digits, '.', '_', '-'")
    amount = entry.get("amount_usd")
    share = entry.get("quota_percent")
    window_glob = entry.get("quota_window")
    if share is not None or window_glob is not None:
        if amount is not None:
            raise fail("quota_percent", "a budget has amount_usd or quota_percent, not both")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 100:
            raise fail("quota_percent", f"expected a percentage of the window, got {share!r}")
        if not isinstance(window_glob, str) or not window_glob.strip():
            raise fail("quota_window", 'needs the window, e.g. quota_window = "unified-5h"')
        amount = 0.0
    elif isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        raise fail("amount_usd", f"expected an amount in USD above 0, got {amount!r}")
    period = entry.get("period", "month")
    if period not in PERIODS:
        raise fail("period", f"{period!r} is not one of {', '.join(PERIODS)}")
    days = entry.get("days", 0)
    if period == "rolling":
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise fail("days", "a rolling period needs days = N (1-366)")
    elif "days" in entry:
        raise fail("days", "only a rolling period takes days")
    scope: dict[str, tuple[str, ...]] = {}
    for key in SCOPE_KEYS:
        if key in entry:
            try:
                scope[key] = _globs(entry[key])
            except ValueError as error:
                raise fail(key, str(error)) from None
    thresholds = entry.get("thresholds", list(DEFAULT_THRESHOLDS))
    if (
        not isinstance(thresholds, list)
        or not thresholds
        or not all(
            isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= 1000 for t in thresholds
        )
    ):
        raise fail("thresholds", "expected a list of percentages like [50, 80, 100]")
    action = entry.get("action", "warn")
    if action not in ACTIONS:
        raise fail("action", f"{action!r} is not one of {', '.join(ACTIONS)}")
    zone = entry.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise fail("timezone", f"{zone!r} is not a time zone like Europe/Paris") from None
    return Budget(
        name=name,
        amount_usd=float(amount),
        period=period,
        rolling_days=days if period == "rolling" else 0,
        scope=Scope(**scope),  # type: ignore[arg-type]
        thresholds=tuple(sorted(set(thresholds))),
        action=action,
        timezone=zone,
        quota_window=window_glob,
        quota_percent=None if share is None else float(share),
    )


def parse_budgets(raw: Any) -> tuple[Budget, ...]:
    if not isinstance(raw, list):
        raise BudgetProblem(0, None, "expected an array of tables: [[budgets]]")
    budgets: list[Budget] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise BudgetProblem(index, None, "expected a table")
        budget = parse_budget(index, entry)
        if any(other.name == budget.name for other in budgets):
            raise BudgetProblem(index, "name", f"another budget is already named {budget.name!r}")
        budgets.append(budget)
    return tuple(budgets)


# A projection is only made once this much of the period has passed (a forecast from the
# first minutes of a month is noise).
MIN_FORECAST_SECONDS = 3600.0


def forecast(spent: int, window: Window, now: float) -> int | None:
    """Projected nano-USD at the window's end at the pace so far; None too early to tell."""
    elapsed = now - window.start
    if elapsed < MIN_FORECAST_SECONDS:
        return None
    remaining = max(0.0, window.end - now)
    return round(spent + spent / elapsed * remaining)
