"""The resolver chain's parts on real processes and real folders: socket owners from /proc and
from psutil, every layer in its order, slugs, IDE hints, rules and their config errors."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from halton_meter.attribution.chain import ide_hint, resolve_process
from halton_meter.attribution.process import client_name, container_kind
from halton_meter.attribution.resolver import Attributor, lookup_client
from halton_meter.attribution.rules import TaggingRule, first_match
from halton_meter.attribution.sockets import _owner_from_proc, _owner_from_psutil
from halton_meter.config import ConfigError, parse_config
from halton_meter.slugs import normalise_slug
from tests.conftest import wait_for

SOURCE = Path("/home/u/.halton-meter/config.toml")
SLEEPER = "import time; time.sleep(60)"


@pytest.fixture
def spawn() -> Iterator[object]:
    """Start real processes (cwd, env, argv as given); all are killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> int:
        process = subprocess.Popen(
            [sys.executable, "-c", SLEEPER, *argv], cwd=cwd, env={**os.environ, **(env or {})}
        )
        started.append(process)
        # Until exec, the child still shows pytest's command line.
        wait_for(lambda: SLEEPER in psutil.Process(process.pid).cmdline(), 10, "exec")
        return process.pid

    yield start
    for process in started:
        process.kill()
        process.wait()


def git_init(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    return folder


# --- socket owner -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_socket_owner_from_proc_and_psutil_agree(family: socket.AddressFamily) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    try:
        server = socket.socket(family)
        server.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} on this machine")
    server.listen()
    port = server.getsockname()[1]
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import socket, time; s = socket.create_connection(({host!r}, {port})); "
            "time.sleep(30)",
        ]
    )
    try:
        accepted, peer = server.accept()
        client_end = (peer[0], peer[1])
        server_end = (host, port)
        if sys.platform.startswith("linux"):
            assert _owner_from_proc(client_end, server_end) == client.pid
        assert _owner_from_psutil(client_end, server_end) == client.pid
        # The other direction is the server's own socket: not the client.
        assert _owner_from_psutil(server_end, client_end) == os.getpid()
        client.kill()
        client.wait()
        # Gone: nobody holds the client end any more.
        assert lookup_client(client_end, server_end, "misc").decision.layer == "default"
        accepted.close()
    finally:
        client.kill()
        client.wait()
        server.close()


# --- the chain, layer by layer ----------------------------------------------------------------


def test_each_layer_in_order(spawn: object, tmp_path: Path) -> None:
    start = spawn  # type: ignore[assignment]
    repo = git_init(tmp_path / "My Repo.git")
    deep = repo / "src" / "pkg"
    deep.mkdir(parents=True)
    # git root, normalised
    decided = resolve_process(start(deep), "misc").decision
    assert (decided.project, decided.layer) == ("my-repo-git", "git")
    # IDE folder hint on the command line beats git
    hinted = resolve_process(start(deep, "--folder-uri", "file:///work/acme%20web"), "misc")
    assert (hinted.decision.project, hinted.decision.layer) == ("acme-web", "ide")
    # .haltonrc beats the IDE hint
    (repo / "src" / ".haltonrc").write_text('project = "from-rc"\n')
    pid = start(deep, "--folder-uri", "file:///work/acme")
    assert resolve_process(pid, "misc").decision.layer == "haltonrc"
    # HALTON_PROJECT beats .haltonrc
    pid = start(deep, env={"HALTON_PROJECT": "Client:Acme"})
    decided = resolve_process(pid, "misc").decision
    assert (decided.project, decided.layer) == ("client:acme", "env")
    # The cwd basename when nothing else says anything: a detached grandchild, so the parent
    # walk cannot reach pytest (whose folder is a git repository).
    plain = tmp_path / "Plain Folder"
    plain.mkdir()
    detached = subprocess.run(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
            f"{SLEEPER!r}], start_new_session=True, stdout=-3, stderr=-3); print(p.pid)",
        ],
        cwd=plain,
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = int(detached.stdout)
    try:
        decided = resolve_process(orphan, "misc").decision
        assert (decided.project, decided.layer) == ("plain-folder", "cwd")
    finally:
        os.kill(orphan, 9)


def test_broken_haltonrc_is_skipped_with_a_log_line(
    spawn: object, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = spawn  # type: ignore[assignment]
    repo = git_init(tmp_path / "kept")
    (repo / ".haltonrc").write_text('project = "Ça va"\n')
    with caplog.at_level(logging.WARNING):
        context = resolve_process(start(repo), "misc")
    assert (context.decision.project, context.decision.layer) == ("kept", "git")
    assert "not a valid project name" in caplog.text
    assert context.skipped and "Ça va" in context.skipped[0]


def test_an_exited_process_gets_the_default(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"], cwd=tmp_path)
    gone.wait()
    context = resolve_process(gone.pid, "house")
    assert (context.decision.project, context.decision.layer) == ("house", "default")
    assert context.note and "exited" in context.note


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "slug"),
    [
        ("Acme", "acme"),
        ("my repo", "my-repo"),
        ("site.example.com", "site-example-com"),
        ("client:acme/web", "client:acme/web"),
        ("  -x- ", "x"),
        ("café", None),
        ("a'b", None),
        ("", None),
        ("x" * 101, None),
    ],
)
def test_slugs(raw: str, slug: str | None) -> None:
    assert normalise_slug(raw) == slug


@pytest.mark.parametrize(
    ("cmdline", "name", "hint"),
    [
        (("node", "--folder-uri=file:///home/u/acme"), "node", "acme"),
        (("x", "--folder-uri", "vscode-remote://ssh-remote%2Bbox/srv/shop"), "x", "shop"),
        (("cursor", "/home/u/team.code-workspace"), "cursor", "team"),
        (("x", "--file-uri", "file:///home/u/big.code-workspace"), "x", "big"),
        (("x", "--file-uri", "file:///home/u/notes.txt"), "x", None),
        (("/usr/share/code/code", "--type=renderer", "/"), "code", None),
        (("python", "/"), "python", None),  # only the editor's own folder argument counts
    ],
)
def test_ide_hints(cmdline: tuple[str, ...], name: str, hint: str | None) -> None:
    found = ide_hint(cmdline, name)
    assert (found[0] if found else None) == hint


def test_editor_folder_argument(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    assert ide_hint(("windsurf", str(tmp_path / "shop")), "windsurf") == (
        "shop",
        f"folder {tmp_path / 'shop'}",
    )


def test_relative_editor_folder_is_the_editors_own(tmp_path: Path) -> None:
    """Issue 16, item 9: `code .` started in ~/src/shop names shop, not the daemon's folder
    (here pytest's, a git repository) nor whatever `.` is for the process reading it."""
    shop = tmp_path / "src" / "shop"
    shop.mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "code").symlink_to(sys.executable)  # a process called `code`
    editor = subprocess.Popen([str(bin_dir / "code"), "-c", SLEEPER, "."], cwd=shop)
    try:
        wait_for(lambda: "." in psutil.Process(editor.pid).cmdline(), 10, "exec")
        assert Path.cwd() != shop
        decided = resolve_process(editor.pid, "misc").decision
        assert (decided.project, decided.layer) == ("shop", "ide")
        assert str(shop) in decided.saw
    finally:
        editor.kill()
        editor.wait()
    # Without the editor's cwd a relative folder is no hint at all.
    assert ide_hint(("code", "."), "code") is None
    assert ide_hint(("code", "."), "code", shop) == ("shop", f"folder {shop}")


@pytest.mark.parametrize(
    ("cgroup", "env", "kind"),
    [
        ("0::/system.slice/docker-3f2a.scope\n", {}, "docker"),
        ("12:pids:/kubepods/burstable/pod1/abc\n", {}, "k8s"),
        ("0::/\n", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "k8s"),
        ("0::/user.slice/user-1000.slice/session-2.scope\n", {}, None),
    ],
)
def test_container_kind(cgroup: str, env: dict[str, str], kind: str | None) -> None:
    assert container_kind(cgroup, env) == kind


@pytest.mark.parametrize(
    ("raw", "name"),
    [("python3.12", "python"), ("node.exe", "node"), ("claude", "claude"), ("Codex", "codex")],
)
def test_client_names(raw: str, name: str) -> None:
    assert client_name(raw) == name


def test_rules_all_conditions_must_hold() -> None:
    rules = (
        TaggingRule("web", path="/home/u/clients/acme*", process="node"),
        TaggingRule("agent", user_agent="claude-cli/*"),
        TaggingRule("home", path="~"),
    )
    assert first_match(rules, "node", "/home/u/clients/acme-web/src", None) == rules[0]
    assert first_match(rules, "python", "/home/u/clients/acme-web", None) is None
    assert first_match(rules, "python", "/x", "Claude-CLI/1.2 (external)") == rules[1]
    home = str(Path.home() / "anything")
    assert first_match(rules, "python", home, None) == rules[2]


def test_rules_apply_per_request_with_the_user_agent(tmp_path: Path) -> None:
    attributor = Attributor("misc", (TaggingRule("agent", user_agent="acme/*"),))
    try:
        lookup = attributor.lookup(None, None)
        assert attributor.attribute(lookup, None, "acme/1").project == "agent"
        assert attributor.attribute(lookup, None, "other/1").layer == "default"
        assert attributor.attribute(lookup, "tagged", "acme/1").layer == "tag"
        assert attributor.lookups == 1
    finally:
        attributor.close()


def test_config_rules_are_parsed_in_order() -> None:
    config = parse_config(
        '[tagging]\ndefault_project = "misc"\n\n[[tagging.rules]]\npath = "~/acme/*"\n'
        'project = "acme"\n\n[[tagging.rules]]\nprocess = "codex"\nuser_agent = "codex*"\n'
        'project = "codex-work"\n',
        SOURCE,
    )
    assert config.tagging_rules == (
        TaggingRule("acme", path="~/acme/*"),
        TaggingRule("codex-work", process="codex", user_agent="codex*"),
    )


@pytest.mark.parametrize(
    ("text", "key", "line", "problem"),
    [
        (
            "[[tagging.rules]]\npath = '/x'\nproject = 'Acme!'\n",
            "tagging.rules[0].project",
            3,
            "slug",
        ),
        ("[[tagging.rules]]\nproject = 'a'\n", "tagging.rules[0]", 1, "at least one of"),
        (
            "[[tagging.rules]]\nproject = 'a'\npath = '/a'\n\n[[tagging.rules]]\npath = '/b'\n",
            "tagging.rules[1]",
            5,
            "needs project",
        ),
        (
            "[[tagging.rules]]\nproject = 'a'\ncwd = '/a'\n",
            "tagging.rules[0].cwd",
            3,
            "unknown key",
        ),
        (
            "[[tagging.rules]]\nproject = 'a'\nprocess = 3\n",
            "tagging.rules[0].process",
            3,
            "string",
        ),
        ("[tagging]\nrules = 'x'\n", "tagging.rules", 2, "array of tables"),
    ],
)
def test_rule_mistakes_name_key_and_line(text: str, key: str, line: int, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, SOURCE)
    assert (raised.value.key, raised.value.line) == (key, line)
    assert problem in str(raised.value)
