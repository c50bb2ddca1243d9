"""Captured streams put back together from every wire format the issue names, through the
real daemon: Anthropic, OpenAI Chat and Responses (SSE and WebSocket), Gemini (SSE, the
JSON-array stream, Code Assist) and Bedrock (invoke with Anthropic events, Converse). The
expected answer is the fake upstream's text (tests/fakeupstream/catalog.py), not what the
meter's own parsers make of it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from halton_meter.bodies.store import BodyStore
from tests.conftest import FakeUpstream, Meter, start_meter, wait_for
from tests.fakeupstream import catalog
from tests.test_clients import metered

ANSWER = catalog.full_text(catalog.DEFAULT_EVENTS)
THINKING = "".join(catalog.THINKING_TEXT_PIECES)
PROMPT = "WIRE-PROMPT-3141 what is up"

CHAT = {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
MESSAGES = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": PROMPT}],
}
RESPONSES = {"model": "gpt-4.1", "stream": True, "input": PROMPT}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
CODE_ASSIST = {"model": "gemini-2.5-pro", "project": "p-1", "request": GEMINI}
BEDROCK_INVOKE = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": PROMPT}],
}
CONVERSE = {"messages": [{"role": "user", "content": [{"text": PROMPT}]}]}
GOOGLE = "https://generativelanguage.googleapis.com"
BEDROCK = "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
SONNET_ON_BEDROCK = "global.anthropic.claude-sonnet-4-5-20250929-v1%3A0"

THINKS = {**MESSAGES, "thinking": {"type": "enabled", "budget_tokens": 1024}}

# (case, url, body): each a streamed call; every one answers ANSWER (after THINKING if asked).
CASES = [
    ("anthropic", "https://api.anthropic.com/v1/messages", MESSAGES),
    ("anthropic-thinking", "https://api.anthropic.com/v1/messages", THINKS),
    ("openai-chat", "https://api.openai.com/v1/chat/completions", CHAT),
    ("openai-responses", "https://api.openai.com/v1/responses", RESPONSES),
    (
        "gemini-sse",
        f"{GOOGLE}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        GEMINI,
    ),
    ("gemini-array", f"{GOOGLE}/v1beta/models/gemini-2.5-flash:streamGenerateContent", GEMINI),
    (
        "code-assist",
        "https://cloudcode-pa.googleapis.com/v1internal:streamGenerateContent?alt=sse",
        CODE_ASSIST,
    ),
    (
        "bedrock-invoke",
        f"{BEDROCK}{SONNET_ON_BEDROCK}/invoke-with-response-stream",
        BEDROCK_INVOKE,
    ),
    ("bedrock-converse", f"{BEDROCK}{SONNET_ON_BEDROCK}/converse-stream", CONVERSE),
]


@pytest.fixture(scope="module")
def capturing(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Meter]:
    extra = '[[capture]]\nproject = "wire-*"\n'
    meter = start_meter(tmp_path_factory.mktemp("wires-home"), fake_upstream, extra_config=extra)
    yield meter
    assert meter.stop() == 0


def stored(meter: Meter, project: str, count: int = 1) -> list[dict[str, Any]]:
    rows = meter.wait_rows(project, count)
    store = BodyStore(meter.home / "bodies.sqlite")
    try:
        bodies = wait_for(
            lambda: all(r["id"] in set(store.ids()) for r in rows) and rows,
            20,
            f"the bodies of {project}",
        )
        documents = []
        for row in bodies:
            body = store.get(row["id"])
            assert body is not None
            documents.append(body.document)
        return documents
    finally:
        store.close()


def parts(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["type"], p.get("text") or p.get("arguments")) for p in document["message"]["parts"]]


@pytest.mark.parametrize(("case", "url", "body"), CASES, ids=[c[0] for c in CASES])
def test_a_captured_stream_is_the_answer_the_client_got(
    capturing: Meter, tmp_path: Path, case: str, url: str, body: dict[str, Any]
) -> None:
    project = f"wire-{case}"
    args = ["curl", "-sS", "--fail-with-body", "-N", url, "--data", json.dumps(body)]
    args += ["-H", "content-type: application/json", "-H", "authorization: Bearer sk-test-0001"]
    done = metered(capturing, project, *args, "-o", str(tmp_path / "received"))
    assert done.returncode == 0, done.stderr
    (document,) = stored(capturing, project)
    assert PROMPT in document["request"]
    expected = [("thinking", THINKING)] if "thinking" in body else []
    assert parts(document) == [*expected, ("text", ANSWER)], document["message"]
    assert document["message"]["stop_reason"] in ("end_turn", "stop", "completed", "STOP")
    assert document["response"] is None and document["truncated"] == {}


def test_responses_over_a_websocket_are_captured(capturing: Meter) -> None:
    """Codex's transport: one row per `response.create`, each with its answer."""
    done = metered(
        capturing,
        "wire-websocket",
        sys.executable,
        "-m",
        "tests.clients.ws_client",
        "https://api.openai.com/v1",
        "ok",
    )
    assert done.returncode == 0, done.stderr
    warmup, first, chained = stored(capturing, "wire-websocket", 3)
    assert json.loads(warmup["request"])["generate"] is False
    assert parts(warmup) == []  # a warm-up generates nothing
    assert json.loads(first["request"])["input"].startswith("Say hello")
    assert json.loads(chained["request"])["input"] == "And again"
    for document in (first, chained):
        assert parts(document) == [("text", ANSWER)]
        assert document["message"]["stop_reason"] == "completed"
