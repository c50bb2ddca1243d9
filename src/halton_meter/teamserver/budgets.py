"""Team budgets: the budgets of a machine's `[[budgets]]`, defined on the team server for a
workspace, its projects (globs) or its machines (names or ids, globs), and evaluated on the
server's totals.

A team budget is the same table a machine's config.toml holds (read by the same parser,
budget_model.py), plus `machine` globs and where its alerts go. Its time zone is explicit
(UTC unless given), so the server and every machine cut the period at the same instant.

Spend in a window is read from the daily rollups for the whole UTC days inside it and from the
ledger for the partial days at its edges (a budget in another time zone than UTC), in the
server's price; subscription calls never count as money. Each threshold fires once per period
however many workers evaluate at once: the crossing is a row of `team_budget_alerts`, and only
the worker whose INSERT made it delivers the alert (log line, then the webhook, retried; every
attempt is recorded and shown).

Machines fetch the budgets that concern them with their sync (`GET /v1/budgets/machine`), each
with the server's spent figure; a machine adds its own not-yet-synced spend to it and refuses
calls once a `block` budget is used up (budgets/team.py on the machine).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import translate
from functools import lru_cache
from typing import Any

import psycopg

from halton_meter.budget_model import (
    Budget,
    BudgetProblem,
    Window,
    forecast,
    parse_budget,
)

Connection = psycopg.Connection[Any]
log = logging.getLogger(__name__)

# The same signature as a machine's webhook (budgets/alerts.py): HMAC-SHA256 of the body.
SIGNATURE_HEADER = "X-Halton-Signature"
WEBHOOK_FORMATS = ("plain", "chat")
RETRY_SECONDS = (1.0, 4.0, 15.0)
TEAM_KEYS = ("machine", "webhook_url", "webhook_format", "webhook_secret")


class TeamBudgetError(ValueError):
    """A team budget that cannot be stored; the message names the key."""


@dataclass(frozen=True, slots=True)
class TeamBudget:
    """One workspace's budget: the machine budget's fields plus the machines it covers."""

    workspace_id: str
    workspace: str
    budget: Budget
    machines: tuple[str, ...] = ()  # globs on a machine's name or id; empty: every machine
    webhook_url: str | None = None
    webhook_format: str = "plain"
    webhook_secret: str | None = None
    updated_by: str = ""
    updated_at: str | None = None

    @property
    def name(self) -> str:
        return self.budget.name

    def covers_machine(self, name: str, machine_id: str) -> bool:
        if not self.machines:
            return True
        pattern = _machine_pattern(self.machines)
        return bool(pattern.match(name.lower()) or pattern.match(machine_id.lower()))

    def definition(self) -> dict[str, Any]:
        """The table as stored: the keys of a `[[budgets]]` entry, plus `machine`."""
        budget = self.budget
        found: dict[str, Any] = {
            "name": budget.name,
            "amount_usd": budget.amount_usd,
            "period": budget.period,
            "thresholds": list(budget.thresholds),
            "action": budget.action,
            "timezone": budget.timezone or "UTC",
        }
        if budget.period == "rolling":
            found["days"] = budget.rolling_days
        found.update({key: list(globs) for key, globs in budget.scope.to_json().items()})
        if self.machines:
            found["machine"] = list(self.machines)
        return found

    def scope_text(self) -> str:
        parts = [self.budget.scope.describe()]
        if self.machines:
            parts.append(f"machine={','.join(self.machines)}")
        text = " ".join(p for p in parts if p != "all calls")
        return text or f"the whole workspace {self.workspace}"

    def to_json(self, *, secrets: bool = False) -> dict[str, Any]:
        return {
            **self.budget.to_json(),
            "workspace": self.workspace,
            "machine": list(self.machines),
            "scope_text": self.scope_text(),
            "webhook_url": self.webhook_url,
            "webhook_format": self.webhook_format,
            "webhook_secret": self.webhook_secret if secrets else bool(self.webhook_secret),
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
        }


@lru_cache(maxsize=256)
def _machine_pattern(globs: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{translate(glob.lower())})" for glob in globs))


def _globs(value: Any, key: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise TeamBudgetError(f'{key}: expected a glob like "build-*" or a list of them')
    return tuple(item.strip() for item in items)


def parse_team_budget(
    workspace_id: str, workspace: str, entry: Mapping[str, Any], by: str = ""
) -> TeamBudget:
    """A `[[budgets]]`-style table as sent by an admin: checked key by key, as on a machine.
    `client` scopes are refused (the server's rollups do not keep the client), and so are
    quota shares (a subscription's quota is one person's)."""
    table = dict(entry)
    extra = {key: table.pop(key) for key in TEAM_KEYS if key in table}
    if "client" in table:
        raise TeamBudgetError("client: a team budget cannot scope on the client (not synced)")
    if "quota_percent" in table or "quota_window" in table:
        raise TeamBudgetError("quota_percent: a team budget is an amount in USD")
    table.setdefault("timezone", "UTC")
    try:
        budget = parse_budget(0, table)
    except BudgetProblem as problem:
        raise TeamBudgetError(f"{problem.key or 'budget'}: {problem.problem}") from None
    machines = _globs(extra["machine"], "machine") if "machine" in extra else ()
    url = extra.get("webhook_url") or None
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise TeamBudgetError("webhook_url: expected an http:// or https:// address")
    form = extra.get("webhook_format") or "plain"
    if form not in WEBHOOK_FORMATS:
        raise TeamBudgetError(f"webhook_format: {form!r} is not one of plain, chat")
    secret = extra.get("webhook_secret") or None
    if secret is not None and not isinstance(secret, str):
        raise TeamBudgetError("webhook_secret: expected a string")
    return TeamBudget(workspace_id, workspace, budget, machines, url, form, secret, by)


# --- storage -------------------------------------------------------------------------------

_COLUMNS = (
    "b.workspace_id, w.name, b.definition, b.webhook_url, b.webhook_format, b.webhook_secret, "
    "b.updated_by, b.updated_at"
)


def _from_row(row: Sequence[Any]) -> TeamBudget:
    found = parse_team_budget(str(row[0]), row[1], row[2])
    return TeamBudget(
        found.workspace_id,
        found.workspace,
        found.budget,
        found.machines,
        row[3],
        row[4],
        row[5],
        row[6],
        row[7].isoformat() if row[7] is not None else None,
    )


def list_budgets(con: Connection, workspace_id: str) -> list[TeamBudget]:
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM team_budgets b JOIN workspaces w ON w.id = b.workspace_id "
        "WHERE b.workspace_id = %s ORDER BY b.name",
        (workspace_id,),
    ).fetchall()
    return [_from_row(row) for row in rows]


def get_budget(con: Connection, workspace_id: str, name: str) -> TeamBudget | None:
    row = con.execute(
        f"SELECT {_COLUMNS} FROM team_budgets b JOIN workspaces w ON w.id = b.workspace_id "
        "WHERE b.workspace_id = %s AND b.name = %s",
        (workspace_id, name),
    ).fetchone()
    return None if row is None else _from_row(row)


def save_budget(con: Connection, team: TeamBudget, *, create: bool) -> None:
    """Create (409-worthy error when the name is taken) or replace a budget."""
    values = (
        team.workspace_id,
        team.name,
        json.dumps(team.definition()),
        team.webhook_url,
        team.webhook_format,
        team.webhook_secret,
        team.updated_by,
    )
    if create:
        made = con.execute(
            "INSERT INTO team_budgets (workspace_id, name, definition, webhook_url, "
            "webhook_format, webhook_secret, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING name",
            values,
        ).fetchone()
        if made is None:
            raise TeamBudgetError(f"name: workspace {team.workspace} has a budget {team.name!r}")
        return
    con.execute(
        "UPDATE team_budgets SET definition = %s, webhook_url = %s, webhook_format = %s, "
        "webhook_secret = %s, updated_by = %s, updated_at = now() "
        "WHERE workspace_id = %s AND name = %s",
        (*values[2:], team.workspace_id, team.name),
    )


def edit_budget(
    con: Connection, workspace_id: str, name: str, changes: Mapping[str, Any], by: str
) -> TeamBudget:
    """Change some keys of a budget (None removes a key), checked as a whole."""
    found = get_budget(con, workspace_id, name)
    if found is None:
        raise LookupError(name)
    table: dict[str, Any] = {
        **found.definition(),
        "webhook_url": found.webhook_url,
        "webhook_format": found.webhook_format,
        "webhook_secret": found.webhook_secret,
    }
    if "name" in changes and changes["name"] != name:
        raise TeamBudgetError("name: a budget is not renamed; remove it and add another")
    for key, value in changes.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    if table.get("period") != "rolling":
        table.pop("days", None)
    table = {k: v for k, v in table.items() if v is not None}
    edited = parse_team_budget(workspace_id, found.workspace, table, by)
    save_budget(con, edited, create=False)
    return edited


def remove_budget(con: Connection, workspace_id: str, name: str) -> bool:
    gone = con.execute(
        "DELETE FROM team_budgets WHERE workspace_id = %s AND name = %s RETURNING name",
        (workspace_id, name),
    ).fetchone()
    return gone is not None


# --- spend from the rollups ----------------------------------------------------------------


def _utc_day_edges(window: Window) -> tuple[datetime, datetime]:
    """The first and last whole UTC midnights inside the window (first >= last: none)."""
    start = datetime.fromtimestamp(window.start, UTC)
    end = datetime.fromtimestamp(window.end, UTC)
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    last = end.replace(hour=0, minute=0, second=0, microsecond=0)
    return first, last


def _groups(
    con: Connection, workspace_id: str, team: TeamBudget, window: Window
) -> list[tuple[str, str, str, str, str, int]]:
    """(machine id, machine name, project, provider, model, nano-USD) sums inside the window:
    rollups for whole UTC days, the ledger for the partial days at the edges."""
    scope = team.budget.scope
    if scope.provider or scope.model:
        table, keys = "daily_rollups", "r.project, r.provider, r.model"
    elif scope.project:
        table, keys = "daily_project_rollups", "r.project, '', ''"
    else:
        table, keys = "daily_machine_rollups", "'', '', ''"
    first, last = _utc_day_edges(window)
    found: list[tuple[str, str, str, str, str, int]] = []
    if first < last:
        found += [
            (str(r[0]), r[1], r[2], r[3], r[4], int(r[5]))
            for r in con.execute(
                f"SELECT r.machine_id, m.name, {keys}, sum(r.cost_nanousd) FROM {table} r "
                "JOIN machines m ON m.id = r.machine_id WHERE r.workspace_id = %s "
                "AND r.day >= %s AND r.day < %s GROUP BY 1, 2, 3, 4, 5",
                (workspace_id, first.date(), last.date()),
            ).fetchall()
        ]
    edges = (
        [(datetime.fromtimestamp(window.start, UTC), datetime.fromtimestamp(window.end, UTC))]
        if first >= last
        else [
            (datetime.fromtimestamp(window.start, UTC), first),
            (last, datetime.fromtimestamp(window.end, UTC)),
        ]
    )
    for since, until in edges:
        if since >= until:
            continue
        found += [
            (str(r[0]), r[1], r[2], r[3], r[4], int(r[5]))
            for r in con.execute(
                "SELECT l.machine_id, m.name, l.project, l.provider, "
                "COALESCE(l.model, l.model_requested, '(unknown)'), sum(l.cost_nanousd) "
                "FROM ledger l JOIN machines m ON m.id = l.machine_id "
                "WHERE l.workspace_id = %s AND l.requested_at >= %s AND l.requested_at < %s "
                "AND l.billing <> 'subscription' AND l.cost_nanousd IS NOT NULL "
                "GROUP BY 1, 2, 3, 4, 5",
                (workspace_id, since, until),
            ).fetchall()
        ]
    return found


def spent_in_window(con: Connection, team: TeamBudget, window: Window) -> int:
    """The team's nano-USD in the budget's scope and window, in the server's price."""
    scope = team.budget.scope
    total = 0
    for machine_id, machine, project, provider, model, cost in _groups(
        con, team.workspace_id, team, window
    ):
        if team.covers_machine(machine, machine_id) and scope.matches(
            project, ("*",), provider, model
        ):
            total += cost
    return total


# --- evaluation and alerts -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A budget's state now: its window, the team's spend in it, the thresholds just crossed."""

    team: TeamBudget
    window: Window
    spent_nanousd: int
    crossed: tuple[int, ...] = ()

    @property
    def over(self) -> bool:
        return self.spent_nanousd >= self.team.budget.limit_nanousd

    def crossing_json(self, threshold: int) -> dict[str, Any]:
        """An alert's plain JSON: the fields of a machine's (budgets/tracker.py `Crossing`),
        plus the workspace and the scope."""
        budget = self.team.budget
        spent = self.spent_nanousd / 1e9
        message = (
            f"Team budget {budget.name!r} (workspace {self.team.workspace}) at {threshold}%: "
            f"${spent:,.2f} of ${budget.amount_usd:,.2f} ({budget.period_label()}, "
            f"{self.window.describe()}; {self.team.scope_text()})"
        )
        return {
            "event": "budget.threshold",
            "team": True,
            "workspace": self.team.workspace,
            "budget": budget.name,
            "threshold": threshold,
            "spent_usd": round(spent, 6),
            "limit_usd": budget.amount_usd,
            "period": budget.period_label(),
            "window": self.window.to_json(),
            "action": budget.action,
            "scope": self.team.scope_text(),
            "message": message,
        }

    def to_json(self, now: float) -> dict[str, Any]:
        budget = self.team.budget
        limit = budget.limit_nanousd
        projected = forecast(self.spent_nanousd, self.window, now)
        return {
            **self.team.to_json(),
            "window": self.window.to_json(),
            "window_start_epoch": self.window.start,
            "window_end_epoch": self.window.end,
            "window_text": self.window.describe(),
            "spent_nanousd": self.spent_nanousd,
            "spent_usd": round(self.spent_nanousd / 1e9, 6),
            "percent": round(self.spent_nanousd * 100 / limit, 1) if limit else None,
            "thresholds_reached": [
                t for t in budget.thresholds if self.spent_nanousd >= limit * t // 100
            ],
            "state": ("blocking" if budget.action == "block" else "over") if self.over else "ok",
            "forecast_usd": None if projected is None else round(projected / 1e9, 2),
        }


def evaluate(
    con: Connection, workspace_id: str, now: float | None = None, name: str | None = None
) -> list[Evaluation]:
    """Every budget of the workspace (or the one named) on the server's totals now. A threshold
    reached for the first time in its window is recorded in `team_budget_alerts`; only the
    evaluation whose INSERT made the row reports it in `crossed` (so it is delivered once)."""
    when = time.time() if now is None else now
    found = []
    for team in list_budgets(con, workspace_id):
        if name is not None and team.name != name:
            continue
        window = team.budget.window(when)
        spent = spent_in_window(con, team, window)
        limit = team.budget.limit_nanousd
        reached = [t for t in team.budget.thresholds if spent >= limit * t // 100]
        crossed: list[int] = []
        for threshold in reached:
            made = con.execute(
                "INSERT INTO team_budget_alerts (workspace_id, budget, window_start, threshold, "
                "spent_nanousd, limit_nanousd, channel) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING threshold",
                (
                    workspace_id,
                    team.name,
                    datetime.fromtimestamp(window.start, UTC),
                    threshold,
                    spent,
                    limit,
                    "webhook" if team.webhook_url else "log",
                ),
            ).fetchone()
            if made is not None:
                crossed.append(threshold)
        found.append(Evaluation(team, window, spent, tuple(crossed)))
    return found


def alerts_of(con: Connection, workspace_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The alerts fired, newest first, with how their delivery went."""
    rows = con.execute(
        "SELECT budget, window_start, threshold, spent_nanousd, limit_nanousd, fired_at, "
        "channel, delivered_at, attempts, last_problem FROM team_budget_alerts "
        "WHERE workspace_id = %s ORDER BY fired_at DESC, budget, threshold LIMIT %s",
        (workspace_id, limit),
    ).fetchall()
    return [
        {
            "budget": r[0],
            "window_start": r[1].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "threshold": r[2],
            "spent_usd": round(r[3] / 1e9, 6),
            "limit_usd": round(r[4] / 1e9, 6),
            "fired_at": r[5].isoformat(),
            "channel": r[6],
            "delivered_at": r[7].isoformat() if r[7] is not None else None,
            "attempts": r[8],
            "problem": r[9],
            "state": "delivered" if r[7] is not None else ("failed" if r[9] else "pending"),
        }
        for r in rows
    ]


def sign(secret: str, body: bytes) -> str:
    """`sha256=` + HMAC-SHA256 of the body: a machine's webhooks sign alike."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_request(team: TeamBudget, alert: dict[str, Any]) -> urllib.request.Request:
    """`plain`: the alert as JSON, signed; `chat`: {"text", "content"}, which Slack, Teams and
    Discord incoming webhooks all take (signed too when a secret is set)."""
    assert team.webhook_url is not None
    if team.webhook_format == "plain":
        body = json.dumps(alert).encode()
    else:
        body = json.dumps({"text": alert["message"], "content": alert["message"]}).encode()
    headers = {"content-type": "application/json", "user-agent": "halton-meter-server"}
    if team.webhook_secret:
        headers[SIGNATURE_HEADER] = sign(team.webhook_secret, body)
    return urllib.request.Request(team.webhook_url, data=body, headers=headers, method="POST")


class AlertSender:
    """Delivers the crossings an evaluation made, off the request's thread: a log line at once,
    then the webhook with retries (1, 4, 15 s); each attempt's outcome is written back to its
    `team_budget_alerts` row, so a failure is shown on the admin page and by `server budgets`."""

    def __init__(self, dsn: str, retry_seconds: tuple[float, ...] = RETRY_SECONDS) -> None:
        self._dsn = dsn
        self._retry = retry_seconds

    def send(self, evaluations: Sequence[Evaluation]) -> None:
        for evaluation in evaluations:
            for threshold in evaluation.crossed:
                alert = evaluation.crossing_json(threshold)
                log.warning("team budget alert: %s", alert["message"])
                if evaluation.team.webhook_url:
                    threading.Thread(
                        target=self._deliver,
                        args=(evaluation, threshold, alert),
                        name="team-budget-alert",
                        daemon=True,
                    ).start()
                else:
                    self._record(evaluation, threshold, 1, None)

    def _deliver(self, evaluation: Evaluation, threshold: int, alert: dict[str, Any]) -> None:
        problem = ""
        for attempt, pause in enumerate((0.0, *self._retry), start=1):
            time.sleep(pause)
            try:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(webhook_request(evaluation.team, alert), timeout=10) as answer:
                    if 200 <= answer.status < 300:
                        self._record(evaluation, threshold, attempt, None)
                        return
                    problem = f"HTTP {answer.status}"
            except Exception as error:
                problem = str(error)[:300]
            log.warning("team budget webhook attempt %d failed: %s", attempt, problem)
            self._record(evaluation, threshold, attempt, problem, delivered=False)
        log.error("team budget alert %r not delivered: %s", evaluation.team.name, problem)

    def _record(
        self,
        evaluation: Evaluation,
        threshold: int,
        attempts: int,
        problem: str | None,
        *,
        delivered: bool = True,
    ) -> None:
        try:
            with psycopg.connect(self._dsn, autocommit=True) as con:
                con.execute(
                    "UPDATE team_budget_alerts SET attempts = %s, last_problem = %s, "
                    "delivered_at = CASE WHEN %s THEN now() ELSE NULL END "
                    "WHERE workspace_id = %s AND budget = %s AND window_start = %s "
                    "AND threshold = %s",
                    (
                        attempts,
                        problem,
                        delivered,
                        evaluation.team.workspace_id,
                        evaluation.team.name,
                        datetime.fromtimestamp(evaluation.window.start, UTC),
                        threshold,
                    ),
                )
        except psycopg.Error as error:
            log.error("team budget alert state not written: %s", error)


def for_machine(
    evaluations: Sequence[Evaluation], machine_name: str, machine_id: str, now: float
) -> list[dict[str, Any]]:
    """What a machine fetches: the budgets that cover it, each with the team's spent figure
    and the window it is for (no webhook, no secret)."""
    found = []
    for evaluation in evaluations:
        team = evaluation.team
        if not team.covers_machine(machine_name, machine_id):
            continue
        found.append(
            {
                "definition": team.definition(),
                "workspace": team.workspace,
                "scope_text": team.scope_text(),
                "window_start": evaluation.window.start,
                "window_end": evaluation.window.end,
                "spent_nanousd": evaluation.spent_nanousd,
                "as_of": now,
            }
        )
    return found
