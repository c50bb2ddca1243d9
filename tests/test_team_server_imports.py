"""The team server runs on PostgreSQL only: importing its app must not load the local ledger's
SQLite side (issue 12). Checked in a fresh interpreter, where nothing else was imported first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

# Imports the app and says which modules were being imported when sqlite3 first loaded.
PROBE = """
import importlib.abc, json, sys

chain = []

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sqlite3" and not chain:
            frame = sys._getframe(1)
            while frame is not None:
                module = frame.f_globals.get("__name__", "")
                if module.startswith("halton_meter") and module not in chain:
                    chain.append(module)
                frame = frame.f_back
        return None

sys.meta_path.insert(0, Watch())
import halton_meter.teamserver.app
loaded = sorted(m for m in sys.modules if m.startswith("halton_meter"))
print(json.dumps({"sqlite3": "sqlite3" in sys.modules, "chain": chain, "loaded": loaded}))
"""


def probe_team_server_imports() -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_team_server_loads_neither_the_local_api_nor_the_ledger_database() -> None:
    loaded = probe_team_server_imports()["loaded"]
    assert isinstance(loaded, list)
    assert "halton_meter.teamserver.routes.reports" in loaded  # the probe did load the routers
    for local_only in ("halton_meter.api.views", "halton_meter.api.app", "halton_meter.ledger.db"):
        assert local_only not in loaded


def test_team_server_imports_nothing_that_uses_sqlite() -> None:
    found = probe_team_server_imports()
    assert found["sqlite3"] is False, f"sqlite3 was imported by {found['chain']}"
