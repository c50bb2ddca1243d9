"""Budgets for Node clients: the Anthropic TypeScript SDK gets the meter's refusal as its own
RateLimitError, and Claude Code's CLI stops with the message shown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests import test_budget_block
from tests.conftest import ROOT
from tests.test_budget_block import budget_config, wait_blocking
from tests.test_clients import metered

budget_meter = test_budget_block.budget_meter  # the fixture: a daemon started with budgets

NODE_DIR = ROOT / "tests" / "node"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").exists(),
    reason="node and the npm test clients are installed by ./scripts/test",
)


def node_call(meter: Any, project: str) -> dict[str, Any]:
    done = metered(meter, project, "node", str(NODE_DIR / "anthropic_budget.mjs"))
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_node_sdk_and_claude_code_get_the_block(budget_meter: Any, tmp_path: Path) -> None:
    meter = budget_meter(budget_config("acme", "acme"))
    assert node_call(meter, "acme")["outcome"] == "ok"
    wait_blocking(meter, "acme")
    refused = node_call(meter, "acme")
    assert (refused["class"], refused["status"]) == ("RateLimitError", 429), refused
    assert "budget 'acme' is used up" in refused["message"]
    assert node_call(meter, "other")["outcome"] == "ok"
    claude = NODE_DIR / "node_modules" / ".bin" / "claude"
    done = metered(
        meter,
        "acme",
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
    assert done.returncode != 0
    assert "budget 'acme' is used up" in done.stdout + done.stderr, done.stdout + done.stderr
