"""Claude Code and Gemini CLI as tested clients (issue 13, item 4): each through
`halton-meter run` and through the shell variables `init --apps` writes, with an API key and
with the subscription login's wire traffic (fake tokens; the fake answers as each backend does,
rate-limit headers included). Rows are checked field by field: billing kind, tokens, quota
headers. Expected tokens come from the fake's catalogue; prices from the published lists."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from halton_meter.lifecycle.shell import env_block
from tests.conftest import METER, ROOT, Meter
from tests.fakeupstream import catalog
from tests.test_billing_quota import assert_nothing_secret_under, quota_rows

NODE_DIR = ROOT / "tests" / "node"
BIN = NODE_DIR / "node_modules" / ".bin"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").exists(),
    reason="node and the npm test clients are installed by ./scripts/test",
)

CLAUDE_OAUTH = "sk-ant-oat01-fake-claude-max-login-0002"
CLAUDE_KEY = "sk-ant-api03-fake-claude-code-key-0002"


def launch(
    meter: Meter, how: str, project: str, argv: list[str], cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """`run`: `halton-meter run --project P -- CMD`. `shell`: the block `init --apps` writes
    into the shell's rc file, sourced by sh, with `HALTON_PROJECT` naming the project."""
    if how == "run":
        command = [METER, "run", "--project", project, "--", *argv]
        environ = meter.run_env(**env)
    else:
        block = cwd / "halton-meter.sh"
        block.write_text(env_block(meter.port, meter.bundle))
        command = ["sh", "-c", '. "$0"; exec "$@"', str(block), *argv]
        environ = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        environ.update(HALTON_PROJECT=project, **env)
    return subprocess.run(
        command, env=environ, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def claude(meter: Meter, how: str, project: str, home: Path, **credential: str) -> Any:
    home.mkdir(parents=True, exist_ok=True)
    return launch(
        meter, how, project,
        [str(BIN / "claude"), "-p", "say hello", "--model", "claude-sonnet-4-5"],
        home, HOME=str(home), CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1", **credential,
    )  # fmt: skip


@pytest.mark.parametrize("how", ["run", "shell"])
@pytest.mark.parametrize("login", ["api-key", "subscription"])
def test_claude_code(meter: Meter, project: str, tmp_path: Path, how: str, login: str) -> None:
    if login == "api-key":
        credential = {"ANTHROPIC_API_KEY": CLAUDE_KEY}
    else:
        credential = {"CLAUDE_CODE_OAUTH_TOKEN": CLAUDE_OAUTH}
    done = claude(meter, how, project, tmp_path / "home", **credential)
    assert done.returncode == 0, done.stdout + done.stderr
    assert catalog.full_text(catalog.DEFAULT_EVENTS) in done.stdout
    (row,) = meter.wait_rows(project, 1)
    raw = catalog.ANTHROPIC_USAGE
    assert row["user_agent"].startswith("claude-cli/")
    assert (row["provider"], row["api"], row["stream"], row["tokens_complete"]) == (
        "anthropic", "messages", 1, 1,
    )  # fmt: skip
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (
        raw["input_tokens"], raw["cache_read_input_tokens"], raw["output_tokens"],
    )  # fmt: skip
    assert row["attribution"] == "tag" and row["project"] == project
    assert row["cost_nanousd"] is not None and row["cost_nanousd"] > 0
    (kept,) = quota_rows(meter, project)
    family = json.loads(kept["headers"])["anthropic-ratelimit-"]
    if login == "subscription":
        assert row["billing"] == "subscription"
        assert family["unified-5h-utilization"] == catalog.UNIFIED_5H_UTILIZATION
        assert family["unified-7d-utilization"] == catalog.UNIFIED_7D_UTILIZATION
        for name, value in catalog.UNIFIED_UNKNOWN_MEMBERS:
            assert family[name.removeprefix("anthropic-ratelimit-")] == value
        assert kept["account"] == f"anthropic:subscription:org-{catalog.ANTHROPIC_ORG_ID}"
    else:
        assert row["billing"] == "api"
        assert family == {
            f"{kind}-{field}": value
            for kind, (limit, remaining) in catalog.ANTHROPIC_API_LIMITS.items()
            for field, value in (
                ("limit", str(limit)), ("remaining", str(remaining)),
                ("reset", family[f"{kind}-reset"]),
            )
        }  # fmt: skip
    assert_nothing_secret_under(meter.home, [CLAUDE_OAUTH, CLAUDE_KEY], [catalog.ACCOUNT_EMAIL])


GEMINI_KEY = "AIzaSyFakeGeminiApiKey000000000000000003"
GOOGLE_TOKEN = "ya29.fake-google-login-access-token-0003"


def gemini(meter: Meter, how: str, project: str, home: Path, **credential: str) -> Any:
    home.mkdir(parents=True, exist_ok=True)
    return launch(
        meter, how, project,
        # An explicit model: no routing classifier call (it asks JSON of a schema the fake's
        # text does not meet), so one prompt is one call.
        [str(BIN / "gemini"), "--skip-trust", "-m", "gemini-2.5-pro", "-p", "say hello"],
        home, HOME=str(home), GEMINI_CLI_NO_RELAUNCH="true", **credential,
    )  # fmt: skip


# Google's published prices (ai.google.dev/gemini-api/docs/pricing), Gemini 2.5 Pro, prompts up
# to 200k tokens, USD per million: input 1.25, cached input 0.125, output (thinking included) 10.
PRO = {"input": Decimal("1.25"), "cached": Decimal("0.125"), "output": Decimal(10)}


def gemini_expected(raw: dict[str, int]) -> tuple[int, int, int, int]:
    """(input, cache read, output, nano-USD): Gemini's prompt count includes the cached part
    and the tool-use prompt; output is candidates plus thoughts."""
    cached = raw["cachedContentTokenCount"]
    fresh = raw["promptTokenCount"] + raw["toolUsePromptTokenCount"] - cached
    output = raw["candidatesTokenCount"] + raw["thoughtsTokenCount"]
    cost = (PRO["input"] * fresh + PRO["cached"] * cached + PRO["output"] * output) * 1000
    return fresh, cached, output, int(cost)


@pytest.mark.parametrize("how", ["run", "shell"])
@pytest.mark.parametrize("login", ["api-key", "google"])
def test_gemini_cli(meter: Meter, project: str, tmp_path: Path, how: str, login: str) -> None:
    if login == "api-key":
        credential = {"GEMINI_API_KEY": GEMINI_KEY}
        raw, host, billing = catalog.GEMINI_USAGE, "generativelanguage.googleapis.com", "api"
    else:  # Login with Google: Code Assist (cloudcode-pa) with an OAuth access token
        credential = {"GOOGLE_GENAI_USE_GCA": "true", "GOOGLE_CLOUD_ACCESS_TOKEN": GOOGLE_TOKEN}
        raw, host, billing = (
            catalog.CODE_ASSIST_USAGE,
            "cloudcode-pa.googleapis.com",
            "subscription",
        )
    done = gemini(meter, how, project, tmp_path / "home", **credential)
    assert done.returncode == 0, done.stdout + done.stderr
    assert catalog.full_text(catalog.DEFAULT_EVENTS) in done.stdout
    (row,) = meter.wait_rows(project, 1)
    fresh, cached, output, cost = gemini_expected(raw)
    assert row["user_agent"].startswith("GeminiCLI")
    assert (row["host"], row["provider"], row["api"], row["model"]) == (
        host, "google", "stream_generate_content", "gemini-2.5-pro",
    )  # fmt: skip
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (
        fresh, cached, output,
    )  # fmt: skip
    assert row["reasoning_tokens"] == raw["thoughtsTokenCount"]
    assert (row["billing"], row["cost_nanousd"], row["tokens_complete"]) == (billing, cost, 1)
    assert row["project"] == project and row["attribution"] == "tag"
    assert quota_rows(meter, project) == []  # Gemini sends no quota headers
    assert_nothing_secret_under(meter.home, [GEMINI_KEY, GOOGLE_TOKEN], [catalog.ACCOUNT_EMAIL])
