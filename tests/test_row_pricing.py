"""One row, one price: capture (the writer's row builder), `reprice` and the team server's
ingest price the same row identically, through `pricing.price_row`.

The cases are the ones where they used to disagree: a user endpoint declared with Code Assist's
wire format (capture decided by wire, reprice and the server by host), and the self-test row.
Expected costs: Anthropic's published prices (claude.com/pricing), Claude Sonnet 4.5 at $3
input and $15 output per million tokens; Google's (ai.google.dev/gemini-api/docs/pricing),
Gemini 2.5 Pro at $1.25 input (prompts up to 200k tokens) and $10 output per million tokens.
Also: ledger migration 5 backfills `wire` on existing rows with the one rule the server uses for
rows from older machines, and migration 6 tells Code Assist's rows to be subscription calls.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from halton_meter.capture.record import CapturedCall
from halton_meter.capture.selftest import SelfTestCall
from halton_meter.cloud.sync import WIRE_COLUMNS, wire_row
from halton_meter.config import CloudSettings
from halton_meter.ledger.build import RowBuilder
from halton_meter.ledger.db import connect
from halton_meter.ledger.queries import Window
from halton_meter.ledger.row import ROW_COLUMNS, LedgerRow
from halton_meter.ledger.schema import MIGRATIONS
from halton_meter.ledger.writer import LedgerWriter
from halton_meter.pricing import PriceOverride
from halton_meter.providers import Route, backfill_wire, route_for
from halton_meter.providers.base import Endpoint
from halton_meter.providers.registry import backfill_wire_sql
from halton_meter.reprice import plan_reprice
from halton_meter.teamserver.ingest import WireRow, columns_for
from tests.test_ledger import Ready, sample_row

SONNET_INPUT, SONNET_OUTPUT = 3, 15  # USD per million tokens
GEMINI_25_PRO_INPUT, GEMINI_25_PRO_OUTPUT = Decimal("1.25"), 10  # USD per million tokens
# 1000 prompt and 100 output tokens (gemini_body) at Gemini 2.5 Pro's list price, in nano-USD.
GEMINI_BODY_VALUE = int(1000 * GEMINI_25_PRO_INPUT * 1000 + 100 * GEMINI_25_PRO_OUTPUT * 1000)
STARTED = 1_767_000_000.0  # 2025-12-29, inside Sonnet 4.5's current price
# Provider "google", so a list price exists: a subscription row gets it as API-equivalent value.
GATEWAY = Endpoint("gateway.internal", 8443, "gemini-code-assist", "google")


def gemini_body(model: str) -> bytes:
    return json.dumps(
        {
            "response": {
                "candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 100},
                "modelVersion": model,
            },
            "traceId": "t1",
        }
    ).encode()


def anthropic_body() -> bytes:
    return json.dumps(
        {
            "id": "msg_1",
            "model": "claude-sonnet-4-5-20250929",
            "usage": {"input_tokens": 1000, "output_tokens": 100},
        }
    ).encode()


def captured(route: Route, host: str, body: bytes) -> CapturedCall:
    return CapturedCall(
        route=route,
        host=host,
        started_at=STARTED,
        project="p",
        user_agent="test",
        http_status=200,
        finished_at=STARTED + 0.5,
        response_body=body,
    )


def priced_three_ways(tmp_path: Path, row: LedgerRow) -> list[tuple[int | None, str | None]]:
    """The row's price as capture wrote it, as `reprice` recomputes it from the ledger, and as
    the team server prices the row the machine syncs."""
    ledger = tmp_path / "db.sqlite"
    writer = LedgerWriter(ledger)
    writer.start()
    writer.submit(Ready(row))
    assert writer.close()
    con = connect(ledger)
    plan = plan_reprice(con, Window(), ())
    assert plan.updates == []  # reprice finds nothing to change
    (change,) = plan.changes.values()
    if change.new_unpriced:
        repriced: tuple[int | None, str | None] = (None, None)
    else:
        (source,) = change.new_sources
        repriced = (change.new_nanousd, source)
    found = con.execute(
        f"SELECT {', '.join(WIRE_COLUMNS)} FROM requests WHERE id = ?", (row.id,)
    ).fetchone()
    sent = wire_row(dict(zip(WIRE_COLUMNS, found, strict=True)), CloudSettings(), "w")
    arrays = columns_for([WireRow(**sent)])
    server = (arrays["cost_nanousd"][0], arrays["price_source"][0])
    assert arrays["wire"] == [row.wire]
    return [(row.cost_nanousd, row.price_source), repriced, server]


def test_a_user_endpoint_speaking_code_assist_is_valued_at_api_price_everywhere(
    tmp_path: Path,
) -> None:
    route = route_for("gateway.internal", 8443, "/v1internal:generateContent", (GATEWAY,))
    assert route is not None and route.wire == "gemini-code-assist"
    row = RowBuilder().build(
        captured(route, "gateway.internal", gemini_body("gemini-2.5-pro")).facts()
    )
    assert (row.model, row.input_tokens, row.wire) == ("gemini-2.5-pro", 1000, "gemini-code-assist")
    # Billed by subscription (the wire's rule): its price is the API-equivalent value, the same
    # in all three places, and `billing` keeps it out of money spent.
    assert row.billing == "subscription"
    prices = priced_three_ways(tmp_path, row)
    assert [cost for cost, _ in prices] == [GEMINI_BODY_VALUE] * 3
    assert len({source for _, source in prices}) == 1


def test_the_self_test_row_costs_zero_everywhere(tmp_path: Path) -> None:
    row = RowBuilder().build(SelfTestCall("0" * 24, time.time(), "halton-meter/1").facts())
    assert (row.provider, row.api, row.wire, row.project) == (
        "halton-meter",
        "self-test",
        "self-test",
        "halton-meter",
    )
    assert (row.attribution, row.attribution_detail, row.client_process) == (
        "self-test",
        None,
        "halton-meter",
    )
    assert priced_three_ways(tmp_path, row) == [(0, "self-test")] * 3


def test_a_metered_row_costs_the_published_price_everywhere(tmp_path: Path) -> None:
    route = route_for("api.anthropic.com", 443, "/v1/messages")
    assert route is not None
    row = RowBuilder().build(captured(route, "api.anthropic.com", anthropic_body()).facts())
    expected = 1000 * SONNET_INPUT * 1000 + 100 * SONNET_OUTPUT * 1000  # nano-USD
    prices = priced_three_ways(tmp_path, row)
    assert [cost for cost, _ in prices] == [expected] * 3
    assert len({source for _, source in prices}) == 1


def test_the_builder_applies_its_overrides() -> None:
    deal = PriceOverride(
        name="deal",
        provider="anthropic",
        model="claude-sonnet-4-5*",
        input_mtok=Decimal(1),
        output_mtok=Decimal(2),
    )
    route = route_for("api.anthropic.com", 443, "/v1/messages")
    assert route is not None
    row = RowBuilder((deal,)).build(captured(route, "api.anthropic.com", anthropic_body()).facts())
    assert (row.cost_nanousd, row.price_source) == (1000 * 1000 + 100 * 2000, "override:deal")


# --- the backfill of `wire` ---------------------------------------------------------------------

OLD_ROWS = [
    # (host, api, the wire the rule gives)
    ("api.anthropic.com", "messages", "anthropic-messages"),
    ("api.anthropic.com", "count_tokens", "anthropic-messages"),
    ("api.openai.com", "chat", "openai-chat"),
    ("api.openai.com", "completions", "openai-completions"),
    ("api.openai.com", "responses", "openai-responses"),
    ("api.openai.com", "embeddings", "openai-embeddings"),
    ("generativelanguage.googleapis.com", "chat", "openai-chat"),
    ("generativelanguage.googleapis.com", "generate_content", "gemini"),
    ("generativelanguage.googleapis.com", "count_tokens", "gemini"),
    ("cloudcode-pa.googleapis.com", "stream_generate_content", "gemini-code-assist"),
    ("cloudcode-pa.googleapis.com", "count_tokens", "gemini-code-assist"),
    ("self-test.halton-meter.invalid", "self-test", "self-test"),
    ("gateway.internal", "embed_content", "gemini"),
    ("gateway.internal", "something-new", None),
]


@pytest.mark.parametrize(("host", "api", "wire"), OLD_ROWS)
def test_backfill_rule(host: str, api: str, wire: str | None) -> None:
    assert backfill_wire(host, api) == wire


def test_backfill_sql_is_the_same_rule() -> None:
    con = sqlite3.connect(":memory:")
    for host, api, wire in OLD_ROWS:
        found = con.execute(f"SELECT {backfill_wire_sql('?1', '?2')}", (host, api)).fetchone()
        assert found[0] == wire


def test_migration_5_backfills_wire_and_leaves_the_rollup_alone(tmp_path: Path) -> None:
    """A ledger written by a release before migration 5 gets `wire` on the next open, and
    migration 6 its `billing`: the daily rollup's sums are what they were, except that the
    Code Assist rows' cost moved from money spent to subscription value."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute(
        "CREATE TABLE _migrations(id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at REAL NOT NULL)"
    )
    for number, name, statements in MIGRATIONS:
        if number < 5:
            for statement in statements:
                old.execute(statement)
            old.execute("INSERT INTO _migrations VALUES (?, ?, 0)", (number, name))
    columns = list(ROW_COLUMNS[: ROW_COLUMNS.index("wire")])  # columns of migrations 1 and 2
    insert = f"INSERT INTO requests ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    rows = [
        sample_row(id=f"{i:024x}", host=host, api=api, cost_nanousd=1000 + i)
        for i, (host, api, _) in enumerate(OLD_ROWS)
    ]
    old.executemany(insert, [row.values()[: len(columns)] for row in rows])
    rollup = old.execute("SELECT * FROM daily_rollup ORDER BY 1, 2, 3, 4, 5").fetchall()
    old.close()
    con = connect(path)
    assert 5 in {row[0] for row in con.execute("SELECT id FROM _migrations")}
    found = dict(con.execute("SELECT id, wire FROM requests").fetchall())
    assert found == {row.id: wire for row, (_, _, wire) in zip(rows, OLD_ROWS, strict=True)}
    billing = dict(con.execute("SELECT id, billing FROM requests").fetchall())
    assert billing == {
        row.id: "subscription" if wire == "gemini-code-assist" else "unknown"
        for row, (_, _, wire) in zip(rows, OLD_ROWS, strict=True)
    }
    subscribed = [row for row in rows if billing[row.id] == "subscription"]
    assert len(subscribed) == 2
    value = sum(row.cost_nanousd or 0 for row in subscribed)
    after = con.execute(
        "SELECT day, project, provider, api, model, requests, cost_nanousd, "
        "subscription_requests, subscription_value_nanousd FROM daily_rollup ORDER BY 1, 2, 3, 4, 5"
    ).fetchall()
    assert [tuple(r[:6]) for r in after] == [tuple(r[:6]) for r in rollup]
    assert sum(r[6] for r in after) == sum(r[12] for r in rollup) - value  # spent
    assert (sum(r[7] for r in after), sum(r[8] for r in after)) == (2, value)
    # The update trigger is back: a reprice still moves a row's cost in the rollup.
    con.execute("UPDATE requests SET cost_nanousd = cost_nanousd + 5 WHERE id = ?", (rows[0].id,))
    total = con.execute("SELECT SUM(cost_nanousd) FROM daily_rollup").fetchone()[0]
    assert total == sum(row.cost_nanousd or 0 for row in rows) - value + 5


def test_a_row_without_wire_is_priced_by_the_backfill_rule() -> None:
    """A row from an older machine (no `wire`) on the team server, or written by an older
    release into a migrated ledger: its wire comes from host and api, then the same rule."""
    base: dict[str, Any] = {
        name: value
        for name, value in asdict(sample_row()).items()
        if name in WIRE_COLUMNS and name != "wire"
    }
    base.update(
        provider="google",
        model="gemini-2.5-pro",
        input_tokens=1000,
        output_tokens=100,
        cache_read_tokens=0,
        cache_write_tokens=0,
        cache_write_1h_tokens=0,
        web_search_requests=0,
        service_tier=None,
    )
    code_assist = WireRow(
        **{**base, "host": "cloudcode-pa.googleapis.com", "api": "generate_content"}
    )
    developer = WireRow(
        **{**base, "host": "generativelanguage.googleapis.com", "api": "generate_content"}
    )
    arrays = columns_for([code_assist, developer])
    assert arrays["wire"] == ["gemini-code-assist", "gemini"]
    # Both at Gemini 2.5 Pro's list price; the Code Assist one is a subscription's value.
    assert arrays["cost_nanousd"] == [GEMINI_BODY_VALUE, GEMINI_BODY_VALUE]
    assert arrays["billing"] == ["subscription", "unknown"]
