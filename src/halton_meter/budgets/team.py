"""Team budgets on a machine: the budgets a team server holds for this machine's workspace,
its projects or this machine, fetched with each sync, and applied like local ones.

A team budget's total here is the server's spent figure (every machine's synced rows, in the
server's price) plus this machine's own spend not synced yet (in its own price): rows the
ledger writer built since (`add`, in memory) and, at each sync, the rows the ledger holds past
the sync position. A row is counted once: pending rows are kept by id, and dropped only once
the ledger says the sync position has passed them (they are then in the server's figure).

What no machine can see is the other machines' spend since their last sync: a `block` budget
stops calls on every machine at most two sync intervals (theirs to send, ours to fetch) plus one
sync round after the team's total crossed it, and the overshoot is what the team spent
meanwhile (docs/team-server.md).

Nothing here reads the database or the network on the hot path: `check` is the tracker's
O(budgets) look at the budgets that block right now. When the server cannot be reached, the
last figure it gave stays, with this machine's own spend on top, for STALE_AFTER_SECONDS; past
that, or when a period ends, the budget stops blocking until the server gives a fresh figure
(fail open).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from halton_meter.budget_model import Budget, BudgetProblem, Window, parse_budget
from halton_meter.budgets.tracker import _MODEL_RE, BudgetTracker, Refusal
from halton_meter.cloud.credentials import Credentials
from halton_meter.cloud.http import TransportError, request_json
from halton_meter.ledger.row import LedgerRow
from halton_meter.runstate import write_atomic

log = logging.getLogger(__name__)

STATE_FILE = "team-budget-state.json"  # what this machine applies, for `status` and people
# A team block rests on the server's figure; once the last one is this old (the server
# unreachable, the sync paused, the token revoked) an admin's raise or pause could not reach
# this machine, so the block is lifted (fail open) until a fetch succeeds again. Long enough
# for a server restart or a network blip; short enough that a stale block costs an afternoon
# at most, not the rest of the month.
STALE_AFTER_SECONDS = 15 * 60
_MODEL_KEYS = ("definition", "window_start", "window_end", "spent_nanousd")


@dataclass(frozen=True, slots=True)
class TeamRefusal(Refusal):
    """A call refused by a team budget: the message says it is the team's, and who can change
    it (the machine's own `budget allow` does not apply)."""

    workspace: str = ""
    scope_text: str = ""

    def message(self) -> str:
        name = self.budget.name
        spent, limit = self.spent_nanousd / 1e9, self.budget.amount_usd
        resets = self.window.local_end
        return (
            f"Halton Meter team budget '{name}' (workspace {self.workspace}) is used up: "
            f"${spent:,.2f} of ${limit:,.2f} across the team's machines "
            f"({self.budget.period_label()}, {self.scope_text}). It resets "
            f"{resets:%Y-%m-%d %H:%M} {resets.tzname()}. It is set on the team server: a "
            f"workspace admin can raise it (`halton-meter server budget-edit {name} --amount N`) "
            f"or make it warn only (`--warn-only`)."
        )


@dataclass(frozen=True, slots=True)
class _Pending:
    """One of this machine's rows the server has not got yet."""

    cost: int
    started: float
    project: str | None
    provider: str | None
    model: str | None


@dataclass(slots=True)
class _TeamLive:
    budget: Budget
    workspace: str
    scope_text: str
    window: Window
    server_spent: int
    fetched_at: float
    local: int = 0  # this machine's pending spend in scope and window
    blocked_calls: int = 0
    stale_logged: bool = False
    matches: dict[tuple[Any, ...], bool] = field(default_factory=dict)

    @property
    def spent(self) -> int:
        return self.server_spent + self.local

    def covers(self, pending: _Pending) -> bool:
        if not self.window.start <= pending.started < self.window.end:
            return False
        key = (pending.project, pending.provider, pending.model)
        found = self.matches.get(key)
        if found is None:
            found = bool(
                self.budget.scope.matches(pending.project, ("*",), pending.provider, pending.model)
            )
            self.matches[key] = found
        return found


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _window(budget: Budget, start: float, end: float) -> Window:
    zone = budget.zone()
    return Window(
        start, end, datetime.fromtimestamp(start, zone), datetime.fromtimestamp(end, zone)
    )


class TeamBudgets:
    """The team budgets this machine applies. `add` runs on the ledger writer thread, `refresh`
    on the sync thread, `check` on the proxy's event loop; a lock guards the first two."""

    def __init__(self, home: Path, clock: Callable[[], float] = time.time) -> None:
        self._home = home
        self._clock = clock
        self._lock = threading.Lock()
        self._lives: tuple[_TeamLive, ...] = ()
        self._pending: dict[str, _Pending] = {}
        self.blocking: tuple[_TeamLive, ...] = ()  # what the hot path reads; replaced whole
        self.refused = 0
        self.last_fetch: float | None = None
        self.last_problem: str | None = None

    # --- the ledger writer thread ---------------------------------------------------------

    def add(self, row: LedgerRow) -> None:
        """Count a freshly built row as pending until the sync has sent it."""
        if row.billing == "subscription" or not row.cost_nanousd:
            return
        try:
            pending = _Pending(
                row.cost_nanousd, _epoch(row.requested_at), row.project, row.provider, row.model
            )
            with self._lock:
                # Only rows some team budget counts are kept (none while not paired); a budget
                # added or widened later finds its rows in the ledger at the next fetch.
                covering = [live for live in self._lives if live.covers(pending)]
                if not covering or row.id in self._pending:
                    return
                self._pending[row.id] = pending
                for live in covering:
                    live.local += pending.cost
                self._refresh()
        except Exception:
            log.exception("team budgets: a row could not be counted")

    # --- the sync thread ------------------------------------------------------------------

    def refresh(self, con: sqlite3.Connection, credentials: Credentials | None) -> None:
        """After a sync that caught up: fetch the budgets covering this machine with the team's
        figures, then settle which of this machine's rows the server has (they are in its
        figure). No credentials (not paired, or disconnected): no team budget applies."""
        if credentials is None:
            if self._lives:
                self.update([], con)
            return
        try:
            status, answer = request_json(
                "GET",
                f"{credentials.server_url}/v1/machine/budgets",
                token=credentials.token,
                timeout=10,
            )
        except TransportError as error:
            self._problem(f"server unreachable: {error}")
            return
        if status == 404:  # a server from before team budgets: nothing to apply
            self.update([], con)
            return
        if status != 200 or not isinstance(answer.get("budgets"), list):
            self._problem(f"HTTP {status}: {answer.get('error', answer)}")
            return
        self.update(answer["budgets"], con)

    def _stale(self, live: _TeamLive) -> None:
        """Log once per figure that a block was lifted because its figure is too old."""
        if live.stale_logged:
            return
        live.stale_logged = True
        log.warning(
            "team budget %r: the server's figure is %d min old (%s); its block is lifted until "
            "the next fetch (fail open)",
            live.budget.name,
            (self._clock() - live.fetched_at) // 60,
            self.last_problem or "no fetch since",
        )

    def _problem(self, problem: str) -> None:
        if problem != self.last_problem:
            log.warning("team budgets not fetched (%s); the last figures stay", problem)
        self.last_problem = problem

    def update(self, fetched: list[dict[str, Any]], con: sqlite3.Connection) -> None:
        """Apply what the server sent. `con`: the ledger, read for the rows not synced yet."""
        now = self._clock()
        lives = []
        for item in fetched:
            try:
                lives.append(_live(item, now))
            except (KeyError, TypeError, ValueError, BudgetProblem) as error:
                log.warning("team budgets: one not understood (%s); it is not applied", error)
        position = int(
            con.execute("SELECT synced_rowid FROM cloud_sync WHERE id = 1").fetchone()[0]
        )
        unsynced = {
            row[0]: _Pending(int(row[2]), _epoch(row[1]), row[3], row[4], row[5])
            for row in con.execute(
                "SELECT id, requested_at, cost_nanousd, project, provider, model FROM requests "
                "WHERE rowid > ? AND cost_nanousd > 0 AND billing IS NOT 'subscription'",
                (position,),
            )
        }
        with self._lock:
            # Rows counted by `add` that the ledger does not show past the position: sent
            # (rowid at or before it: drop) or not committed yet (absent: keep).
            others = [i for i in self._pending if i not in unsynced]
            sent: set[str] = set()
            for start in range(0, len(others), 500):
                chunk = others[start : start + 500]
                marks = ",".join("?" * len(chunk))
                sent.update(
                    row[0]
                    for row in con.execute(
                        f"SELECT id FROM requests WHERE id IN ({marks}) AND rowid <= ?",
                        (*chunk, position),
                    )
                )
            pending = {i: p for i, p in self._pending.items() if i not in sent}
            pending.update(unsynced)
            self._pending = {
                i: p for i, p in pending.items() if any(live.covers(p) for live in lives)
            }
            pending = self._pending
            for live in lives:
                live.local = sum(p.cost for p in pending.values() if live.covers(p))
                previous = next((o for o in self._lives if o.budget.name == live.budget.name), None)
                if previous is not None and previous.window.start == live.window.start:
                    live.blocked_calls = previous.blocked_calls
            self._lives = tuple(lives)
            self._refresh()
            self.last_fetch, self.last_problem = now, None
        self.write_state()

    def _refresh(self) -> None:
        now = self._clock()
        self.blocking = tuple(
            live
            for live in self._lives
            if live.budget.action == "block"
            and live.window.start <= now < live.window.end
            and live.spent >= live.budget.limit_nanousd
        )

    # --- the addon (mitmproxy's event loop) -----------------------------------------------

    def check(
        self,
        provider: str,
        project: str | None,
        process: str | None,
        user_agent: str | None,
        body: bytes | None,
        model: str | None = None,
    ) -> Refusal | None:
        """The team budget that refuses this call, or None. Never raises."""
        blocking = self.blocking
        if not blocking:
            return None
        try:
            now = self._clock()
            for live in blocking:
                if now >= live.window.end:
                    continue  # the period ended: the next one's figure comes with the sync
                if now - live.fetched_at > STALE_AFTER_SECONDS:
                    self._stale(live)
                    continue
                if live.budget.scope.model and model is None and body:
                    model = _model_of(body)
                verdict = live.budget.scope.matches(project, (process, user_agent), provider, model)
                if verdict:
                    live.blocked_calls += 1
                    self.refused += 1
                    return TeamRefusal(
                        live.budget,
                        live.spent,
                        live.window,
                        workspace=live.workspace,
                        scope_text=live.scope_text,
                    )
        except Exception:
            log.exception("team budgets: check failed; the call goes through (fail open)")
        return None

    # --- what people see ------------------------------------------------------------------

    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            lives = list(self._lives)
        blocking = {id(live) for live in self.blocking}
        return [
            {
                **live.budget.to_json(),
                "team": True,
                "workspace": live.workspace,
                "scope_text": live.scope_text,
                "window": live.window.to_json(),
                "server_spent_nanousd": live.server_spent,
                "unsynced_nanousd": live.local,
                "server_spent_usd": round(live.server_spent / 1e9, 6),
                "unsynced_usd": round(live.local / 1e9, 6),
                "spent_usd": round(live.spent / 1e9, 6),
                "state": "blocking"
                if id(live) in blocking
                else ("over" if live.spent >= live.budget.limit_nanousd else "ok"),
                "blocked_calls": live.blocked_calls,
                "fetched_at": live.fetched_at,
            }
            for live in lives
        ]

    def write_state(self) -> None:
        state = {
            "written_at": self._clock(),
            "last_fetch": self.last_fetch,
            "last_problem": self.last_problem,
            "budgets": self.views(),
        }
        try:
            write_atomic(self._home / STATE_FILE, json.dumps(state, indent=2))
        except OSError as error:
            log.warning("team budgets: %s not written (%s)", STATE_FILE, error)


def read_team_state(home: Path) -> list[dict[str, Any]]:
    """The team budgets the daemon applies, as it last wrote them (empty: none, or unknown)."""
    try:
        state = json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
        return list(state.get("budgets", []))
    except (OSError, ValueError, AttributeError):
        return []


def _live(item: dict[str, Any], now: float) -> _TeamLive:
    definition = dict(item["definition"])
    definition.pop("machine", None)  # the server sent only the budgets covering this machine
    budget = parse_budget(0, definition)
    window = _window(budget, float(item["window_start"]), float(item["window_end"]))
    return _TeamLive(
        budget,
        str(item.get("workspace", "")),
        str(item.get("scope_text", "")),
        window,
        int(item["spent_nanousd"]),
        now,
    )


def _model_of(body: bytes) -> str | None:
    found = _MODEL_RE.search(body, 0, 65536)
    return found.group(1).decode("utf-8", "replace") if found else None


class BudgetGate:
    """What the addon asks before a call: this machine's budgets, then the team's. `blocking`
    stays two attribute reads while nothing blocks."""

    def __init__(self, local: BudgetTracker, team: TeamBudgets) -> None:
        self.local = local
        self.team = team

    @property
    def blocking(self) -> bool:
        return bool(self.local.blocking) or bool(self.team.blocking)

    def check(
        self,
        provider: str,
        project: str | None,
        process: str | None,
        user_agent: str | None,
        body: bytes | None,
        model: str | None = None,
    ) -> Refusal | None:
        return self.local.check(provider, project, process, user_agent, body, model) or (
            self.team.check(provider, project, process, user_agent, body, model)
        )
