"""The dashboard's request page in Debian's headless chromium: a captured conversation whose
prompt holds markup is shown as text (no script runs, no element is made), with the call's
tokens and cost beside each part; the body is fetched only with the token, and a page of
another origin cannot read it, even one allow-listed for the API's other reads."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from halton_meter.bodies.assemble import assemble_stream
from tests.apihelpers import Api
from tests.conftest import METER, ROOT, FakeUpstream, free_port, start_meter
from tests.test_dashboard import ARGS, ARTIFACTS, CHROMIUM

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/test does)"
)

ANTHROPIC = "https://api.anthropic.com/v1/messages"
# Markup a page would run if it put the prompt in as HTML: each sets a global flag.
HOSTILE = (
    "Explain this page: <script>window.__pwned = 'script'</script> "
    "<img src=x onerror=\"window.__pwned = 'img'\"> <b>bold?</b> ZEBRA-DASH-42"
)

# Claude Sonnet 4.5's published prices (USD per million tokens) and the fake upstream's usage
# for Anthropic (tests/fakeupstream/catalog.py ANTHROPIC_USAGE): input 1234, 5-minute cache
# writes 1801, 1-hour 544, cache reads 3456, output 567, two web searches at $10 per 1000
# (web fetches cost nothing beyond their tokens).
EXPECTED_USD = (
    Decimal(1234) * 3
    + Decimal(1801) * Decimal("3.75")
    + Decimal(544) * 6
    + Decimal(3456) * Decimal("0.30")
    + Decimal(567) * 15
) / 1_000_000 + 2 * Decimal("0.01")


def anthropic_call(env: dict[str, str], project: str, content: str, stream: bool) -> str:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "system": "Answer in plain words <i>please</i>",
        "messages": [{"role": "user", "content": content}],
    }
    done = subprocess.run(
        [
            *(METER, "run", "--project", project, "--", "curl", "-sS", "-N", ANTHROPIC),
            *("-H", "content-type: application/json"),
            *("-H", "x-api-key: sk-ant-api03-" + "k" * 40),
            *("-H", "anthropic-version: 2023-06-01", "--data", json.dumps(body)),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class _Elsewhere(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        page = b"<!doctype html><title>elsewhere</title><p>another site</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[str]:
    """A page of another origin (another loopback port), as a site the user visits."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Elsewhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_request_page_shows_the_conversation_as_text_and_keeps_it_from_other_origins(
    fake_upstream: FakeUpstream, tmp_path: Path, elsewhere: str
) -> None:
    from playwright.sync_api import sync_playwright

    # The other origin may read the API's numbers ([cors] allow_origins), never a body.
    extra = f'[[capture]]\nproject = "dash-*"\n\n[cors]\nallow_origins = ["{elsewhere}"]\n'
    meter = start_meter(tmp_path / "home", fake_upstream, extra_config=extra)
    try:
        received = anthropic_call(meter.run_env(), "dash-body", HOSTILE, stream=True)
        anthropic_call(meter.run_env(), "plain", "nothing to keep", stream=False)
        (row,) = meter.wait_rows("dash-body", 1)
        (plain,) = meter.wait_rows("plain", 1)
        api = Api.of(meter)
        assert Decimal(api.json(f"/v1/requests/{row['id']}")["cost_usd"]) == EXPECTED_USD
        deadline = time.monotonic() + 20
        while not api.json(f"/v1/requests/{row['id']}")["body_captured"]:
            assert time.monotonic() < deadline, "the body was not stored"
            time.sleep(0.2)
        expected_parts = assemble_stream(received.encode(), "text/event-stream")["parts"]
        assert expected_parts

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                _shown_as_text(browser, api, row["id"], expected_parts)
                _locked_without_the_token(browser, api, row["id"], plain["id"])
                _refused_to_another_origin(browser, api, row["id"], elsewhere)
            finally:
                browser.close()
    finally:
        assert meter.stop() == 0


def _shown_as_text(browser: Any, api: Api, call_id: str, parts: list[dict[str, Any]]) -> None:
    # Without the page's CSP, so that markup put in as HTML would run: the test must see it.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    body_requests: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: body_requests.append(r.headers) if r.url.endswith(f"{call_id}/body") else None,
    )
    page.goto(f"{api.base}/#token={api.token}")
    page.wait_for_selector("#chart-spend-30d")
    # From the project's requests table, the row's link opens the request page.
    page.goto(f"{api.base}/#/projects/dash-body")
    page.click(f'#requests-table tr[data-id="{call_id}"] a')
    page.wait_for_selector("#conversation .turn")
    page.wait_for_timeout(500)  # an <img onerror> would have fired by now
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#conversation script, #conversation img, #conversation b").count() == 0
    prompts = page.locator('#conversation [data-part="prompt"] .turn-text').all_inner_texts()
    assert prompts == ["Answer in plain words <i>please</i>", HOSTILE]
    answers = page.locator('#conversation [data-part="answer"] .turn-text').all_inner_texts()
    assert answers == [
        f"{p['name']}({p['arguments']})" if p["type"] == "tool_call" else p["text"] for p in parts
    ]
    # Beside each part: the call's tokens and its cost ($0.0433 at the published prices).
    cost = f"call cost ${EXPECTED_USD:.4f}"
    for meta in page.locator('#conversation [data-part="prompt"] .turn-meta').all_inner_texts():
        assert "1,234 input tokens" in meta and "3,456 cache read" in meta and cost in meta
    for meta in page.locator('#conversation [data-part="answer"] .turn-meta').all_inner_texts():
        assert "567 output tokens" in meta and cost in meta
    assert page.inner_text("#card-call-cost .value") == f"${EXPECTED_USD:.4f}"
    assert [h.get("x-halton-token") for h in body_requests] == [api.token]
    page.screenshot(path=str(ARTIFACTS / "request-body.png"), full_page=True)
    assert errors == []
    context.close()


def _locked_without_the_token(browser: Any, api: Api, call_id: str, plain_id: str) -> None:
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/body") else None)
    page.goto(f"{api.base}/#/requests/{call_id}")
    page.wait_for_selector("#conversation-locked")
    assert "halton-meter dashboard" in page.inner_text("#conversation-locked")
    assert page.inner_text("#card-call-cost .value") == f"${EXPECTED_USD:.4f}"
    assert asked == []  # without the token the page does not even ask
    # A project that does not capture: the page says so.
    page.goto(f"{api.base}/#/requests/{plain_id}")
    page.wait_for_selector("#conversation-off")
    assert "ZEBRA" not in page.inner_text("main")
    context.close()


def _refused_to_another_origin(browser: Any, api: Api, call_id: str, elsewhere: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(elsewhere + "/")
    fetched = page.evaluate(
        """async ([base, id, token]) => {
            const tryFetch = async (path, headers) => {
                try {
                    const r = await fetch(base + path, { headers, cache: "no-store" });
                    return { status: r.status, text: await r.text() };
                } catch (error) {
                    return { refused: String(error) };
                }
            };
            return {
                numbers: await tryFetch(`/v1/requests/${id}`, {}),
                withToken: await tryFetch(`/v1/requests/${id}/body`, { "X-Halton-Token": token }),
                plain: await tryFetch(`/v1/requests/${id}/body`, {}),
            };
        }""",
        [api.base, call_id, api.token],
    )
    # The allow-listed origin reads the numbers...
    assert fetched["numbers"]["status"] == 200
    assert json.loads(fetched["numbers"]["text"])["body_captured"] is True
    # ...but the body, with the token or without, never reaches it.
    assert "refused" in fetched["withToken"], fetched["withToken"]
    assert "refused" in fetched["plain"], fetched["plain"]
    assert "ZEBRA" not in json.dumps(fetched)
    context.close()
