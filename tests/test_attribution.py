"""Attribution end to end: real scripts in real git repositories, through a real edge and
daemon, each request landing in its project with no tagging (issue 5's scenarios).

One edge + daemon for the module. Every test makes its own repositories with unique names, so
its rows are its own; the config's rules and default project are fixed at start.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from halton_meter.attribution.resolver import ALIAS_REFRESH_SECONDS
from halton_meter.lifecycle.environment import meter_environment
from tests.conftest import METER, ROOT, FakeUpstream, Meter, free_port, wait_for
from tests.test_edge import EdgeProcess, _Echo, clean_env, start_daemon, start_edge

SCRIPT = ROOT / "tests" / "clients" / "chat_once.py"
DEFAULT = "attr-default"


@dataclass
class Stack:
    daemon: Meter
    edge: EdgeProcess
    base: Path  # repositories live here; `[[tagging.rules]]` point into it

    def env(self, project: str | None = None, **extra: str) -> dict[str, str]:
        """A user's shell with the meter's env block: proxy = the edge."""
        base = {k: v for k, v in clean_env(self.daemon.home).items() if k != "HALTON_PROJECT"}
        env = meter_environment(base, self.edge.port, self.daemon.bundle, project)
        env.update(extra)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [METER, *args],
            env=clean_env(self.daemon.home),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def row(self, project: str) -> dict[str, Any]:
        (found,) = self.daemon.wait_rows(project, 1)
        return found


@pytest.fixture(scope="module")
def plain_origin() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(
    fake_upstream: FakeUpstream, plain_origin: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("repos")
    assert subprocess.run(["git", "rev-parse"], cwd=base, capture_output=True).returncode != 0
    extra = f"""
[tagging]
default_project = "{DEFAULT}"

[[tagging.rules]]
path = "{base}/ruled-*"
project = "by-rule"

[[tagging.rules]]
user_agent = "acme-agent/*"
project = "by-agent"

[[endpoints]]
host = "plain.test"
port = 80
wire = "openai-chat"
provider = "plainai"
"""
    internal = free_port()
    home = tmp_path_factory.mktemp("attribution-home")
    edge = start_edge(home, internal, fake_upstream, plain_origin, extra)
    daemon = Meter(home, internal, start_daemon(home, internal), home / "daemon.log")
    yield Stack(daemon, edge, base)
    edge.stop()
    daemon.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def git_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    shutil.copy(SCRIPT, folder / "chat_once.py")
    return folder


def script(
    stack: Stack, cwd: Path, *args: str, project: str | None = None, **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(cwd / "chat_once.py"), *args],
        cwd=cwd,
        env=stack.env(project, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], calls: int = 1) -> None:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip() == str(calls), (out, err)


def detail(row: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(row["attribution_detail"])
    return result


# --- the scenarios -----------------------------------------------------------------


def test_two_scripts_in_two_repositories_land_in_two_projects(stack: Stack) -> None:
    alpha = git_repo(stack.base / unique("alpha"))
    beta = git_repo(stack.base / unique("beta"))
    first, second = script(stack, alpha), script(stack, beta)  # at the same time
    finish(first)
    finish(second)
    for repo, process in ((alpha, first), (beta, second)):
        row = stack.row(repo.name)
        assert (row["attribution"], row["client_process"]) == ("git", "python")
        assert row["user_agent"] == "chat-once/1.0"
        seen = detail(row)
        assert seen["pid"] == process.pid
        assert seen["cwd"] == str(repo)
        assert seen["saw"] == f"git repository {repo}"
        # `why` explains it, in words and in JSON.
        said = stack.cli("why", row["id"])
        assert said.returncode == 0, said.stderr
        assert f"Project:  {repo.name}" in said.stdout
        assert "git repository" in said.stdout and str(repo) in said.stdout
        explained = json.loads(stack.cli("why", row["id"], "--json").stdout)
        assert explained["layer"] == "git" and explained["pid"] == process.pid
        # `report --by client` groups by the process.
        report = json.loads(
            stack.cli("report", "--by", "client", "--project", repo.name, "--json").stdout
        )
        assert [(g["key"], g["requests"]) for g in report["groups"]] == [({"client": "python"}, 1)]


def test_haltonrc_beats_git(stack: Stack) -> None:
    repo = git_repo(stack.base / unique("site"))
    name = unique("Acme Site")  # normalised: lowercase, space → dash
    (repo / "sub").mkdir()
    (repo / ".haltonrc").write_text(f'project = "{name}"\n')
    shutil.copy(SCRIPT, repo / "sub" / "chat_once.py")
    finish(script(stack, repo / "sub"))
    row = stack.row(name.lower().replace(" ", "-"))
    assert row["attribution"] == "haltonrc"
    assert detail(row)["saw"] == str(repo / ".haltonrc")
    assert stack.daemon.rows(repo.name) == []


def test_halton_project_in_the_environment_beats_haltonrc(stack: Stack) -> None:
    repo = git_repo(stack.base / unique("envrepo"))
    (repo / ".haltonrc").write_text('project = "from-haltonrc"\n')
    project = unique("from-env")
    finish(script(stack, repo, HALTON_PROJECT=project))
    row = stack.row(project)
    assert row["attribution"] == "env"
    assert stack.daemon.rows("from-haltonrc") == []


def test_an_invalid_value_falls_through_to_the_next_layer(stack: Stack) -> None:
    repo = git_repo(stack.base / unique("fallthrough"))
    finish(script(stack, repo, HALTON_PROJECT="café ☕"))
    row = stack.row(repo.name)
    assert row["attribution"] == "git"
    (skipped,) = detail(row)["skipped"]
    assert "café ☕" in skipped and "HALTON_PROJECT" in skipped
    logged = (stack.daemon.home / "logs" / "daemon.jsonl").read_text().splitlines()
    assert any(
        "not a valid project name" in json.loads(line).get("message", "")
        and json.loads(line)["level"] == "warning"
        for line in logged
    )


def test_run_project_is_exact_while_another_process_hammers_the_port(stack: Stack) -> None:
    tagged = git_repo(stack.base / unique("tagged"))
    noisy = git_repo(stack.base / unique("noisy"))
    project = unique("exact")
    stop = noisy / "stop"
    hammer = script(stack, noisy, f"until:{stop}")
    wait_for(lambda: stack.daemon.rows(noisy.name), 30, "the hammer to get going")
    run = subprocess.run(
        [METER, "run", "--project", project, "--", sys.executable, "chat_once.py", "15"],
        cwd=tagged,
        env=clean_env(stack.daemon.home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and run.stdout.strip() == "15", run.stderr
    assert hammer.poll() is None, "the hammer stopped before `run` finished"
    stop.touch()
    out, err = hammer.communicate(timeout=60)
    assert hammer.returncode == 0, err
    rows = stack.daemon.wait_rows(project, 15)
    assert {(r["attribution"], r["client_process"]) for r in rows} == {("tag", "python")}
    noise = stack.daemon.wait_rows(noisy.name, int(out))
    assert {r["attribution"] for r in noise} == {"git"}
    assert stack.daemon.rows(tagged.name) == []


def test_a_config_rule_beats_everything_but_the_exact_tag(stack: Stack) -> None:
    repo = git_repo(stack.base / unique("ruled"))
    (repo / ".haltonrc").write_text('project = "rc-loses"\n')
    before = len(stack.daemon.rows("by-rule"))
    finish(script(stack, repo, HALTON_PROJECT="env-loses"))
    rows = wait_for(lambda: (r := stack.daemon.rows("by-rule")) and len(r) > before and r)
    row = rows[-1]
    assert row["attribution"] == "rule"
    assert detail(row)["chain"] == "env: env-loses"
    assert str(stack.base) in detail(row)["saw"]
    # The exact tag still wins in the same folder.
    project = unique("tag-wins")
    finish(script(stack, repo, project=project))
    assert stack.row(project)["attribution"] == "tag"


def test_a_user_agent_rule(stack: Stack) -> None:
    repo = git_repo(stack.base / unique("agentic"))
    finish(script(stack, repo, "1", "acme-agent/2.3"))
    rows = wait_for(lambda: stack.daemon.rows("by-agent"))
    assert rows[-1]["user_agent"] == "acme-agent/2.3" and rows[-1]["attribution"] == "rule"
    assert stack.daemon.rows(repo.name) == []


# A client that sends a whole plain-HTTP request and exits: TCP_CORK holds the bytes until the
# socket closes at exit, so the edge reads the request only after the process is gone.
EXITING_CLIENT = """
import os, socket, sys
body = b'{"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}'
head = (
    "POST http://plain.test/v1/chat/completions HTTP/1.1\\r\\nHost: plain.test\\r\\n"
    f"Content-Type: application/json\\r\\nContent-Length: {len(body)}\\r\\n\\r\\n"
).encode()
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
sock.sendall(head + body)
os._exit(0)
"""


@pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux only")
def test_a_process_that_exits_before_the_lookup_still_gets_its_row(stack: Stack) -> None:
    repo = git_repo(stack.base / unique("gone"))
    done = subprocess.run(
        [sys.executable, "-c", EXITING_CLIENT, str(stack.edge.port)],
        cwd=repo,
        env=stack.env(),
        timeout=30,
    )
    assert done.returncode == 0
    row = stack.row(DEFAULT)
    assert (row["attribution"], row["client_process"]) == ("default", None)
    assert (row["provider"], row["host"]) == ("plainai", "plain.test")
    assert "exited before the lookup" in detail(row)["note"]
    assert stack.daemon.rows(repo.name) == []


def test_a_child_of_make_inherits_the_repository_through_the_parent_walk(
    stack: Stack, tmp_path: Path
) -> None:
    repo = git_repo(stack.base / unique("built"))
    outside = tmp_path / "elsewhere"  # no repository, no .haltonrc above it
    outside.mkdir()
    shutil.copy(SCRIPT, outside / "chat_once.py")
    (repo / "Makefile").write_text(f"all:\n\tcd {outside} && {sys.executable} chat_once.py\n")
    done = subprocess.run(
        ["make", "-s"], cwd=repo, env=stack.env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    row = stack.row(repo.name)
    assert row["attribution"] == "parent"
    seen = detail(row)
    assert seen["cwd"] == str(outside)
    assert "(make)" in seen["saw"] and str(repo) in seen["saw"]
    assert stack.daemon.rows("elsewhere") == []


def test_one_lookup_serves_every_request_on_a_connection(stack: Stack) -> None:
    """Keep-alive: three calls on one connection share the connection's lookup."""
    repo = git_repo(stack.base / unique("reuse"))
    client = f"""
import http.client, json, ssl
context = ssl.create_default_context(cafile={str(stack.daemon.bundle)!r})
conn = http.client.HTTPSConnection("127.0.0.1", {stack.edge.port}, context=context)
conn.set_tunnel("api.openai.com", 443)
body = json.dumps({{"model": "gpt-4.1", "messages": [{{"role": "user", "content": "hi"}}]}})
for _ in range(3):
    conn.request("POST", "/v1/chat/completions", body, {{"Content-Type": "application/json"}})
    conn.getresponse().read()
"""
    subprocess.run([sys.executable, "-c", client], cwd=repo, check=True, timeout=30)
    rows = stack.daemon.wait_rows(repo.name, 3)
    assert len({r["attribution_detail"] for r in rows}) == 1
    assert {r["attribution"] for r in rows} == {"git"}


def test_a_renamed_project_takes_new_calls_without_rewriting_history(stack: Stack) -> None:
    repo = git_repo(stack.base / unique("oldname"))
    finish(script(stack, repo))
    first = stack.row(repo.name)
    new = unique("newname")
    done = stack.cli("projects", "rename", repo.name, new, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows_kept"] == 1
    time.sleep(ALIAS_REFRESH_SECONDS + 0.5)  # the daemon re-reads aliases this often
    finish(script(stack, repo))
    row = stack.row(new)
    assert row["attribution"] == "git" and detail(row)["alias_of"] == repo.name
    assert stack.daemon.rows(repo.name) == [first]  # history untouched


def test_a_tag_is_normalised_and_beats_a_rule_and_a_refused_one_is_explained(
    stack: Stack,
) -> None:
    """Issue 16, item 8: `HALTON_PROJECT=Team.Web` in the proxy URL is the project team-web,
    exact, so a `[[tagging.rules]]` rule does not override it; a tag that cannot be a project is
    listed under skipped by `why`, logged, and the next layers decide."""
    repo = git_repo(stack.base / unique("ruled-tagged"))
    before = len(stack.daemon.rows("by-rule"))
    finish(script(stack, repo, project="Team.Web"))
    row = stack.row("team-web")
    assert row["attribution"] == "tag"
    assert detail(row)["chain"].startswith("git: ")

    finish(script(stack, repo, project="caf\u00e9 \u2615"))
    rows = wait_for(lambda: (r := stack.daemon.rows("by-rule")) and len(r) > before and r)
    refused = rows[-1]
    assert refused["attribution"] == "rule"
    why = stack.cli("why", refused["id"], "--json")
    assert why.returncode == 0, why.stderr
    skipped = json.loads(why.stdout)["skipped"]
    assert any("caf\u00e9 \u2615" in item and "proxy URL" in item for item in skipped), skipped
    logged = (stack.daemon.home / "logs" / "daemon.jsonl").read_text().splitlines()
    assert any(
        "from the proxy URL is not a valid project name" in json.loads(line).get("message", "")
        for line in logged
    )
