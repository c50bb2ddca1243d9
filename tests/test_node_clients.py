"""Node clients through `halton-meter run`: the Anthropic and OpenAI TypeScript SDKs, and
Claude Code's CLI (2.1.112, the last pure-JavaScript release, which runs on Node 20), on
Anthropic's API, on Amazon Bedrock and on Google Vertex AI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, Meter
from tests.fakeupstream import catalog
from tests.test_clients import metered, nano
from tests.test_cloud_clients import (
    BEDROCK_SONNET_4_5_GLOBAL,
    VERTEX_SONNET_4_5_GLOBAL,
    claude_on_bedrock_cost,
)

NODE_DIR = ROOT / "tests" / "node"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").exists(),
    reason="node and the npm test clients are installed by ./scripts/test",
)


def test_anthropic_typescript_sdk_stream(meter: Meter, project: str) -> None:
    done = metered(meter, project, "node", str(NODE_DIR / "anthropic_stream.mjs"))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    raw = catalog.ANTHROPIC_USAGE
    assert seen["usage"]["output_tokens"] == raw["output_tokens"]
    (row,) = meter.wait_rows(project, 1)
    assert row["user_agent"].startswith("Anthropic/JS")
    assert (
        row["input_tokens"],
        row["cache_read_tokens"],
        row["cache_write_tokens"],
        row["output_tokens"],
    ) == (
        raw["input_tokens"],
        raw["cache_read_input_tokens"],
        raw["cache_creation_input_tokens"],
        raw["output_tokens"],
    )


def test_openai_typescript_sdk_stream(meter: Meter, project: str) -> None:
    done = metered(meter, project, "node", str(NODE_DIR / "openai_stream.mjs"))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"text": catalog.full_text(catalog.DEFAULT_EVENTS), "usageChunks": 0}
    (row,) = meter.wait_rows(project, 1)
    raw = catalog.OPENAI_CHAT_USAGE
    assert row["output_tokens"] == raw["completion_tokens"]
    assert row["tokens_complete"] == 1


def test_claude_code_cli(meter: Meter, project: str, tmp_path: Path) -> None:
    claude = NODE_DIR / "node_modules" / ".bin" / "claude"
    done = metered(
        meter,
        project,
        str(claude),
        "-p",
        "say hello",
        "--model",
        "claude-sonnet-4-5",
        HOME=str(tmp_path),
        ANTHROPIC_API_KEY="sk-ant-claude-code-secret",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
    )
    assert done.returncode == 0, done.stderr
    assert catalog.full_text(catalog.DEFAULT_EVENTS) in done.stdout
    rows = meter.wait_rows(project, 1)
    (row,) = rows
    assert row["user_agent"].startswith("claude-cli/2.1.112")
    assert (row["api"], row["stream"], row["tokens_complete"]) == ("messages", 1, 1)
    assert row["output_tokens"] == catalog.ANTHROPIC_USAGE["output_tokens"]


def _claude_code(meter: Meter, project: str, home: Path, **env: str) -> str:
    claude = NODE_DIR / "node_modules" / ".bin" / "claude"
    done = metered(
        meter,
        project,
        str(claude),
        "-p",
        "say hello",
        HOME=str(home),
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        **env,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_claude_code_on_bedrock(meter: Meter, project: str, tmp_path: Path) -> None:
    model = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    out = _claude_code(
        meter,
        project,
        tmp_path,
        CLAUDE_CODE_USE_BEDROCK="1",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="AKIDEXAMPLEFAKE00002",
        AWS_SECRET_ACCESS_KEY="fake-secret-key-never-sent-anywhere-0002",
        AWS_EC2_METADATA_DISABLED="true",
        ANTHROPIC_MODEL=model,
        ANTHROPIC_SMALL_FAST_MODEL=model,
    )
    assert catalog.full_text(catalog.DEFAULT_EVENTS) in out
    rows = meter.wait_rows(project, 1)
    (row,) = rows
    assert row["user_agent"].startswith("claude-cli/2.1.112")
    assert (row["provider"], row["api"], row["model"]) == ("bedrock", "invoke_stream", model)
    assert (row["stream"], row["tokens_complete"], row["model_family"]) == (1, 1, "anthropic")
    assert row["output_tokens"] == catalog.BEDROCK_ANTHROPIC_USAGE["output_tokens"]
    assert row["cost_nanousd"] == claude_on_bedrock_cost(BEDROCK_SONNET_4_5_GLOBAL)


def test_claude_code_on_vertex(meter: Meter, project: str, tmp_path: Path) -> None:
    out = _claude_code(
        meter,
        project,
        tmp_path,
        CLAUDE_CODE_USE_VERTEX="1",
        CLAUDE_CODE_SKIP_VERTEX_AUTH="1",  # no Google credentials, no token request
        CLOUD_ML_REGION="global",
        ANTHROPIC_VERTEX_PROJECT_ID="proj-halton-test",
        ANTHROPIC_MODEL="claude-sonnet-4-5@20250929",
        ANTHROPIC_SMALL_FAST_MODEL="claude-sonnet-4-5@20250929",
    )
    assert catalog.full_text(catalog.DEFAULT_EVENTS) in out
    (row,) = meter.wait_rows(project, 1)
    assert (row["provider"], row["api"], row["model"]) == (
        "vertex",
        "messages",
        "claude-sonnet-4-5@20250929",
    )
    assert (row["cloud_project"], row["cloud_region"]) == ("proj-halton-test", "global")
    assert (row["stream"], row["tokens_complete"]) == (1, 1)
    assert row["output_tokens"] == catalog.VERTEX_MESSAGES_USAGE["output_tokens"]
    raw = catalog.VERTEX_MESSAGES_USAGE
    one_hour = raw["cache_creation"]["ephemeral_1h_input_tokens"]
    prices = VERTEX_SONNET_4_5_GLOBAL
    assert row["cost_nanousd"] == int(
        nano(prices["input"], raw["input_tokens"])
        + nano(prices["cache_read"], raw["cache_read_input_tokens"])
        + nano(prices["write_5m"], raw["cache_creation_input_tokens"] - one_hour)
        + nano(prices["write_1h"], one_hour)
        + nano(prices["output"], raw["output_tokens"])
    )
