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
import sys
from decimal import Decimal
from typing import Any

from halton_meter.providers.websocket import message_type
from tests.conftest import FakeUpstream, Meter
from tests.fakeupstream import catalog
from tests.fakeupstream.client import FakeUpstreamControl
from tests.test_clients import metered, nano

# OpenAI, openai.com/api/pricing, GPT-4.1 per million tokens (cache writes billed as input).
GPT_4_1 = {"input": 2, "cached": "0.50", "output": 8}
RAW = catalog.OPENAI_RESPONSES_USAGE


def ws_client(meter: Meter, project: str, base_url: str, scenario: str, *extra: str) -> Any:
    done = metered(
        meter, project, sys.executable, "-m", "tests.clients.ws_client", base_url, scenario, *extra
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
