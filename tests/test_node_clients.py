"""Node clients through `halton-meter run`: the Anthropic and OpenAI TypeScript SDKs, and
Claude Code's CLI (2.1.112, the last pure-JavaScript release, which runs on Node 20)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, Meter
from tests.fakeupstream import catalog
from tests.test_clients import metered

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
