"""Codex CLI (npm `@openai/codex` 0.171.0, a native binary inside the npm package) through
`halton-meter run`, against the fake under the real host names: with an API key it speaks
the Responses API over a WebSocket to api.openai.com; logged in with ChatGPT (a fake
`auth.json`: unsigned JWTs, no real credential) it speaks the same protocol to
chatgpt.com/backend-api/codex, after the backend's account check. `run` sets what Codex
needs: HTTPS_PROXY and CODEX_CA_CERTIFICATE (read before SSL_CERT_FILE).

Each run makes a warm-up `response.create` (`generate: false`) and the turn itself: two rows.
Expected costs come from OpenAI's published GPT-4.1 and GPT-5.2-Codex prices; a ChatGPT plan's
calls are subscription rows valued at those API prices (billed by the plan, not per token).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, FakeUpstream, Meter
from tests.fakeupstream import catalog
from tests.test_clients import metered, nano
from tests.test_websocket import RAW, control, expected_cost

CODEX = ROOT / "tests" / "node" / "node_modules" / ".bin" / "codex"
pytestmark = pytest.mark.skipif(
    not CODEX.exists(), reason="the npm test clients are installed by ./scripts/test"
)
ACCOUNT = "11111111-2222-3333-4444-555555555555"
# No update check, no analytics, no plugin or app sync: only the model traffic leaves.
CONFIG = """check_for_update_on_startup = false
model = "{model}"
web_search = "disabled"
[analytics]
enabled = false
[features]
plugins = false
apps = false
"""


def codex_home(tmp_path: Path, model: str) -> Path:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG.format(model=model))
    return home


def fake_jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def chatgpt_login(home: Path) -> str:
    """A ChatGPT login as `codex login` leaves it, with fake tokens; returns the access token."""
    now = int(time.time())
    auth = {
        "https://api.openai.com/auth": {
            "chatgpt_account_id": ACCOUNT,
            "chatgpt_plan_type": "plus",
            "chatgpt_user_id": "user-fake",
        }
    }
    claims = {"iss": "https://auth.openai.com", "exp": now + 86400, "iat": now, **auth}
    access = fake_jwt({**claims, "aud": ["https://api.openai.com/v1"]})
    identity = fake_jwt({**claims, "email": "codex-user@example.invalid"})
    (home / "auth.json").write_text(
        json.dumps(
            {
                "auth_mode": "chatgpt",
                "OPENAI_API_KEY": None,
                "tokens": {
                    "id_token": identity,
                    "access_token": access,
                    "refresh_token": "rt_fake_refresh",
                    "account_id": ACCOUNT,
                },
                "last_refresh": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        )
    )
    return access


def run_codex(meter: Meter, project: str, home: Path, tmp_path: Path, **env: str) -> str:
    done = metered(
        meter,
        project,
        str(CODEX),
        "exec",
        "--skip-git-repo-check",
        "--sandbox",
        "read-only",
        "say hello",
        CODEX_HOME=str(home),
        HOME=str(tmp_path),
        **env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_turn(row: dict[str, Any], wire: str, host: str, model: str) -> None:
    cached = RAW["input_tokens_details"]["cached_tokens"]
    written = RAW["input_tokens_details"]["cache_write_tokens"]
    assert (row["api"], row["wire"], row["host"], row["model"]) == ("responses", wire, host, model)
    assert (
        row["input_tokens"],
        row["cache_read_tokens"],
        row["cache_write_tokens"],
        row["output_tokens"],
        row["reasoning_tokens"],
    ) == (
        RAW["input_tokens"] - cached - written,
        cached,
        written,
        RAW["output_tokens"],
        RAW["output_tokens_details"]["reasoning_tokens"],
    )
    assert (row["status"], row["http_status"], row["tokens_complete"], row["stream"]) == (
        "ok",
        200,
        1,
        1,
    )
    assert row["user_agent"].startswith("codex_exec/0.171.0")
    assert row["client_process"] == "codex"
    assert 0 < row["ttft_ms"] <= row["latency_ms"]


def test_codex_with_an_api_key_over_a_websocket(
    meter: Meter, project: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    home = codex_home(tmp_path, "gpt-4.1")
    out = run_codex(meter, project, home, tmp_path, OPENAI_API_KEY="sk-fake-codex-secret")
    assert catalog.full_text(catalog.DEFAULT_EVENTS) in out
    warmup, turn = meter.wait_rows(project, 2)
    assert (warmup["api"], warmup["wire"], warmup["output_tokens"], warmup["cost_nanousd"]) == (
        "responses_warmup",
        "openai-responses",
        0,
        0,
    )
    check_turn(turn, "openai-responses", "api.openai.com", "gpt-4.1")
    assert turn["web_search_requests"] == 0
    assert turn["cost_nanousd"] == expected_cost()
    # It really was a WebSocket: the fake saw the upgrade Codex makes, with deflate offered.
    sockets = [r for r in control(fake_upstream).requests() if r["method"] == "WS"]
    ours = [r for r in sockets if r["json"] and r["json"].get("model") == "gpt-4.1"][-2:]
    assert [r["json"].get("generate") for r in ours] == [False, None]
    assert ours[-1]["json"]["previous_response_id"] == "resp_0fakews" + "1".zfill(28)
    assert ours[-1]["headers"]["openai-beta"] == "responses_websockets=2026-02-06"
    assert ours[-1]["deflate"] is True


def test_codex_logged_in_with_chatgpt(
    meter: Meter, project: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    home = codex_home(tmp_path, "gpt-5.2-codex")
    access = chatgpt_login(home)
    out = run_codex(meter, project, home, tmp_path)
    assert catalog.full_text(catalog.DEFAULT_EVENTS) in out
    warmup, turn = meter.wait_rows(project, 2)
    assert (warmup["api"], warmup["wire"], warmup["host"]) == (
        "responses_warmup",
        "chatgpt-codex",
        "chatgpt.com",
    )
    check_turn(turn, "chatgpt-codex", "chatgpt.com", "gpt-5.2-codex")
    # Paid by the ChatGPT plan: a subscription row, valued at what the same tokens would cost
    # through the API (GPT-5.2-Codex, OpenAI's published prices per 1M tokens: $1.75 input,
    # $0.175 cached input, $14 output), shown apart from money spent.
    cached = RAW["input_tokens_details"]["cached_tokens"]
    api_value = (
        nano(Decimal("1.75"), RAW["input_tokens"] - cached)
        + nano(Decimal("0.175"), cached)
        + nano(Decimal("14"), RAW["output_tokens"])
    )
    assert (turn["billing"], turn["cost_nanousd"]) == ("subscription", api_value)
    records = control(fake_upstream).requests()
    sockets = [r for r in records if r["method"] == "WS" and r["host"] == "chatgpt.com"]
    assert sockets and sockets[-1]["headers"]["chatgpt-account-id"] == ACCOUNT
    assert sockets[-1]["path"] == "/backend-api/codex/responses"
    # The backend's other paths (the account check Codex needs) were forwarded, not recorded.
    assert any(r["path"] == "/backend-api/wham/accounts/check" for r in records)
    assert len(meter.rows(project)) == 2
    # Nothing of the login reaches the ledger.
    files = (meter.ledger, meter.ledger.with_name("db.sqlite-wal"))
    ledger = b"".join(path.read_bytes() for path in files if path.exists())
    for secret in (access, ACCOUNT, "codex-user@example.invalid", "rt_fake_refresh"):
        assert secret.encode() not in ledger
