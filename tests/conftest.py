"""Shared fixtures: a fake provider over TLS and a real meter daemon in front of it.

The daemon is the real `halton-meter daemon` in a subprocess, with its own home folder; it
reaches the fake under the real provider host names through `[upstream] resolve` and trusts the
fake's test CA through `[upstream] ca_bundle`, exactly as a user on a split-horizon network would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from halton_meter.lifecycle.environment import meter_environment
from tests.fakeupstream.certs import TestPKI, make_test_pki

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
METER = str(VENV_BIN / "halton-meter")

UPSTREAM_HOSTS = (
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
    "cloudcode-pa.googleapis.com",
    "api.x.ai",
    "api.groq.com",
    "api.mistral.ai",
    "api.deepseek.com",
    "openrouter.ai",
    "api.together.xyz",
    "api.fireworks.ai",
    "api.cerebras.ai",
    "api.perplexity.ai",
    "chatgpt.com",
    "bedrock-runtime.us-east-1.amazonaws.com",
    "bedrock-runtime.us-west-2.amazonaws.com",
    "bedrock-runtime-fips.us-east-1.amazonaws.com",
    "aiplatform.googleapis.com",
    "us-east5-aiplatform.googleapis.com",
    "us-central1-aiplatform.googleapis.com",
    "halton-test.openai.azure.com",
    "halton-test.cognitiveservices.azure.com",
    "halton-test.services.ai.azure.com",
    "api.moonshot.ai",
    "example.org",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float = 15.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")


@dataclass
class FakeUpstream:
    port: int
    pki: TestPKI
    process: subprocess.Popen[bytes]

    def direct_curl_args(self) -> list[str]:
        """curl arguments for a direct connection to the fake that bypasses the meter."""
        args = ["--cacert", str(self.pki.ca_cert), "--noproxy", "*"]
        for host in UPSTREAM_HOSTS:
            args += ["--connect-to", f"{host}:443:127.0.0.1:{self.port}"]
        return args


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def fake_upstream(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    ready = tmp_path_factory.mktemp("fake") / "ready"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakeupstream",
            "--port",
            "0",
            "--pki",
            str(pki.ca_cert.parent),
            "--ready-file",
            str(ready),
        ],
        cwd=ROOT,
    )
    port = int(wait_for(lambda: ready.exists() and ready.read_text().strip(), 20, "fake upstream"))
    yield FakeUpstream(port, pki, process)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


@dataclass
class Meter:
    home: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def ledger(self) -> Path:
        return self.home / "db.sqlite"

    @property
    def bundle(self) -> Path:
        return self.home / "ca-bundle.pem"

    def env(self, project: str | None = None, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        base["HALTON_METER_HOME"] = str(self.home)
        env = meter_environment(base, self.port, self.bundle, project)
        env.update(extra)
        return env

    def run_env(self, **extra: str) -> dict[str, str]:
        """Environment for `halton-meter run`: only the home, no proxy yet."""
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["HALTON_METER_HOME"] = str(self.home)
        env.update(extra)
        return env

    def rows(self, project: str) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        con = sqlite3.connect(self.ledger)
        con.row_factory = sqlite3.Row
        try:
            found = con.execute(
                "SELECT * FROM requests WHERE project = ? ORDER BY requested_at, id", (project,)
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()
        return [dict(row) for row in found]

    def wait_rows(self, project: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        rows = wait_for(
            lambda: (r := self.rows(project)) and len(r) >= count and r,
            timeout,
            f"{count} ledger rows for project {project}",
        )
        time.sleep(0.2)  # a row more than expected would be a bug: give it the chance to show
        rows = self.rows(project)
        assert len(rows) == count, rows
        return rows

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def write_meter_config(
    home: Path,
    port: int,
    upstream: FakeUpstream,
    extra: str = "",
    upstream_extra: str = "",
    daemon_extra: str = "",
) -> None:
    resolve = "\n".join(f'"{host}:443" = "127.0.0.1:{upstream.port}"' for host in UPSTREAM_HOSTS)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f"""[daemon]
proxy_port = {port}
internal_port = {free_port()}
api_port = {free_port()}
{daemon_extra}

[upstream]
ca_bundle = "{upstream.pki.ca_cert}"
{upstream_extra}

[upstream.resolve]
{resolve}
{extra}
"""
    )


def start_meter(
    home: Path,
    upstream: FakeUpstream,
    extra_config: str = "",
    upstream_extra: str = "",
    daemon_extra: str = "",
    env_extra: dict[str, str] | None = None,
) -> Meter:
    port = free_port()
    write_meter_config(home, port, upstream, extra_config, upstream_extra, daemon_extra)
    log = home / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_HOME"] = str(home)
    env.update(env_extra or {})  # e.g. an admin key the daemon reads from its environment
    process = subprocess.Popen(
        [METER, "daemon"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    state = home / "daemon.json"

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited: {log.read_text()}")
        return state.exists() and json.loads(state.read_text())["listen_port"] == port

    wait_for(started, 30, "the daemon to start")
    return Meter(home, port, process, log)


@pytest.fixture(scope="session")
def meter(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meter]:
    """One daemon for the session; tests tell their rows apart by project."""
    running = start_meter(tmp_path_factory.mktemp("home"), fake_upstream)
    yield running
    running.stop()


@pytest.fixture
def project(request: pytest.FixtureRequest) -> str:
    """A project slug unique to the test, so its rows are its own."""
    name = request.node.name.lower()
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60].strip("-")
    return f"t-{slug}-{os.getpid()}-{time.monotonic_ns() % 100000}"


# The team server's fixtures (PostgreSQL, server processes, paired daemons).
pytest_plugins = ["tests.team_fixtures"]
