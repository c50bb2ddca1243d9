"""The team's own prices on a real team server: `[[pricing.overrides]]` set on the server
(dates, globs, a discount and a rate card) price new rows at ingest, the server's `reprice`
shows the change per model and writes only when confirmed, the rollups stay equal to the rows,
and the machine's own figure stays beside. Then a real daemon re-prices rows it had already
synced: their new price is sent again and replaces the server's copy of the machine's figure,
once, by id. Through all of it a subscription's calls stay apart from money spent: every
rollup table equals the sums worked out from the stored rows, split by billing.

Expected costs from published prices per million tokens: GPT-4.1 input $2, output $8;
the rate card in the test: Sonnet input $2, output $10."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import METER, FakeUpstream, wait_for
from tests.team_fixtures import (
    TeamServer,
    meter_cli,
    send_calls,
    server_env,
    start_paired_meter,
    wait_synced,
)
from tests.test_team_roles import paired
from tests.test_team_server_ingest import row

TEAM_PRICES = """
[[pricing.overrides]]
name = "committed-use"
provider = "openai"
model = "gpt-4.1*"
discount_pct = 20
effective_from = 2026-11-01

[[pricing.overrides]]
name = "sonnet-rate-card"
provider = "anthropic"
model = "claude-sonnet-4-5*"
input_mtok = 2
output_mtok = 10
"""
GPT41 = 1000 * 2000 + 100 * 8000  # a row(): 1,000 input and 100 output tokens
SONNET_CARD = 1000 * 2000 + 100 * 10_000


def post(server: TeamServer, machine: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    body = {"workspace_id": machine["workspace_id"], "machine_id": machine["machine_id"]}
    status, answer = server.api(
        "POST", "/v1/requests/batch", {**body, "rows": rows}, token=machine["token"]
    )
    assert status == 200, answer


def costs(server: TeamServer, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    found = server.sql(
        "SELECT id, cost_nanousd, price_source, machine_cost_nanousd FROM ledger "
        "WHERE id = ANY(%s)",
        ids,
    )
    return {r[0]: r[1:] for r in found}


def assert_rollups_match_rows(server: TeamServer, workspace_id: str) -> None:
    """Every rollup table sums to the rows, for the server's and the machines' figures."""
    ((cost, machine_cost, unpriced, count),) = server.sql(
        "SELECT COALESCE(sum(cost_nanousd), 0), COALESCE(sum(machine_cost_nanousd), 0), "
        "count(*) FILTER (WHERE cost_nanousd IS NULL), count(*) FROM ledger "
        "WHERE workspace_id = %s",
        workspace_id,
    )
    tables = ("daily_rollups", "daily_machine_rollups", "daily_project_rollups")
    for table in (*tables, "daily_branch_rollups"):
        sums = server.sql(
            f"SELECT sum(cost_nanousd), sum(machine_cost_nanousd), sum(unpriced_requests), "
            f"sum(requests) FROM {table} WHERE workspace_id = %s",
            workspace_id,
        )
        assert tuple(int(v) for v in sums[0]) == (cost, machine_cost, unpriced, count), table


def set_prices(server: TeamServer, workspace: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "team-prices.toml"
    path.write_text(text)
    server.cli("prices-set", str(path), "--workspace", workspace)


def test_team_prices_at_ingest_and_by_reprice(team_server: TeamServer, tmp_path: Path) -> None:
    workspace = f"prices-{os.getpid()}"
    machine = paired(team_server, workspace, f"{workspace}-m1")
    space = machine["workspace_id"]
    # A bad file is refused with its entry and line, and nothing is set.
    bad = tmp_path / "bad.toml"
    bad.write_text('[[pricing.overrides]]\nprovider = "openai"\nmodel = "x"\ndiscount_pct = 120\n')
    done = team_server.cli("prices-set", str(bad), "--workspace", workspace, check=False)
    assert done.returncode == 3 and "entry 1" in done.stderr and "line 4" in done.stderr
    set_prices(team_server, workspace, TEAM_PRICES, tmp_path)
    shown = json.loads(team_server.cli("prices", "--workspace", workspace, "--json").stdout)
    assert shown["entries"] == 2 and "committed-use" in shown["toml"]

    before_discount = row(requested_at="2026-10-31T23:59:59.000Z", cost_nanousd=5)
    discounted = row(cost_nanousd=5)
    sonnet = row(
        provider="anthropic",
        api="messages",
        host="api.anthropic.com",
        model="claude-sonnet-4-5-20250929",
        model_requested="claude-sonnet-4-5",
        cost_nanousd=None,
    )
    post(team_server, machine, [before_discount, discounted, sonnet])
    found = costs(team_server, [before_discount["id"], discounted["id"], sonnet["id"]])
    assert found[before_discount["id"]][0] == GPT41  # before effective_from: the catalogue
    assert found[discounted["id"]][0] == GPT41 * 8 // 10
    assert found[discounted["id"]][1].startswith("override:committed-use (-20%")
    assert found[sonnet["id"]][:2] == (SONNET_CARD, "override:sonnet-rate-card")
    assert [found[i][2] for i in (discounted["id"], sonnet["id"])] == [5, None]  # the machine's
    assert_rollups_match_rows(team_server, space)

    # New prices: the stored rows keep theirs until a reprice, which shows the change first.
    set_prices(
        team_server,
        workspace,
        TEAM_PRICES.replace("discount_pct = 20", "discount_pct = 50"),
        tmp_path,
    )
    planned = json.loads(
        team_server.cli("reprice", "--workspace", workspace, "--dry-run", "--json").stdout
    )
    assert planned["rows"] == 3 and planned["rows_changing"] == 1
    (gpt,) = [m for m in planned["models"] if m["model"] == "gpt-4.1"]
    assert (gpt["old_cost_nanousd"], gpt["new_cost_nanousd"]) == (
        GPT41 + GPT41 * 8 // 10,
        GPT41 + GPT41 // 2,
    )
    env = server_env(team_server.dsn)
    declined = subprocess.run(
        [METER, "server", "reprice", "--workspace", workspace],
        env=env,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Re-price 1 rows?" in declined.stdout and "Nothing changed" in declined.stdout
    assert costs(team_server, [discounted["id"]])[discounted["id"]][0] == GPT41 * 8 // 10
    # The same over HTTP, by an admin: look, then apply.
    status, look = team_server.api(
        "POST", f"/v1/reprice?workspace={workspace}", token=team_server.admin_token
    )
    assert status == 200 and look["dry_run"] and look["rows_changing"] == 1
    assert costs(team_server, [discounted["id"]])[discounted["id"]][0] == GPT41 * 8 // 10
    status, done_http = team_server.api(
        "POST", f"/v1/reprice?workspace={workspace}&apply=true", token=team_server.admin_token
    )
    assert status == 200 and done_http["rows_written"] == 1
    now = costs(team_server, [discounted["id"]])[discounted["id"]]
    assert (now[0], now[2]) == (GPT41 // 2, 5) and "(-50%" in now[1]
    assert_rollups_match_rows(team_server, space)
    stats = team_server.admin(f"/v1/stats?workspace={workspace}")["summary"]
    assert stats["total_cost_nanousd"] == GPT41 + GPT41 // 2 + SONNET_CARD
    assert stats["total_machine_cost_nanousd"] == 10 and stats["machine_unpriced_requests"] == 1
    # Removing the prices and re-pricing with --yes brings back the catalogue's.
    set_prices(team_server, workspace, "", tmp_path)
    team_server.cli("reprice", "--workspace", workspace, "--yes")
    assert_rollups_match_rows(team_server, space)
    assert costs(team_server, [discounted["id"]])[discounted["id"]][0] == GPT41


def test_rows_repriced_on_a_machine_are_sent_again(
    fake_upstream: FakeUpstream, team_server: TeamServer, tmp_path: Path
) -> None:
    workspace = f"resend-{os.getpid()}"
    meter = start_paired_meter(fake_upstream, tmp_path / "home", team_server, workspace, "m1")
    try:
        send_calls(meter, "web", anthropic=3, openai=2)
        meter.wait_rows("web", 5)
        ids = wait_synced(team_server, workspace, 5)
        wait_for(
            lambda: (
                json.loads(meter_cli(meter, "cloud", "status", "--json").stdout)["unsynced_rows"]
                == 0
            ),
            30,
            "synced",
        )
        server_before = {i: c[0] for i, c in costs(team_server, ids).items()}
        # The machine's own negotiated price, then its reprice of rows already sent.
        with (meter.home / "config.toml").open("a") as config:
            config.write(
                '\n[[pricing.overrides]]\nprovider = "anthropic"\n'
                'model = "claude-sonnet-4-5*"\ndiscount_pct = 50\n'
            )
        done = meter_cli(meter, "reprice", "--since", "30d", "--yes")
        assert done.returncode == 0, done.stderr
        local = {r["id"]: r["cost_nanousd"] for r in meter.rows("web")}

        def resent() -> bool:
            on_server = costs(team_server, ids)
            return all(on_server[i][2] == local[i] for i in ids)

        wait_for(resent, 60, "the machine's new figures on the server")
        status = json.loads(meter_cli(meter, "cloud", "status", "--json").stdout)
        assert status["rows_to_resend"] == 0 and status["unsynced_rows"] == 0
        on_server = costs(team_server, ids)
        assert {i: c[0] for i, c in on_server.items()} == server_before  # the server's own
        assert sorted(team_server.sql("SELECT id FROM ledger WHERE id = ANY(%s)", ids)) == sorted(
            (i,) for i in ids
        )  # each row once
        (space,) = team_server.sql("SELECT id FROM workspaces WHERE name = %s", workspace)[0]
        assert_rollups_match_rows(team_server, str(space))
        report = json.loads(meter_cli(meter, "report", "--json").stdout)
        summary = team_server.admin(f"/v1/stats?workspace={workspace}")["summary"]
        assert summary["total_machine_cost_nanousd"] == report["totals"]["cost_nanousd"]
        assert summary["total_machine_cost_nanousd"] < summary["total_cost_nanousd"]

        # Sent twice (a crash before the machine noted the answer): set twice, counted once.
        saved = json.loads((meter.home / "cloud-credentials.json").read_text())
        resend = {
            "workspace_id": saved["workspace_id"],
            "machine_id": saved["machine_id"],
            "rows": [
                {
                    "id": r["id"],
                    "requested_at": r["requested_at"],
                    "cost_nanousd": r["cost_nanousd"],
                    "price_source": r["price_source"],
                }
                for r in meter.rows("web")
            ],
        }
        for _ in range(2):
            code, answer = team_server.api(
                "POST", "/v1/requests/machine-prices", resend, token=saved["token"]
            )
            assert code == 200 and answer == {"received": 5, "updated": 5}
        assert_rollups_match_rows(team_server, str(space))
        again = team_server.admin(f"/v1/stats?workspace={workspace}")["summary"]
        assert again == summary
    finally:
        meter.stop()


# --- a subscription's calls stay apart from money spent, through reprice and resends --------

# The rollup measures and how each one sums from a stored row (`subscribed`: billed by a
# subscription). Money spent (`cost_nanousd`, the machine's too) leaves subscription rows out;
# their API-equivalent value is `subscription_value_nanousd`.
MEASURES: dict[str, Any] = {
    "requests": lambda r: 1,
    "errors": lambda r: int(r["status"] != "ok"),
    "input_tokens": lambda r: r["input_tokens"] or 0,
    "output_tokens": lambda r: r["output_tokens"] or 0,
    "cost_nanousd": lambda r: 0 if r["subscribed"] else r["cost_nanousd"] or 0,
    "unpriced_requests": lambda r: int(r["cost_nanousd"] is None),
    "machine_cost_nanousd": lambda r: 0 if r["subscribed"] else r["machine_cost_nanousd"] or 0,
    "machine_unpriced_requests": lambda r: int(r["machine_cost_nanousd"] is None),
    "latency_count": lambda r: int(r["latency_ms"] is not None),
    "subscription_requests": lambda r: int(r["subscribed"]),
    "subscription_value_nanousd": lambda r: (r["cost_nanousd"] or 0) if r["subscribed"] else 0,
}
ROLLUP_KEYS = {
    "daily_rollups": ("day", "machine_id", "project", "provider", "model"),
    "daily_machine_rollups": ("day", "machine_id", "provider", "model"),
    "daily_project_rollups": ("day", "machine_id", "project"),
    "daily_branch_rollups": ("day", "machine_id", "project", "branch"),
}


def assert_rollups_split_by_billing(server: TeamServer, workspace_id: str) -> dict[str, int]:
    """Every rollup table, key by key, equals the sums worked out here from the stored rows;
    returns the workspace's totals."""
    columns = (
        "(requested_at AT TIME ZONE 'UTC')::date, machine_id::text, project, provider, "
        "COALESCE(model, model_requested, '(unknown)'), status, input_tokens, output_tokens, "
        "cost_nanousd, machine_cost_nanousd, latency_ms, billing, COALESCE(git_branch, '(none)')"
    )
    names = [
        "day",
        "machine_id",
        "project",
        "provider",
        "model",
        "status",
        "input_tokens",
        "output_tokens",
        "cost_nanousd",
        "machine_cost_nanousd",
        "latency_ms",
        "billing",
        "branch",
    ]
    rows = [
        dict(zip(names, found, strict=True))
        for found in server.sql(
            f"SELECT {columns} FROM ledger WHERE workspace_id = %s", workspace_id
        )
    ]
    for stored in rows:
        stored["subscribed"] = stored["billing"] == "subscription"
    totals = {name: sum(add(r) for r in rows) for name, add in MEASURES.items()}
    for table, keys in ROLLUP_KEYS.items():
        expected: dict[tuple[Any, ...], dict[str, int]] = {}
        for stored in rows:
            sums = expected.setdefault(
                tuple(str(stored[k]) for k in keys), dict.fromkeys(MEASURES, 0)
            )
            for name, add in MEASURES.items():
                sums[name] += add(stored)
        found = server.sql(
            f"SELECT {', '.join(f'{k}::text' for k in keys)}, {', '.join(MEASURES)} FROM {table} "
            "WHERE workspace_id = %s",
            workspace_id,
        )
        actual = {
            tuple(line[: len(keys)]): dict(zip(MEASURES, map(int, line[len(keys) :]), strict=True))
            for line in found
        }
        assert actual == expected, table
    return totals


# GPT-4.1 at $2 / $8 per million tokens, less the test's discount; Sonnet at the test's card.
PRICES_BEFORE = (GPT41 * 8 // 10, SONNET_CARD)
PRICES_AFTER = (GPT41 // 2, 1000 * 4000 + 100 * 20_000)


def test_subscription_rows_stay_apart_through_reprice_and_resend(
    team_server: TeamServer, tmp_path: Path
) -> None:
    workspace = f"subs-{os.getpid()}"
    machine = paired(team_server, workspace, f"{workspace}-m1")
    space = machine["workspace_id"]
    set_prices(team_server, workspace, TEAM_PRICES, tmp_path)
    sonnet = {
        "provider": "anthropic",
        "api": "messages",
        "host": "api.anthropic.com",
        "model": "claude-sonnet-4-5-20250929",
        "model_requested": "claude-sonnet-4-5",
    }
    codex = {"host": "chatgpt.com", "api": "responses", "wire": "chatgpt-codex"}
    day2 = "2026-11-21T08:00:00.000Z"
    branch = {"git_branch": "feature-x", "git_commit": "ab" * 20}  # and others on none
    api_gpt = row(billing="api", cost_nanousd=5, **branch)
    api_sonnet = row(**sonnet, billing="api", cost_nanousd=None, project="other")
    unknown_gpt = row(requested_at=day2, cost_nanousd=6)  # an older machine: no billing sent
    sub_sonnet = row(**sonnet, billing="subscription", cost_nanousd=7, **branch)
    sub_sonnet_2 = row(**sonnet, billing="subscription", cost_nanousd=None, requested_at=day2)
    sub_codex = row(**codex, billing="subscription", cost_nanousd=8, project="other")
    sub_failed = row(
        **sonnet, billing="subscription", cost_nanousd=None, status="error", output_tokens=None
    )
    everything = [api_gpt, api_sonnet, unknown_gpt, sub_sonnet, sub_sonnet_2, sub_codex, sub_failed]
    post(team_server, machine, everything)
    ids = {
        name: r["id"]
        for name, r in zip(["a", "b", "u", "s", "t", "c", "f"], everything, strict=True)
    }

    stored = costs(team_server, list(ids.values()))
    gpt, card = PRICES_BEFORE
    assert {name: stored[i][0] for name, i in ids.items()} == {
        "a": gpt,
        "b": card,
        "u": gpt,
        "s": card,
        "t": card,
        "c": gpt,
        "f": 1000 * 2000,
    }
    totals = assert_rollups_split_by_billing(team_server, space)
    assert (totals["cost_nanousd"], totals["subscription_value_nanousd"]) == (
        gpt + card + gpt,
        card + card + gpt + 1000 * 2000,
    )
    assert (totals["machine_cost_nanousd"], totals["subscription_requests"]) == (5 + 6, 4)

    # New team prices that change both kinds of row; the server's reprice moves each row's
    # difference to its own measure.
    set_prices(
        team_server,
        workspace,
        TEAM_PRICES.replace("discount_pct = 20", "discount_pct = 50")
        .replace("input_mtok = 2", "input_mtok = 4")
        .replace("output_mtok = 10", "output_mtok = 20"),
        tmp_path,
    )
    team_server.cli("reprice", "--workspace", workspace, "--yes")
    gpt, card = PRICES_AFTER
    stored = costs(team_server, list(ids.values()))
    assert {name: stored[i][0] for name, i in ids.items()} == {
        "a": gpt,
        "b": card,
        "u": gpt,
        "s": card,
        "t": card,
        "c": gpt,
        "f": 1000 * 4000,
    }
    totals = assert_rollups_split_by_billing(team_server, space)
    assert (totals["cost_nanousd"], totals["subscription_value_nanousd"]) == (
        gpt + card + gpt,
        card + card + gpt + 1000 * 4000,
    )

    # The machine re-priced both kinds and sends its figures again (twice: counted once):
    # priced to unpriced, unpriced to priced, and a new figure, on api and subscription rows.
    resent = {"a": None, "b": 21, "u": 22, "s": 23, "t": 24, "c": None}
    body = {
        "workspace_id": space,
        "machine_id": machine["machine_id"],
        "rows": [
            {
                "id": ids[name],
                "requested_at": next(r for r in everything if r["id"] == ids[name])["requested_at"],
                "cost_nanousd": cost,
                "price_source": "machine reprice",
            }
            for name, cost in resent.items()
        ],
    }
    for _ in range(2):
        code, answer = team_server.api(
            "POST", "/v1/requests/machine-prices", body, token=machine["token"]
        )
        assert code == 200 and answer == {"received": 6, "updated": 6}
    stored = costs(team_server, list(ids.values()))
    assert {name: stored[ids[name]][2] for name in resent} == resent
    assert {name: stored[i][0] for name, i in ids.items()}["s"] == card  # the server's stays
    totals = assert_rollups_split_by_billing(team_server, space)
    assert (totals["machine_cost_nanousd"], totals["machine_unpriced_requests"]) == (21 + 22, 3)
    assert totals["cost_nanousd"] == gpt + card + gpt
    # The team's report shows the same split.
    summary = team_server.admin(f"/v1/stats?workspace={workspace}")["summary"]
    assert summary["total_cost_nanousd"] == totals["cost_nanousd"]
    assert summary["total_machine_cost_nanousd"] == totals["machine_cost_nanousd"]
    assert (summary["subscription_requests"], summary["subscription_value_nanousd"]) == (
        totals["subscription_requests"],
        totals["subscription_value_nanousd"],
    )
