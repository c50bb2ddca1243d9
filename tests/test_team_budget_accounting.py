"""Team budgets' arithmetic, on real stores: the server's spend in a window from its rollups
and ledger edges (a real PostgreSQL), each threshold once per period; a machine's total as the
server's figure plus its own unsynced rows, each counted once (a real SQLite ledger); and the
overshoot bound: what other machines spent since their last sync is invisible until the next
fetch, and nothing more.

GPT-4.1 at $2 / $8 per million input / output tokens (published): a row of 1,000 input and
100 output tokens costs 2,000,000 + 800,000 = 2,800,000 nano-USD.
"""

from __future__ import annotations

from dataclasses import MISSING
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from halton_meter.budget_model import window_at
from halton_meter.budgets.team import (
    STALE_AFTER_SECONDS,
    BudgetGate,
    TeamBudgets,
    TeamRefusal,
)
from halton_meter.budgets.tracker import BudgetTracker
from halton_meter.cloud.credentials import Credentials
from halton_meter.ledger.db import connect
from halton_meter.ledger.row import INSERT_SQL, LedgerRow, utc_iso_ms
from halton_meter.teamserver import budgets
from tests.team_fixtures import TeamServer

GPT41_ROW_NANOUSD = 1000 * 2000 + 100 * 8000
NEW_YORK = ZoneInfo("America/New_York")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --- the server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edge_machine(team_server: TeamServer) -> dict[str, Any]:
    status, pending = team_server.api(
        "POST",
        "/v1/pairing",
        {
            "machine_uid": "edges-uid",
            "machine_name": "edges-m",
            "user": "eve",
            "workspace": "tb-edges",
        },
    )
    assert status == 200
    team_server.cli("approve", pending["code"])
    _, answer = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )
    return dict(answer)


def wire_row(number: int, when: str, project: str) -> dict[str, Any]:
    return {
        "id": f"019b0000000{number:013x}",
        "requested_at": when,
        "provider": "openai", "api": "chat", "host": "api.openai.com", "model": "gpt-4.1",
        "model_requested": "gpt-4.1", "stream": False, "input_tokens": 1000,
        "cache_read_tokens": 0, "cache_write_tokens": 0, "cache_write_1h_tokens": None,
        "output_tokens": 100, "reasoning_tokens": None, "web_search_requests": None,
        "http_status": 200, "status": "ok", "error_class": None, "provider_error_code": None,
        "latency_ms": 500.0, "ttft_ms": None, "tokens_complete": True, "response_id": None,
        "service_tier": None, "user_agent": "curl/8", "project": project,
        "cost_nanousd": GPT41_ROW_NANOUSD, "price_source": "test", "provider_cost_usd": None,
    }  # fmt: skip


def test_server_spend_uses_rollups_and_ledger_edges_and_fires_each_threshold_once(
    team_server: TeamServer, edge_machine: dict[str, Any]
) -> None:
    # A week in New York: Monday 7 Dec 05:00 UTC to Monday 14 Dec 05:00 UTC. Its whole UTC
    # days come from the rollups, the partial ones (7 and 14 Dec) from the ledger.
    rows = [
        wire_row(1, "2026-12-07T04:59:59.999Z", "web"),  # Sunday evening in New York: out
        wire_row(2, "2026-12-07T05:00:00.000Z", "web"),  # the first instant: in
        wire_row(3, "2026-12-09T12:00:00.000Z", "web"),  # a whole UTC day: in
        wire_row(4, "2026-12-14T04:59:59.999Z", "web"),  # the last instant: in
        wire_row(5, "2026-12-14T05:00:00.000Z", "web"),  # the next week: out
        wire_row(6, "2026-12-09T12:00:00.000Z", "docs"),  # another project: out of scope
    ]
    status, answer = team_server.api(
        "POST",
        "/v1/requests/batch",
        {
            "workspace_id": edge_machine["workspace_id"],
            "machine_id": edge_machine["machine_id"],
            "rows": rows,
        },
        token=edge_machine["token"],
    )
    assert status == 200 and answer["stored"] == 6, answer
    now = datetime(2026, 12, 10, 12, 0, tzinfo=NEW_YORK).timestamp()
    expected = 3 * GPT41_ROW_NANOUSD
    with psycopg.connect(team_server.dsn, autocommit=True) as con:
        space = str(edge_machine["workspace_id"])
        for name, extra in (
            ("web-week", {}),
            ("web-mine", {"machine": "edges-*"}),
            ("web-others", {"machine": ["laptop-*", "ci-*"]}),
        ):
            table = {
                "name": name,
                "amount_usd": expected / 1e9,  # exactly reached: 50 and 100 %
                "period": "week",
                "timezone": "America/New_York",
                "project": "web",
                "thresholds": [50, 100],
                **extra,
            }
            budgets.save_budget(
                con, budgets.parse_team_budget(space, "tb-edges", table, "test"), create=True
            )
        first = {e.team.name: e for e in budgets.evaluate(con, space, now)}
        window = window_at("week", 0, NEW_YORK, now)
        assert first["web-week"].window == window
        assert first["web-week"].spent_nanousd == expected
        assert first["web-mine"].spent_nanousd == expected
        assert first["web-others"].spent_nanousd == 0
        assert first["web-week"].crossed == (50, 100) and first["web-others"].crossed == ()
        # Evaluated again (another worker, a restart): nothing fires twice.
        again = budgets.evaluate(con, space, now)
        assert all(e.crossed == () for e in again)
        assert [e.spent_nanousd for e in again] == [e.spent_nanousd for e in first.values()]
        # What the machine fetches: the budgets that cover it, no webhook or secret.
        mine = budgets.for_machine(again, "edges-m", str(edge_machine["machine_id"]), now)
        assert sorted(item["definition"]["name"] for item in mine) == ["web-mine", "web-week"]
        assert all(item["spent_nanousd"] == expected for item in mine)
        assert all("webhook_url" not in item["definition"] for item in mine)
        # The next week starts from nothing (and fires again in its own period).
        later = budgets.evaluate(con, space, now + 7 * 86400)
        week_after = {e.team.name: e for e in later}["web-week"]
        assert week_after.spent_nanousd == GPT41_ROW_NANOUSD  # row 5
        assert week_after.crossed == ()  # 1 of 3 rows: under 50 %
        for name in ("web-week", "web-mine", "web-others"):
            budgets.remove_budget(con, space, name)


def test_signature_matches_the_machines_webhook() -> None:
    from halton_meter.budgets.alerts import sign

    body = b'{"event":"budget.threshold"}'
    assert budgets.sign("k", body) == sign("k", body)


# --- the machine ---------------------------------------------------------------------------


def ledger_row(row_id: str, project: str, cost: int, when: float) -> LedgerRow:
    fields = dict.fromkeys(LedgerRow.__dataclass_fields__)
    fields.update(
        id=row_id, requested_at=utc_iso_ms(when), provider="openai", api="chat",
        host="api.openai.com", model="gpt-4.1", stream=False, status="ok", project=project,
        cost_nanousd=cost, billing="api", tokens_complete=True,
    )  # fmt: skip
    fields = {
        k: v
        for k, v in fields.items()
        if v is not None or LedgerRow.__dataclass_fields__[k].default is MISSING
    }
    return LedgerRow(**fields)  # type: ignore[arg-type]


def fetched(spent: int, now: float, limit: int) -> list[dict[str, Any]]:
    window = window_at("month", 0, UTC, now)
    return [
        {
            "definition": {
                "name": "team-acme",
                "amount_usd": limit / 1e9,
                "period": "month",
                "project": "acme",
                "action": "block",
                "thresholds": [100],
                "timezone": "UTC",
            },
            "workspace": "ws",
            "scope_text": "project=acme",
            "window_start": window.start,
            "window_end": window.end,
            "spent_nanousd": spent,
        }
    ]


def test_machine_total_is_the_server_figure_plus_unsynced_rows_each_counted_once(
    tmp_path: Path,
) -> None:
    now = _epoch("2026-12-10T12:00:00+00:00")
    clock = [now]
    call = GPT41_ROW_NANOUSD
    limit = call * 9 // 2
    con = connect(tmp_path / "db.sqlite")
    team = TeamBudgets(tmp_path, clock=lambda: clock[0])
    local = BudgetTracker([], tmp_path, tmp_path / "db.sqlite")
    gate = BudgetGate(local, team)

    def spent() -> int:
        (view,) = team.views()
        return int(view["server_spent_nanousd"] + view["unsynced_nanousd"])

    # Before any team budget is known, rows are not kept in memory (a machine that is not
    # paired holds nothing); a budget's unsynced rows are read from the ledger at the fetch.
    team.add(ledger_row("r0", "acme", call, now))
    # The server has 3 calls of the team's (none of them this machine's).
    team.update(fetched(3 * call, now, limit), con)
    assert spent() == 3 * call and not gate.blocking
    # This machine's call, built by the writer (not committed yet): counted once.
    first = ledger_row("r1", "acme", call, now)
    team.add(first)
    team.add(first)
    team.add(ledger_row("r2", "beta", 100 * call, now))  # another project: not in scope
    assert spent() == 4 * call and not gate.blocking
    # Committed, not synced: the next fetch reads it from the ledger, still once.
    con.execute(INSERT_SQL, first.values())
    con.execute(INSERT_SQL, ledger_row("r2", "beta", 100 * call, now).values())
    con.commit()
    team.update(fetched(3 * call, now, limit), con)
    assert spent() == 4 * call
    # Synced: the server's figure has it now, the machine no longer adds it.
    con.execute("UPDATE cloud_sync SET synced_rowid = (SELECT max(rowid) FROM requests)")
    con.commit()
    team.update(fetched(4 * call, now, limit), con)
    assert spent() == 4 * call
    # A row from before the restart, unsynced, is found in the ledger at the next fetch.
    con.execute(INSERT_SQL, ledger_row("r3", "acme", call, now - 60).values())
    con.commit()
    team.update(fetched(4 * call, now, limit), con)
    assert spent() == 5 * call and gate.blocking
    refusal = gate.check("openai", "acme", None, None, None, "gpt-4.1")
    assert isinstance(refusal, TeamRefusal) and refusal.spent_nanousd == 5 * call
    assert "team budget 'team-acme' (workspace ws) is used up" in refusal.message()
    assert gate.check("openai", "beta", None, None, None, "gpt-4.1") is None
    # The period ends: no block until the server gives the next period's figure (fail open).
    clock[0] = window_at("month", 0, UTC, now).end + 1
    assert gate.check("openai", "acme", None, None, None, "gpt-4.1") is None


def test_overshoot_is_what_other_machines_spent_since_the_last_fetch(tmp_path: Path) -> None:
    """The bound docs/team-server.md states: a machine sees the others' spend only as of its
    last fetch, so until its next sync it lets calls through that the team's total no longer
    allows; at that sync it blocks. The overshoot is the others' spend over one interval."""
    now = _epoch("2026-12-10T12:00:00+00:00")
    call = GPT41_ROW_NANOUSD
    limit = 10 * call
    con = connect(tmp_path / "db.sqlite")
    team = TeamBudgets(tmp_path, clock=lambda: now)
    team.update(fetched(8 * call, now, limit), con)  # as of this machine's last fetch
    # Meanwhile the other machines spent 3 calls (the team is at 11): invisible here, so this
    # machine's next call is allowed. That call is the overshoot the interval permits.
    assert team.check("openai", "acme", None, None, None, "gpt-4.1") is None
    team.add(ledger_row("mine", "acme", call, now))
    assert team.check("openai", "acme", None, None, None, "gpt-4.1") is None  # 9 of 10 here
    # The next sync: the server has the others' 3 calls and this machine's 1.
    con.execute(INSERT_SQL, ledger_row("mine", "acme", call, now).values())
    con.execute("UPDATE cloud_sync SET synced_rowid = (SELECT max(rowid) FROM requests)")
    con.commit()
    team.update(fetched(12 * call, now, limit), con)
    assert team.check("openai", "acme", None, None, None, "gpt-4.1") is not None


def test_an_unreachable_server_keeps_the_last_figures_until_they_are_stale(
    tmp_path: Path,
) -> None:
    now = _epoch("2026-12-10T12:00:00+00:00")
    clock = [now]
    call = GPT41_ROW_NANOUSD
    con = connect(tmp_path / "db.sqlite")
    team = TeamBudgets(tmp_path, clock=lambda: clock[0])
    team.update(fetched(5 * call, now, 4 * call), con)
    assert team.blocking
    closed = Credentials("http://127.0.0.1:9", "t", "w", "ws", "m", "m", "u", "now")
    team.refresh(con, closed)
    assert team.blocking and team.last_problem and "unreachable" in team.last_problem
    assert team.check("openai", "acme", None, None, None, "gpt-4.1") is not None
    # Still no fresh figure 15 minutes on: an admin's raise could not reach this machine, so
    # the block is lifted (fail open) — a fetch that succeeds brings it back.
    clock[0] = now + STALE_AFTER_SECONDS - 1
    assert team.check("openai", "acme", None, None, None, "gpt-4.1") is not None
    clock[0] = now + STALE_AFTER_SECONDS + 1
    assert team.check("openai", "acme", None, None, None, "gpt-4.1") is None
    team.update(fetched(5 * call, clock[0], 4 * call), con)
    assert team.check("openai", "acme", None, None, None, "gpt-4.1") is not None
    # Disconnected (no credentials): no team budget applies any more.
    team.refresh(con, None)
    assert not team.blocking and team.views() == []


def test_an_alert_that_cannot_be_delivered_is_retried_and_shown(
    team_server: TeamServer, edge_machine: dict[str, Any]
) -> None:
    import socket
    import time

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    space = str(edge_machine["workspace_id"])
    now = datetime(2026, 12, 10, 12, 0, tzinfo=NEW_YORK).timestamp()
    with psycopg.connect(team_server.dsn, autocommit=True) as con:
        table = {
            "name": "unreachable-hook",
            "amount_usd": 0.000001,
            "period": "week",
            "thresholds": [100],
            "webhook_url": f"http://127.0.0.1:{closed}/hook",
            "webhook_secret": "s",
        }
        budgets.save_budget(
            con, budgets.parse_team_budget(space, "tb-edges", table, "test"), create=True
        )
        found = [e for e in budgets.evaluate(con, space, now) if e.team.name == table["name"]]
        assert found[0].crossed == (100,)
        budgets.AlertSender(team_server.dsn, retry_seconds=(0.1, 0.1)).send(found)

        def failed() -> dict[str, Any] | None:
            alerts = [a for a in budgets.alerts_of(con, space) if a["budget"] == table["name"]]
            return alerts[0] if alerts and alerts[0]["attempts"] == 3 else None

        deadline = time.monotonic() + 30
        while (alert := failed()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alert is not None and alert["state"] == "failed"
        assert alert["channel"] == "webhook" and "refused" in alert["problem"].lower()
        budgets.remove_budget(con, space, table["name"])
