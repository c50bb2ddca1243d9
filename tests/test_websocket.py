"""The Responses API over a WebSocket, through `halton-meter run`: one row per `response.create`
with the usage, latency and time to first event the SSE form gives; the warm-up recorded as
what it is; a cut socket leaves an incomplete row; every message passes byte for byte; and
chatgpt.com from a process that is not a configured client is tunnelled, never decrypted.

The client is the OpenAI Python SDK's own WebSocket (`client.responses.connect()`, on the
`websockets` package, which offers permessage-deflate; the fake accepts it). Expected costs
come from OpenAI's published GPT-4.1 prices, written here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from halton_meter.capture.websocket import SocketSession
from halton_meter.providers.base import Route
from halton_meter.providers.websocket import message_type
from tests.conftest import METER, FakeUpstream, Meter, start_meter
from tests.fakeupstream import catalog
from tests.fakeupstream.client import FakeUpstreamControl
from tests.test_clients import metered, nano

# OpenAI, openai.com/api/pricing, GPT-4.1 per million tokens (cache writes billed as input).
GPT_4_1 = {"input": 2, "cached": "0.50", "output": 8}
RAW = catalog.OPENAI_RESPONSES_USAGE


def ws_client(
    meter: Meter, project: str, base_url: str, scenario: str, *extra: str, **env: str
) -> Any:
    done = metered(
        meter,
        project,
        sys.executable,
        "-m",
        "tests.clients.ws_client",
        base_url,
        scenario,
        *extra,
        **env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def control(fake: FakeUpstream) -> FakeUpstreamControl:
    return FakeUpstreamControl(fake.port, fake.pki)


def socket_records(fake: FakeUpstream, marker: str) -> list[dict[str, Any]]:
    """What the fake received on sockets whose first request carried `marker`."""
    records = [r for r in control(fake).requests() if r["method"] == "WS"]
    start = next(i for i, r in enumerate(records) if marker in r["body"])
    return records[start - 1 : start + 2]  # warm-up, first, chained


def expected_cost() -> Decimal:
    cached = RAW["input_tokens_details"]["cached_tokens"]
    uncached = RAW["input_tokens"] - cached  # includes the cache write, billed as input
    return (
        nano(GPT_4_1["input"], uncached)
        + nano(GPT_4_1["cached"], cached)
        + nano(GPT_4_1["output"], RAW["output_tokens"])
    )


def test_each_response_create_is_one_row(meter: Meter, project: str) -> None:
    seen = ws_client(meter, project, "https://api.openai.com/v1", "ok")
    assert seen["outcome"] == "ok"
    assert seen["exchanges"][2]["events"][-1] == "response.completed"
    warmup, first, chained = meter.wait_rows(project, 3)

    # The warm-up (`generate: false`) is its own kind of call: nothing generated, cost 0.
    assert (warmup["api"], warmup["wire"], warmup["model"]) == (
        "responses_warmup",
        "openai-responses",
        "gpt-4.1",
    )
    assert (warmup["input_tokens"], warmup["output_tokens"], warmup["cost_nanousd"]) == (0, 0, 0)
    assert (warmup["status"], warmup["tokens_complete"]) == ("ok", 1)

    cached = RAW["input_tokens_details"]["cached_tokens"]
    written = RAW["input_tokens_details"]["cache_write_tokens"]
    for row, number in ((first, 2), (chained, 3)):
        assert row["api"] == "responses" and row["wire"] == "openai-responses"
        assert (row["host"], row["provider"], row["model"]) == (
            "api.openai.com",
            "openai",
            "gpt-4.1",
        )
        assert row["response_id"] == f"resp_0fakews{number:028d}"
        assert (
            row["input_tokens"],
            row["cache_read_tokens"],
            row["cache_write_tokens"],
            row["output_tokens"],
            row["reasoning_tokens"],
            row["web_search_requests"],
        ) == (
            RAW["input_tokens"] - cached - written,
            cached,
            written,
            RAW["output_tokens"],
            RAW["output_tokens_details"]["reasoning_tokens"],
            0,
        )
        assert (row["status"], row["error_class"], row["http_status"]) == ("ok", None, 200)
        assert (row["stream"], row["tokens_complete"]) == (1, 1)
        assert row["cost_nanousd"] == expected_cost()
        assert row["user_agent"].startswith("OpenAI/Python")
        # Time to the first event, then to the terminal one: both measured, in order.
        assert 0 < row["ttft_ms"] <= row["latency_ms"] < 10_000
    assert json.loads(chained["raw_usage"]) == RAW


def test_messages_pass_byte_for_byte(
    meter: Meter, project: str, fake_upstream: FakeUpstream
) -> None:
    seen = ws_client(meter, project, "https://api.openai.com/v1", "ok")
    meter.wait_rows(project, 3)
    marker = json.loads(seen["exchanges"][1]["sent"])["input"]
    records = socket_records(fake_upstream, marker)
    for exchange, record in zip(seen["exchanges"][:2], records[:2], strict=True):
        # The client's text reached the server unchanged, and the server's reached the client.
        assert record["body"] == exchange["sent"]
        assert record["sent"] == exchange["received"]
        assert record["deflate"] is True  # compressed on both legs; the messages still match
    chained = records[2]["json"]
    assert chained["previous_response_id"] == "resp_0fakews" + "2".zfill(28)


def test_cut_socket_leaves_an_incomplete_row(meter: Meter, project: str) -> None:
    seen = ws_client(meter, project, "https://api.openai.com/v1", "cut")
    assert seen["outcome"] == "cut"
    warmup, cut = meter.wait_rows(project, 2)
    assert warmup["api"] == "responses_warmup" and warmup["tokens_complete"] == 1
    assert (cut["api"], cut["tokens_complete"], cut["status"], cut["error_class"]) == (
        "responses",
        0,
        "error",
        "network",
    )
    # What arrived before the cut: the response's id and model, no usage.
    assert (cut["response_id"], cut["model"]) == ("resp_0fakews" + "2".zfill(28), "gpt-4.1")
    assert cut["output_tokens"] is None and cut["cost_nanousd"] is None


def test_chatgpt_from_another_process_is_tunnelled(
    meter: Meter, project: str, fake_upstream: FakeUpstream
) -> None:
    """Only the processes `[chatgpt] clients` names (Codex) have chatgpt.com decrypted. This
    client trusts the fake's own CA and nothing else: it connects only if the meter did not
    put its certificate in between."""
    seen = ws_client(
        meter,
        project,
        "https://chatgpt.com/backend-api/codex",
        "tunnel",
        str(fake_upstream.pki.ca_cert),
    )
    assert seen["outcome"] == "ok"
    assert seen["exchanges"][1]["received"][0].startswith('{"type":"codex.rate_limits"')
    assert meter.rows(project) == []


def test_message_type_reads_only_the_head() -> None:
    assert message_type(b'{"type":"response.completed","response":{}}') == "response.completed"
    assert message_type(b' {\n "type" : "error", "status": 429}') == "error"
    # A delta that quotes a terminal event's name is a delta.
    delta = b'{"type":"response.output_text.delta","delta":"{\\"type\\":\\"response.completed\\"}"}'
    assert message_type(delta) == "response.output_text.delta"
    assert message_type(b'{"sequence_number":3,"type":"response.created"}') == "response.created"
    late = b'{"padding":"' + b"x" * 70_000 + b'","type":"response.completed"}'
    assert message_type(late) is None  # large and not typed first: never guessed
    assert message_type(b"\x00\xff binary") is None


# --- quota: the 101's headers and the socket's `codex.rate_limits` events, on every row ------

CHATGPT_ACCOUNT = "99999999-8888-7777-6666-555555555555"


def quota_of(meter: Meter, rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(account, header families) kept beside each row, in the rows' order."""
    con = sqlite3.connect(meter.ledger)
    try:
        kept = dict(
            (request_id, (account, json.loads(headers)))
            for request_id, account, headers in con.execute(
                "SELECT request_id, account, headers FROM quota_observations"
            )
        )
    finally:
        con.close()
    return [kept[row["id"]] for row in rows]


def test_socket_rows_keep_the_upgrade_quota_headers(meter: Meter, project: str) -> None:
    ws_client(meter, project, "https://api.openai.com/v1", "ok")
    rows = meter.wait_rows(project, 3)
    assert [row["billing"] for row in rows] == ["api"] * 3  # an API key on the upgrade
    kept = quota_of(meter, rows)
    accounts = {account for account, _ in kept}
    assert len(accounts) == 1 and next(iter(accounts)).startswith("openai:api:local-")
    for _, families in kept:
        # The 101's x-ratelimit-* headers (tests/fakeupstream/ws_wire.py API_HEADERS), whole.
        assert families == {
            "x-ratelimit-": {
                "limit-requests": "10000",
                "remaining-requests": "9999",
                "reset-requests": "6ms",
                "limit-tokens": "30000000",
                "remaining-tokens": "29999000",
                "reset-tokens": "2ms",
            }
        }


@pytest.fixture(scope="module")
def python_meter(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A daemon that decrypts chatgpt.com for this interpreter, as it does for Codex."""
    names = {Path(sys.executable).name, Path(os.path.realpath(sys.executable)).name}
    names |= {"python", "python3"}
    clients = ", ".join(f'"{name}"' for name in sorted(names))
    running = start_meter(
        tmp_path_factory.mktemp("home"), fake_upstream, f"[chatgpt]\nclients = [{clients}]\n"
    )
    yield running
    running.stop()


def test_chatgpt_socket_rows_carry_the_codex_windows(python_meter: Meter, project: str) -> None:
    seen = ws_client(
        python_meter,
        project,
        "https://chatgpt.com/backend-api/codex",
        "ok",
        CHATGPT_ACCOUNT_ID=CHATGPT_ACCOUNT,
    )
    assert seen["outcome"] == "ok"
    rows = python_meter.wait_rows(project, 3)
    assert [(row["wire"], row["billing"]) for row in rows] == [
        ("chatgpt-codex", "subscription")
    ] * 3
    kept = quota_of(python_meter, rows)
    (account,) = {account for account, _ in kept}
    assert account.startswith("openai:subscription:acct-")
    for number, (_, families) in enumerate(kept, start=1):
        codex = families["x-codex-"]
        # The latest `codex.rate_limits` event before the call ended (the fake's Nth response
        # on the socket: 20 + N % of the 5-hour window), over the 101's 12.5 %.
        assert codex["primary-used-percent"] == str(20 + number)
        assert (codex["primary-window-minutes"], codex["secondary-used-percent"]) == ("300", "59")
        assert (codex["secondary-window-minutes"], codex["plan-type"]) == ("10080", "plus")
        assert (codex["credits-has-credits"], codex["credits-balance"]) == ("true", "9")
        assert codex["active-limit"] == "codex"  # only the 101 said this: kept too
    done = subprocess.run(
        [METER, "quota", "--json"],
        env=python_meter.run_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    (view,) = [a for a in json.loads(done.stdout)["accounts"] if a["account"] == account]
    assert view["provider"] == "openai"
    windows = {w["name"]: w for w in view["windows"]}
    five, week = windows["codex-primary"], windows["codex-secondary"]
    assert (five["utilisation"], five["length_seconds"], five["expired"]) == (0.23, 18_000, False)
    assert (week["utilisation"], week["length_seconds"], week["expired"]) == (0.59, 604_800, False)
    assert [(s["project"], s["requests"]) for s in five["projects"]] == [(project, 3)]
    # The account is named without its id: nothing of the login reaches the ledger.
    files = (python_meter.ledger, python_meter.ledger.with_name("db.sqlite-wal"))
    ledger = b"".join(path.read_bytes() for path in files if path.exists())
    assert CHATGPT_ACCOUNT.encode() not in ledger and b"sk-fake-ws-client" not in ledger


def test_socket_quota_follows_events_and_wrapped_errors() -> None:
    """The hook keeps references; the writer thread maps the last event and a wrapped
    error's headers over the 101's, newest winning member by member."""
    session = SocketSession(
        route=Route("openai", "chatgpt-codex", "responses"),
        host="chatgpt.com",
        project="p",
        user_agent=None,
        lookup=None,
        billing="subscription",
        quota_headers={"x-codex-": {"primary-used-percent": "12.5", "active-limit": "codex"}},
        quota_account="openai:subscription:acct-x",
    )
    calls: list[Any] = []

    def message(text: str, *, from_client: bool) -> WebSocketMessage:
        return WebSocketMessage(Opcode.TEXT, from_client, text.encode(), 1.0)

    event = {
        "type": "codex.rate_limits",
        "metered_limit_name": "codex_bengalfox",
        "rate_limits": {"primary": {"used_percent": 7.5, "window_minutes": 60}},
        "credits": {"balance": "3"},  # the account's, said only by the default limit
    }
    error = {
        "type": "error",
        "status": 429,
        "error": {"type": "usage_limit_reached"},
        "headers": {"x-codex-primary-used-percent": "100.0", "x-codex-primary-window-minutes": 300},
    }
    session.see(message('{"type":"response.create","model":"m"}', from_client=True), calls.append)
    session.see(message(json.dumps(event), from_client=False), calls.append)
    session.see(message(json.dumps(error), from_client=False), calls.append)
    (call,) = calls
    facts = call.facts()
    assert facts.quota_headers == {
        "x-codex-": {
            "primary-used-percent": "100.0",
            "primary-window-minutes": "300",
            "active-limit": "codex",
            "bengalfox-primary-used-percent": "7.5",
            "bengalfox-primary-window-minutes": "60",
        }
    }
    assert (facts.quota_account, facts.billing) == ("openai:subscription:acct-x", "subscription")
    assert session.quota_headers == {  # the session's own snapshot is never changed
        "x-codex-": {"primary-used-percent": "12.5", "active-limit": "codex"}
    }
