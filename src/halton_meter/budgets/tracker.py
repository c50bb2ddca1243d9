"""The daemon's running totals, and the O(1) answer to "is this call blocked?".

Seeded from the ledger at start (budgets/spent.py), then updated by the ledger writer thread as
it builds each row (`add`), so the hot path never reads the database. The addon asks `check`
for each metered call: with nothing over its limit that is one attribute read; otherwise it is
one dict lookup per call (scope matches are cached per (project, client, provider, model)),
then a look at each blocking budget that matches. Whenever the state is not known (the ledger
could not be read, anything raised) the answer is "go on": fail open, logged.

Quota-share budgets (budgets/quota_share.py) are read from the quota windows the meter records:
the keeper thread re-reads them every QUOTA_REFRESH_SECONDS, and every tick while rows are
being counted; each threshold fires once per window (the window's reset is in its key, kept in
the alert file across restarts), and a budget with `action = "block"` blocks its scope's calls
to the window's provider until the window resets.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from halton_meter.budget_model import Budget, Window, forecast
from halton_meter.budgets.quota_share import quota_share_views
from halton_meter.budgets.spent import open_ledger, spent_in_windows
from halton_meter.ledger.row import LedgerRow
from halton_meter.runstate import write_atomic

log = logging.getLogger(__name__)

HOLDS_FILE = "budget-holds.json"  # pause / allow --for, written by the CLI
ALERTS_FILE = "budget-alerts.json"  # thresholds fired per period, written by the daemon
STATE_FILE = "budget-state.json"  # the daemon's live view, for `status` and `budget list`
CACHE_LIMIT = 4096
QUOTA_REFRESH_SECONDS = 15.0  # quota-share budgets are re-read at least this often
QUOTA_BUSY_SECONDS = 3.0  # and at every tick for this long after a row was counted
QUOTA_RESET_SLACK = 600  # resets this close are one window (Codex's are relative: they drift)
_MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')


@dataclass(frozen=True, slots=True)
class Crossing:
    """A threshold reached for the first time in a period: what the alerts deliver."""

    budget: Budget
    threshold: int
    spent_nanousd: int
    window: Window
    key: str
    # A quota-share budget's window (quota_share.py's window view); None for a USD budget.
    quota: dict[str, Any] | None = None

    def message(self) -> str:
        if self.quota is not None:
            used, resets = _quota_used(self.budget, self.quota), self.window.local_end
            return (
                f"Budget {self.budget.name!r} at {self.threshold}%: {used} "
                f"(resets {resets:%Y-%m-%d %H:%M} {resets.tzname()})"
            )
        spent, limit = self.spent_nanousd / 1e9, self.budget.amount_usd
        return (
            f"Budget {self.budget.name!r} at {self.threshold}%: ${spent:,.2f} of ${limit:,.2f} "
            f"({self.budget.period_label()}, {self.window.describe()})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget.name,
            "threshold": self.threshold,
            "spent_usd": round(self.spent_nanousd / 1e9, 6),
            "limit_usd": self.budget.amount_usd,
            "period": self.budget.period_label(),
            "window": self.window.to_json(),
            "action": self.budget.action,
            "message": self.message(),
            **({"quota": self.quota} if self.quota is not None else {}),
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is answered by the meter instead of the provider."""

    budget: Budget
    spent_nanousd: int
    window: Window
    quota: dict[str, Any] | None = None  # a quota-share budget's fullest window

    def message(self) -> str:
        name = self.budget.name
        spent, limit = self.spent_nanousd / 1e9, self.budget.amount_usd
        resets = self.window.local_end
        used = (
            f"${spent:,.2f} of ${limit:,.2f} ({self.budget.period_label()}, "
            f"scope {self.budget.scope.describe()})"
            if self.quota is None
            else _quota_used(self.budget, self.quota)
        )
        return (
            f"Halton Meter budget '{name}' is used up: {used}. It resets "
            f"{resets:%Y-%m-%d %H:%M} {resets.tzname()}. To go on now: "
            f"`halton-meter budget allow {name} --for 1h`, `halton-meter budget pause {name}`, "
            + (
                f"or raise it with `halton-meter budget edit {name} --amount N`."
                if self.quota is None
                else "or raise its quota_percent in config.toml."
            )
        )


def _quota_used(budget: Budget, window: dict[str, Any]) -> str:
    """E.g. 'scope project=acme used 35.0% of the unified-5h window of its anthropic quota:
    116.7% of its 30% share'."""
    return (
        f"scope {budget.scope.describe()} used {float(window['scope_used']) * 100:.1f}% of the "
        f"{window['window']} window of its {window['provider']} quota: {window['percent']}% of "
        f"its {budget.quota_percent:g}% share"
    )


@dataclass(slots=True)
class _Live:
    budget: Budget
    zone: tzinfo
    window: Window
    spent: int = 0
    fired: set[int] = field(default_factory=set)
    blocked_calls: int = 0
    # Quota-share budgets: the fullest matching window, and the whole view (quota_share.py).
    quota: dict[str, Any] | None = None
    quota_view: dict[str, Any] | None = None


def _key(budget: Budget, window: Window, threshold: int) -> str:
    return f"{budget.name}|{window.to_json()['start_utc']}|{threshold}"


def read_holds(home: Path) -> dict[str, Any]:
    """{"paused": [names], "allow_until": {name: epoch}}; empty when absent or unreadable."""
    try:
        data = json.loads((home / HOLDS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"paused": [], "allow_until": {}}
    except (OSError, ValueError) as error:
        log.warning("budgets: %s unreadable (%s); nothing blocks until it is", HOLDS_FILE, error)
        return {"paused": [], "allow_until": {}, "unreadable": True}
    if not isinstance(data, dict):
        log.warning("budgets: %s is not a JSON object; nothing blocks until it is", HOLDS_FILE)
        return {"paused": [], "allow_until": {}, "unreadable": True}
    return {
        "paused": list(data.get("paused", [])),
        "allow_until": dict(data.get("allow_until", {})),
    }


def write_holds(home: Path, holds: dict[str, Any]) -> None:
    write_atomic(home / HOLDS_FILE, json.dumps(holds, indent=2, sort_keys=True))


def read_alert_failures(home: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((home / ALERTS_FILE).read_text(encoding="utf-8"))
        return list(data.get("failures", []))
    except (OSError, ValueError, AttributeError):
        return []


def read_fired(home: Path) -> dict[str, float]:
    try:
        data = json.loads((home / ALERTS_FILE).read_text(encoding="utf-8"))
        return {str(k): float(v) for k, v in data.get("fired", {}).items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as error:
        # Unreadable: better one repeated alert than a lost one.
        log.warning("budgets: %s unreadable (%s); alerts may repeat once", ALERTS_FILE, error)
        return {}


class BudgetTracker:
    def __init__(
        self,
        budgets: Sequence[Budget],
        home: Path,
        ledger: Path,
        on_crossing: Callable[[Crossing], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._home = home
        self._ledger = ledger
        self._on_crossing = on_crossing
        self._clock = clock
        self._lock = threading.Lock()  # writer thread vs keeper thread; never the hot path
        self._lives: tuple[_Live, ...] = ()
        self._cache: dict[tuple[Any, ...], tuple[_Live, ...]] = {}
        self._holds: dict[str, Any] = {"paused": [], "allow_until": {}}
        self._holds_mtime: float | None = None
        self._fired = read_fired(home)
        # What the hot path reads: the budgets that block right now. Replaced, never mutated.
        self.blocking: tuple[_Live, ...] = ()
        self.known = False  # False: the ledger was not read; every call goes through
        self.refused = 0
        self._budgets = tuple(b for b in budgets if b.kind == "usd")
        self._shares = tuple(b for b in budgets if b.kind == "quota_share")
        self._quota_lives: tuple[_Live, ...] = ()
        self._quota_due = 0.0  # when the quota windows are next re-read
        self._last_add = 0.0  # when the writer last counted a row

    # --- start, reload, period changes (keeper thread) ----------------------------------------

    def seed(self, budgets: Sequence[Budget] | None = None) -> bool:
        """Read each budget's spend in its window from the ledger. False (and fail open) when
        the ledger cannot be read; the keeper tries again."""
        if budgets is not None:
            self._budgets = tuple(b for b in budgets if b.kind == "usd")
            self._shares = tuple(b for b in budgets if b.kind == "quota_share")
        now = self._clock()
        lives = []
        for budget in self._budgets:
            zone = budget.zone()
            lives.append(_Live(budget, zone, budget.window(now, zone)))
        try:
            con = open_ledger(self._ledger)
            try:
                totals = spent_in_windows(con, [(live.budget, live.window) for live in lives])
            finally:
                con.close()
        except Exception as error:
            self.known = False
            self.blocking = ()
            log.warning(
                "budgets: spend unknown, the ledger could not be read (%s); calls go through "
                "unchecked (fail open) until it can be",
                error,
            )
            return False
        with self._lock:
            for live, total in zip(lives, totals, strict=True):
                live.spent = total
            self._lives = tuple(lives)
            self._cache = {}
            self.known = True
            for live in lives:
                self._crossings(live, 0)
            self._quota_lives = tuple(
                _Live(b, zone := b.zone(), b.window(now, zone)) for b in self._shares
            )
            self._refresh()
        if self._quota_lives:
            self.refresh_quota()
        return True

    def refresh_quota(self) -> None:
        """Re-read the quota windows for the quota-share budgets (keeper thread): each
        budget's fullest window decides its state; each window crosses its thresholds once.
        The ledger unreadable: none of them blocks (fail open)."""
        now = self._clock()
        self._quota_due = now + QUOTA_REFRESH_SECONDS
        lives = self._quota_lives
        try:
            con = open_ledger(self._ledger)
            try:
                found = quota_share_views(
                    con, [live.budget for live in lives], datetime.fromtimestamp(now, UTC)
                )
            finally:
                con.close()
        except Exception as error:
            log.warning("budgets: quota windows unreadable (%s); quota shares block nothing", error)
            with self._lock:
                for live in lives:
                    live.quota = None
                self._refresh()
            return
        with self._lock:
            for live, view in zip(lives, found, strict=True):
                live.quota_view = view
                windows = view["windows"]
                for window in windows:
                    self._quota_crossings(live, window, now)
                top = max(windows, key=lambda w: float(w["percent"]), default=None)
                live.quota = top
                if top is not None:
                    live.window = _quota_window(top, live.zone, now)
            self._refresh()

    def _quota_crossings(self, live: _Live, window: dict[str, Any], now: float) -> None:
        reset = _quota_reset_key(window)
        for threshold in live.budget.thresholds:
            if float(window["percent"]) < threshold:
                continue
            stem = f"{live.budget.name}|{window['account']}|{window['window']}|"
            keys = [
                f"{stem}{reset + d}|{threshold}" for d in (0, -QUOTA_RESET_SLACK, QUOTA_RESET_SLACK)
            ]
            if any(key in self._fired for key in keys):
                continue  # fired before (perhaps before a restart)
            self._fired[keys[0]] = now
            crossing = Crossing(
                live.budget, threshold, 0, _quota_window(window, live.zone, now), keys[0], window
            )
            log.warning("%s", crossing.message())
            if self._on_crossing is not None:
                self._on_crossing(crossing)

    def tick(self) -> None:
        """Once a second: windows that ended move on (a rolling one is re-read), pauses and
        allowances are re-read, the blocking set is worked out again."""
        if not self.known:
            self.seed()
            return
        now = self._clock()
        if self._quota_lives and (
            now >= self._quota_due or now - self._last_add < QUOTA_BUSY_SECONDS
        ):
            self.refresh_quota()
        moved = [live for live in self._lives if now >= live.window.end]
        if any(live.budget.period == "rolling" for live in moved):
            self.seed()
        elif moved:
            with self._lock:
                for live in moved:
                    self._roll(live, now)
        self._read_holds()
        with self._lock:
            self._refresh()

    @staticmethod
    def _roll(live: _Live, when: float) -> None:
        """A calendar period ended: the next one starts from nothing. (A rolling one is read
        again from the ledger by `tick`; its rows meanwhile still count.)"""
        live.window = live.budget.window(when, live.zone)
        live.spent = 0
        live.fired = set()
        live.blocked_calls = 0

    def _read_holds(self) -> None:
        try:
            mtime: float | None = (self._home / HOLDS_FILE).stat().st_mtime
        except OSError:
            mtime = None
        if mtime != self._holds_mtime:
            self._holds_mtime = mtime
            self._holds = read_holds(self._home)

    def _held(self, name: str, now: float) -> bool:
        if name in self._holds["paused"]:
            return True
        until = self._holds["allow_until"].get(name)
        return isinstance(until, int | float) and now < until

    def _refresh(self) -> None:
        now = self._clock()
        if self._holds.get("unreadable"):
            # Which budgets the user paused is not known: block nothing (fail open).
            self.blocking = ()
            return
        self.blocking = tuple(
            live
            for live in self._lives
            if live.budget.action == "block"
            and live.spent >= live.budget.limit_nanousd
            and not self._held(live.budget.name, now)
        ) + tuple(
            live
            for live in self._quota_lives
            if live.budget.action == "block"
            and live.quota is not None
            and float(live.quota["percent"]) >= 100
            and now < live.window.end
            and not self._held(live.budget.name, now)
        )

    # --- the ledger writer thread ---------------------------------------------------------

    def add(self, row: LedgerRow) -> None:
        """Count a freshly built row. O(budgets matching its scope)."""
        self._last_add = self._clock()  # quota-share budgets: re-read the windows soon
        if row.billing == "subscription" or not row.cost_nanousd:
            return
        try:
            started = _epoch(row.requested_at)
            key = (row.project, row.client_process, row.user_agent, row.provider, row.model)
            with self._lock:
                for live in self._matching(key):
                    if started >= live.window.end and live.budget.period != "rolling":
                        self._roll(live, started)  # the first row of a new period
                    if started < live.window.start:
                        continue  # a row from before the period (a long call, a resend)
                    before = live.spent
                    live.spent += row.cost_nanousd
                    self._crossings(live, before)
                    if live.budget.action == "block" and before < live.budget.limit_nanousd:
                        self._refresh()
        except Exception:
            log.exception("budgets: a row could not be counted")

    def _crossings(self, live: _Live, before: int) -> None:
        limit = live.budget.limit_nanousd
        for threshold in live.budget.thresholds:
            line = limit * threshold // 100
            if live.spent < line or threshold in live.fired:
                continue
            live.fired.add(threshold)
            key = _key(live.budget, live.window, threshold)
            if key in self._fired:
                continue  # fired before a restart
            self._fired[key] = self._clock()
            crossing = Crossing(live.budget, threshold, live.spent, live.window, key)
            log.warning("%s", crossing.message())
            if self._on_crossing is not None:
                self._on_crossing(crossing)

    def _matching(self, key: tuple[Any, ...]) -> tuple[_Live, ...]:
        found = self._cache.get(key)
        if found is None:
            project, process, agent, provider, model = key
            found = tuple(
                live
                for live in self._lives
                if live.budget.scope.matches(project, (process, agent), provider, model)
            )
            if len(self._cache) >= CACHE_LIMIT:
                self._cache = {}
            self._cache[key] = found
        return found

    # --- the addon (mitmproxy's event loop) ---------------------------------------------------

    def check(
        self,
        provider: str,
        project: str | None,
        process: str | None,
        user_agent: str | None,
        body: bytes | None,
        model: str | None = None,
    ) -> Refusal | None:
        """The budget that refuses this call, or None. Never raises: any doubt lets it go."""
        blocking = self.blocking
        if not blocking:
            return None
        try:
            now = self._clock()
            for live in blocking:
                if now >= live.window.end or self._held(live.budget.name, now):
                    continue  # the period just ended or a hold just began: not blocked
                if live.quota is not None and provider != live.quota["provider"]:
                    continue  # a quota share limits calls to its window's provider only
                if live.budget.scope.model and model is None and body:
                    found = _MODEL_RE.search(body, 0, 65536)
                    model = found.group(1).decode("utf-8", "replace") if found else None
                verdict = live.budget.scope.matches(project, (process, user_agent), provider, model)
                if verdict is None:
                    log.info(
                        "budgets: %r may apply but the call's %s is not known yet; let through",
                        live.budget.name,
                        "/".join(live.budget.scope.keys),
                    )
                    continue
                if verdict:
                    live.blocked_calls += 1
                    self.refused += 1
                    return Refusal(live.budget, live.spent, live.window, live.quota)
        except Exception:
            log.exception("budgets: check failed; the call goes through (fail open)")
        return None

    # --- what status, the API and the CLI show ------------------------------------------------

    def views(self) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            lives = list(self._lives)
        blocking = {id(live) for live in self.blocking}
        return [
            budget_view(
                live.budget,
                live.window,
                live.spent,
                now,
                blocking=id(live) in blocking,
                held=self._hold_text(live.budget.name, now),
                blocked_calls=live.blocked_calls,
            )
            for live in lives
        ] + [self._quota_view(live, now, blocking) for live in self._quota_lives]

    def _quota_view(self, live: _Live, now: float, blocking: set[int]) -> dict[str, Any]:
        view = live.quota_view or {**live.budget.to_json(), "windows": [], "percent": None}
        state = view.get("state", "ok")
        return {
            **view,
            "state": "blocking" if id(live) in blocking else state,
            "spent_usd": None,
            "window": live.window.to_json() if live.quota is not None else None,
            "hold": self._hold_text(live.budget.name, now),
            "blocked_calls": live.blocked_calls,
        }

    def _hold_text(self, name: str, now: float) -> str | None:
        if name in self._holds["paused"]:
            return "paused"
        until = self._holds["allow_until"].get(name)
        if isinstance(until, int | float) and now < until:
            return f"allowed until {time.strftime('%Y-%m-%d %H:%M', time.localtime(until))}"
        return None

    def api_view(self) -> dict[str, Any]:
        """`GET /v1/budgets`: the live view plus alerts that could not be delivered."""
        failures = read_alert_failures(self._home)
        return {"known": self.known, "budgets": self.views(), "alert_failures": failures}

    def write_state(self) -> None:
        """The live view for `status` and `budget list` (they run in other processes)."""
        state = {"written_at": self._clock(), **self.api_view()}
        write_atomic(self._home / STATE_FILE, json.dumps(state, indent=2))


def budget_view(
    budget: Budget,
    window: Window,
    spent: int,
    now: float,
    *,
    blocking: bool | None = None,
    held: str | None = None,
    blocked_calls: int = 0,
) -> dict[str, Any]:
    limit = budget.limit_nanousd
    projected = forecast(spent, window, now)
    percent = round(spent * 100 / limit, 1) if limit else None
    reached = [t for t in budget.thresholds if spent >= limit * t // 100]
    if blocking is None:
        blocking = budget.action == "block" and spent >= limit and held is None
    view: dict[str, Any] = {
        **budget.to_json(),
        "window": window.to_json(),
        "window_text": window.describe(),
        "spent_usd": round(spent / 1e9, 6),
        "percent": percent,
        "thresholds_reached": reached,
        "state": "blocking" if blocking else ("over" if spent >= limit else "ok"),
        "hold": held,
        "blocked_calls": blocked_calls,
        "forecast_usd": None if projected is None else round(projected / 1e9, 2),
        "forecast_text": forecast_text(budget, window, projected),
    }
    return view


def forecast_text(budget: Budget, window: Window, projected: int | None) -> str:
    if projected is None:
        return "too early in the period for a forecast"
    last_day = window.local_end.timestamp() - 1
    end = datetime.fromtimestamp(last_day, window.local_end.tzinfo).strftime("%d %b").lstrip("0")
    return f"at this pace: ${projected / 1e9:,.2f} of ${budget.amount_usd:,.2f} by {end}"


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _quota_reset_key(window: dict[str, Any]) -> int:
    resets = window.get("resets_at")
    if not resets:
        return 0
    return round(_epoch(str(resets)) / QUOTA_RESET_SLACK) * QUOTA_RESET_SLACK


def _quota_window(window: dict[str, Any], zone: tzinfo, now: float) -> Window:
    """A quota window as a budget window: from its start (when known) to its reset; one
    without a reset lasts until the next re-read."""
    end = (
        _epoch(str(window["resets_at"]))
        if window.get("resets_at")
        else now + 2 * QUOTA_REFRESH_SECONDS
    )
    start = _epoch(str(window["since"])) if window.get("since") else min(now, end)
    return Window(
        start, end, datetime.fromtimestamp(start, zone), datetime.fromtimestamp(end, zone)
    )
