"""The edge follows the hosts the daemon says it decrypts (claimed-hosts.json), without ever
importing the price catalogue."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from halton_meter.edge import claims as edge_claims
from halton_meter.edge.claims import ClaimsWatch
from halton_meter.providers import ClaimedHosts, claimed_hosts
from tests.conftest import ROOT


def test_the_file_adds_hosts_and_a_damaged_one_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_claims, "RECHECK_SECONDS", 0.0)
    path = tmp_path / "claimed-hosts.json"
    watch = ClaimsWatch(claimed_hosts(), path)
    assert watch.claims("api.openai.com", 443)
    assert not watch.claims("api.moonshot.ai", 443)  # no file yet: the edge's own table
    path.write_text(ClaimedHosts.of([], [(r"api\.moonshot\.[a-z0-9-]+", 443)]).to_json())
    assert watch.claims("api.moonshot.ai", 443)
    assert watch.claims("api.openai.com", 443)  # merged with, never replacing, its own
    path.write_text('{"exact": [], "patterns": [["(", 443]]}')  # damaged: back to its own
    os.utime(path, ns=(1, 1))
    assert not watch.claims("api.moonshot.ai", 443)
    assert watch.claims("bedrock-runtime.us-east-1.amazonaws.com", 443)
    path.unlink()
    assert not watch.claims("api.moonshot.ai", 443)


def test_the_edge_never_imports_the_catalogue() -> None:
    code = (
        "import sys; import halton_meter.edge.listener; "
        "print(any(m.startswith(('genai_prices', 'mitmproxy', 'halton_meter.pricing')) "
        "for m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
