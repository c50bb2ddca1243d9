"""Budgets that block calls made over a WebSocket (Responses over a WebSocket, as Codex CLI
speaks it): a `response.create` in a blocked scope is answered by the meter with the
provider's wrapped-error event (status 400: the one Codex shows with its message and does not
retry; budgets/refusal.py says why), never forwarded and never recorded; the socket stays
open, another scope goes on, and a response already under way is not cut.

Clients: the real Codex CLI (npm `@openai/codex` 0.171.0) with an API key, with a ChatGPT
login, and over HTTPS (where it gets the same 400), and the OpenAI Python SDK's own Responses
WebSocket for a refusal on a socket that stays open.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import METER, ROOT, FakeUpstream, Meter, start_meter, wait_for
from tests.test_budget_block import budget_config, wait_blocking
from tests.test_codex_cli import CODEX, chatgpt_login, codex_home
from tests.test_websocket import control

MESSAGE = "Halton Meter budget 'acme' is used up"
HOW_TO_GO_ON = "halton-meter budget allow acme --for 1h"


def creates(fake: FakeUpstream) -> int:
    """How many `response.create` messages reached the fake, on any socket."""
    records = control(fake).requests()
    return sum(
        1
        for r in records
        if r["method"] == "WS" and (r["json"] or {}).get("type") == "response.create"
    )


@pytest.fixture
def socket_meter(fake_upstream: FakeUpstream, tmp_path: Path) -> Any:
    meters: list[Meter] = []

    def start(extra: str) -> Meter:
        started = start_meter(tmp_path / "home", fake_upstream, extra_config=extra)
        meters.append(started)
        return started

    yield start
    for running in meters:
        running.stop()


# The OpenAI API without WebSockets: Codex then POSTs /v1/responses (SSE), as it does for
# providers a user defines and after falling back from a failing socket.
HTTPS_ONLY = """
[model_providers.openai-https]
name = "OpenAI over HTTPS"
base_url = "https://api.openai.com/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
supports_websockets = false
"""


def codex(
    meter: Meter,
    project: str,
    tmp_path: Path,
    name: str,
    *,
    chatgpt: bool = False,
    https: bool = False,
) -> subprocess.CompletedProcess[str]:
    """One `codex exec` turn, with an API key or (`chatgpt`) a fake ChatGPT login; `https`:
    over HTTPS, not a WebSocket."""
    home = codex_home(tmp_path / name, "gpt-5.2-codex" if chatgpt else "gpt-4.1")
    if https:
        config = home / "config.toml"
        config.write_text('model_provider = "openai-https"\n' + config.read_text() + HTTPS_ONLY)
    login = {"OPENAI_API_KEY": "sk-fake-codex-secret"}
    if chatgpt:
        chatgpt_login(home)
        login = {}
    return subprocess.run(
        [METER, "run", "--project", project, "--", str(CODEX), "exec", "--skip-git-repo-check",
         "--sandbox", "read-only", "say hello"],
        env=meter.run_env(CODEX_HOME=str(home), HOME=str(tmp_path / name), **login),
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


@pytest.mark.skipif(
    not CODEX.exists(), reason="the npm test clients are installed by ./scripts/test"
)
def test_codex_over_a_websocket_gets_the_block_with_the_message(
    socket_meter: Any, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    for name in ("a", "b", "c", "d"):
        (tmp_path / name).mkdir()
    meter = socket_meter(budget_config("acme", "acme") + budget_config("other", "beta", "warn"))
    first = codex(meter, "acme", tmp_path, "a")
    assert first.returncode == 0, first.stderr  # under the limit: goes through
    meter.wait_rows("acme", 2)  # the warm-up and the turn
    wait_blocking(meter, "acme")
    before = creates(fake_upstream)

    refused = codex(meter, "acme", tmp_path, "b")
    # Codex stops with its error, the budget's message in it, and does not retry or fall
    # back to HTTPS (a 400 is final for it).
    assert refused.returncode != 0
    assert MESSAGE in refused.stderr and HOW_TO_GO_ON in refused.stderr, refused.stderr
    assert "Falling back from WebSockets" not in refused.stderr
    assert "Reconnecting" not in refused.stderr
    # Nothing reached the provider, nothing was recorded.
    assert creates(fake_upstream) == before
    assert len(meter.rows("acme")) == 2
    wait_for(
        lambda: any(
            b["name"] == "acme" and b["blocked_calls"] >= 1
            for b in json.loads((meter.home / "budget-state.json").read_text())["budgets"]
        ),
        15,
        "the refusals to be counted",
    )

    # Another scope is not blocked.
    other = codex(meter, "beta", tmp_path, "c")
    assert other.returncode == 0, other.stderr
    meter.wait_rows("beta", 2)

    # `allow --for` lets Codex through again.
    done = subprocess.run(
        [METER, "budget", "allow", "acme", "--for", "1h"], env=meter.run_env(),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def allowed() -> bool:
        state = json.loads((meter.home / "budget-state.json").read_text())
        return any(b["name"] == "acme" and b["state"] != "blocking" for b in state["budgets"])

    wait_for(allowed, 15, "the allowance")
    again = codex(meter, "acme", tmp_path, "d")
    assert again.returncode == 0, again.stderr
    meter.wait_rows("acme", 4)


@pytest.mark.skipif(
    not CODEX.exists(), reason="the npm test clients are installed by ./scripts/test"
)
def test_codex_on_a_chatgpt_plan_is_stopped_by_its_quota_share(
    socket_meter: Any, tmp_path: Path
) -> None:
    """A quota-share budget (acme: 10 % of the ChatGPT plan's 5-hour window) over Codex's own
    socket: the windows come from the backend's `x-codex-*` headers and `codex.rate_limits`
    events (the fake reports 20 %+), so after the first turn acme is past its share and the
    next turn is refused on the WebSocket, with the message."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    meter = socket_meter(
        """
[[budgets]]
name = "codex-share"
project = "acme"
quota_window = "codex-primary"
quota_percent = 10
thresholds = [100]
action = "block"
"""
    )
    first = codex(meter, "acme", tmp_path, "a", chatgpt=True)
    assert first.returncode == 0, first.stderr  # no window seen yet: goes through
    rows = meter.wait_rows("acme", 2)
    assert {row["billing"] for row in rows} == {"subscription"}
    wait_blocking(meter, "codex-share")
    refused = codex(meter, "acme", tmp_path, "b", chatgpt=True)
    assert refused.returncode != 0
    assert "Halton Meter budget 'codex-share' is used up" in refused.stderr, refused.stderr
    assert "of the codex-primary window of its openai quota" in refused.stderr
    assert "Reconnecting" not in refused.stderr
    assert len(meter.rows("acme")) == 2


@pytest.mark.skipif(
    not CODEX.exists(), reason="the npm test clients are installed by ./scripts/test"
)
def test_codex_over_https_gets_the_block_with_the_message_too(
    socket_meter: Any, tmp_path: Path
) -> None:
    """Codex shows any 429 as a fixed text ("Quota exceeded. Check your plan and billing
    details."), so its refused POST gets the 400 its socket gets; the OpenAI SDK still gets
    its 429 (test_budget_block.py)."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    meter = socket_meter(budget_config("acme", "acme"))
    first = codex(meter, "acme", tmp_path, "a", https=True)
    assert first.returncode == 0, first.stderr
    (row,) = meter.wait_rows("acme", 1)  # over HTTPS: no warm-up
    assert (row["api"], row["stream"]) == ("responses", 1)
    wait_blocking(meter, "acme")
    refused = codex(meter, "acme", tmp_path, "b", https=True)
    assert refused.returncode != 0
    assert MESSAGE in refused.stderr and HOW_TO_GO_ON in refused.stderr, refused.stderr
    assert "Quota exceeded" not in refused.stderr
    assert len(meter.rows("acme")) == 1


def test_a_socket_that_stays_open_is_refused_its_next_call_only(
    socket_meter: Any, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    """The first response on the socket crosses the limit; it is delivered whole. The next
    `response.create` on the same socket gets the refusal event and the socket stays usable
    (the client closes it normally)."""
    meter = socket_meter(budget_config("acme", "acme"))
    go_on = tmp_path / "go-on"
    client = subprocess.Popen(
        [METER, "run", "--project", "acme", "--", sys.executable, "-m", "tests.clients.ws_client",
         "https://api.openai.com/v1", "ok"],
        env=meter.run_env(WS_CLIENT_WAIT_FOR=str(go_on)), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        meter.wait_rows("acme", 2, timeout=60)  # the warm-up and the first response
        wait_blocking(meter, "acme")
        before = creates(fake_upstream)
    finally:
        go_on.touch()
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    seen = json.loads(out)
    assert seen["outcome"] == "ok"
    _warmup, first, chained = seen["exchanges"]
    assert json.loads(first["received"][-1])["type"] == "response.completed"  # not cut
    assert chained["events"] == ["error"]
    error = chained["error"]
    assert error["status"] == 400 and error["error"]["code"] == "budget_exceeded"
    assert MESSAGE in error["error"]["message"]
    assert creates(fake_upstream) == before  # the chained create never left the meter
    assert len(meter.rows("acme")) == 2


# --- in process: which `response.create` is refused -----------------------------------------


class _Blocking:
    """A tracker in which one budget blocks every call (the hook's side of `check`)."""

    def __init__(self) -> None:
        from halton_meter.budget_model import Budget

        self.budget = Budget(name="acme", amount_usd=1.0, period="day", action="block")
        self.blocking = (self.budget,)

    def check(self, *_: Any) -> Any:
        from halton_meter.budgets.tracker import Refusal

        return Refusal(self.budget, 2 * 10**9, self.budget.window(1_800_000_000.0))


def _message(from_client: bool, body: dict[str, Any]) -> Any:
    from mitmproxy.websocket import WebSocketMessage
    from wsproto.frame_protocol import Opcode

    return WebSocketMessage(Opcode.TEXT, from_client, json.dumps(body).encode())


def test_only_a_create_with_nothing_in_flight_is_refused() -> None:
    """A create sent while a response is still streaming on the socket (a client that
    pipelines) goes through, so the refusal can never land inside that response; the next
    create, with nothing in flight, is refused: dropped, answered with the wrapped error, no
    call recorded. Every server message is relayed untouched."""
    import asyncio

    from mitmproxy.test import taddons, tflow

    from halton_meter.capture.addon import MeterAddon

    handed: list[Any] = []
    addon = MeterAddon(handed.append, own_ports=(9765,), budgets=_Blocking())  # type: ignore[arg-type]
    f = tflow.twebsocketflow()
    f.request.host, f.request.port, f.request.scheme = "api.openai.com", 443, "https"
    f.request.path = "/v1/responses"
    f.request.headers["host"] = "api.openai.com"
    assert f.websocket is not None
    f.websocket.messages.clear()
    injected: list[tuple[Any, ...]] = []

    async def scenario() -> list[Any]:
        with taddons.context(addon) as tctx:
            tctx.master.commands.call = lambda *args: injected.append(args)  # type: ignore[method-assign]
            addon.requestheaders(f)
            addon.websocket_start(f)
            seen = []
            for from_client, body in (
                (True, {"type": "response.create", "model": "gpt-4.1"}),  # A: refused
                (True, {"type": "response.create", "model": "gpt-4.1"}),  # B: refused too
            ):
                message = _message(from_client, body)
                f.websocket.messages.append(message)
                await addon.websocket_message(f)
                seen.append(message.dropped)
            # One forwarded while nothing blocked, then a create while it streams.
            addon._budgets = None
            first = _message(True, {"type": "response.create", "model": "gpt-4.1"})
            f.websocket.messages.append(first)
            await addon.websocket_message(f)
            addon._budgets = _Blocking()  # type: ignore[assignment]
            f.websocket.messages.append(_message(False, {"type": "response.created"}))
            await addon.websocket_message(f)
            pipelined = _message(True, {"type": "response.create", "model": "gpt-4.1"})
            f.websocket.messages.append(pipelined)
            await addon.websocket_message(f)
            seen.append(pipelined.dropped)
            delta = _message(False, {"type": "response.output_text.delta", "delta": "hi"})
            f.websocket.messages.append(delta)
            await addon.websocket_message(f)
            seen.append(delta.dropped)
            return seen

    seen = asyncio.run(scenario())
    assert seen == [True, True, False, False]
    assert len(injected) == 2
    for command, target, to_client, event, is_text in injected:
        assert (command, target, to_client, is_text) == ("inject.websocket", f, True, True)
        refusal = json.loads(event)
        assert refusal["type"] == "error" and refusal["status"] == 400
        assert "budget 'acme' is used up" in refusal["error"]["message"]
    assert handed == []  # the refused creates opened no call
