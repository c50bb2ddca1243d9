"""Fixtures for the team server: a real PostgreSQL, real `halton-meter server run` processes,
real daemons paired through the real CLI (`cloud connect` + `server approve`)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import METER, ROOT, FakeUpstream, Meter, free_port, start_meter, wait_for
from tests.postgres import PgCluster, find_bin_dir, start_cluster

FAST_SYNC = """
[cloud]
sync_interval_seconds = 0.2
max_backoff_seconds = 0.5
"""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/test installs Debian's postgresql)")
    # Durability settings off: the suite checks behaviour, bench/team_server.py measures speed.
    cluster = start_cluster({"fsync": "off", "synchronous_commit": "off"})
    yield cluster
    cluster.stop()


def server_env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_SERVER_DSN"] = dsn
    return env


@dataclass
class TeamServer:
    dsn: str
    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    admin_token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = server_env(self.dsn)
        env["HALTON_METER_HOME"] = str(self.home)
        done = subprocess.run(
            [METER, "server", *args], env=env, capture_output=True, text=True, timeout=60
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def start(self) -> TeamServer:
        env = server_env(self.dsn)
        env["HALTON_METER_HOME"] = str(self.home)
        log = (self.home / "server.log").open("ab")
        self.process = subprocess.Popen(
            [METER, "server", "run", "--port", str(self.port), "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,  # its own process group: kill() reaches the workers too
        )

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError((self.home / "server.log").read_text())
            try:
                return self.api("GET", "/health")[0] == 200
            except OSError:
                return False

        wait_for(healthy, 30, "the team server")
        if not self.admin_token:  # `server admin-token` itself is tested once, in test_team_server
            import psycopg

            from halton_meter.teamserver.accounts import create_admin_token

            with psycopg.connect(self.dsn, autocommit=True) as con:
                self.admin_token = create_admin_token(con, "tests")
        return self

    def kill(self) -> None:
        """SIGKILL to the server and its worker processes: whatever was in flight is cut."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        if token:
            request.add_header("authorization", f"Bearer {token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                payload = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            payload, status = error.read(), error.code
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode()

    def admin(self, path: str) -> Any:
        status, body = self.api("GET", path, token=self.admin_token)
        assert status == 200, body
        return body

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as con:
            cursor = con.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


_databases = iter(range(1, 10_000))


@pytest.fixture
def new_team_server(
    postgres: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], TeamServer]]:
    """A factory: each call gets its own database and server process (stopped afterwards)."""
    started: list[TeamServer] = []

    def make() -> TeamServer:
        dsn = postgres.create_database(f"team_{os.getpid()}_{next(_databases)}")
        server = TeamServer(dsn, tmp_path_factory.mktemp("server")).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def team_server(
    postgres: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TeamServer]:
    """One server for tests that only add rows (they tell theirs apart by workspace)."""
    dsn = postgres.create_database(f"team_shared_{os.getpid()}")
    server = TeamServer(dsn, tmp_path_factory.mktemp("server")).start()
    yield server
    server.stop()


def meter_cli(meter: Meter, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [METER, *args], env=meter.run_env(), capture_output=True, text=True, timeout=timeout
    )


def pair(
    meter: Meter,
    server: TeamServer,
    workspace: str,
    name: str,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """`cloud connect` on the machine, `server approve CODE` on the server, as users do.
    `command`: the exact `cloud connect ...` words to run (e.g. as doctor printed them)."""
    words = command or [
        "cloud",
        "connect",
        "--server",
        server.url,
        "--workspace",
        workspace,
        "--name",
        name,
    ]
    connecting = subprocess.Popen(
        [METER, *words, "--json"],
        env=meter.run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert connecting.stderr is not None
    first = connecting.stderr.readline()
    assert first.startswith("Pairing code: "), first + connecting.stderr.read()
    code = first.split(": ", 1)[1].strip()
    assert len(code) == 8
    server.cli("approve", code)
    out, err = connecting.communicate(timeout=30)
    assert connecting.returncode == 0, err
    return dict(json.loads(out))


def start_paired_meter(
    upstream: FakeUpstream,
    home: Path,
    server: TeamServer,
    workspace: str,
    name: str,
    extra: str = "",
) -> Meter:
    meter = start_meter(home, upstream, FAST_SYNC + extra)
    pair(meter, server, workspace, name)
    return meter


ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "hi"}],
}
OPENAI_BODY = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}


def send_calls(meter: Meter, project: str, anthropic: int = 0, openai: int = 0) -> None:
    """Real calls through the meter's proxy (to the fake upstream), on one keep-alive client."""
    context = ssl.create_default_context(cafile=str(meter.bundle))
    with httpx2.Client(
        proxy=f"http://{project}:meter@127.0.0.1:{meter.port}", verify=context, timeout=30
    ) as http:
        for _ in range(anthropic):
            answer = http.post(
                "https://api.anthropic.com/v1/messages",
                headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
                json=ANTHROPIC_BODY,
            )
            assert answer.status_code == 200, answer.text
        for _ in range(openai):
            answer = http.post(
                "https://api.openai.com/v1/chat/completions",
                headers={"authorization": "Bearer sk-test"},
                json=OPENAI_BODY,
            )
            assert answer.status_code == 200, answer.text


def server_ids(server: TeamServer, workspace: str) -> list[str]:
    rows = server.sql(
        "SELECT l.id FROM ledger l JOIN workspaces w ON w.id = l.workspace_id WHERE w.name = %s",
        workspace,
    )
    return [row[0] for row in rows]


def wait_synced(server: TeamServer, workspace: str, count: int, timeout: float = 60) -> list[str]:
    wait_for(
        lambda: len(server_ids(server, workspace)) >= count,
        timeout,
        f"{count} rows on the server in {workspace}",
    )
    time.sleep(0.5)  # one more would be a duplicate: give it the chance to show
    return server_ids(server, workspace)
