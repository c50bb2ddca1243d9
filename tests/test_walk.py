"""The README, followed by a new user from the top (issue 16): a fresh clone of this branch, a
fresh HOME, real terminals (pseudo-terminals) where a person would have them, and only what a
person reads. In order: `./scripts/meter` (set-up, then the meter in the foreground), a metered
call and `status`, `doctor`, `requests` from another shell with `.venv/bin/halton-meter`, the
users' install (`uv tool install .`, `init`, `status`), `run`, `requests`, `projects`, `why`,
`report`, `dashboard` (the page in headless Chromium shows the call), `uninstall`.

It fails on any traceback, on "down" or "BROKEN" while the meter works, on advice that does not
work when followed, and on a README command that does not do what the README says.

What stands in for the person's machine: the calls go to the local TLS fake under their real
host names (`[upstream] resolve` in config.toml, with free ports so the machine's own 8081 is
left alone); pip and uv reuse a shared download cache (the first run downloads, later ones
take about a minute); the supervisor is the background one, so no systemd user manager of the
machine is touched; the machine's registry settings (certificates, pip's and uv's variables)
carry over, as they would for a person on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, UPSTREAM_HOSTS, VENV_BIN, FakeUpstream, free_port, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
UV = shutil.which("uv") or str(VENV_BIN / "uv")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
MESSAGES = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
SETUP_BUDGET = 600.0  # seconds for ./scripts/meter's set-up, downloads included

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed"),
    pytest.mark.skipif(not Path(UV).exists(), reason="uv is not installed"),
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
]


def readme_commands() -> list[str]:
    """Every command line in the README's sh blocks, comments dropped."""
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command:
                found.append(command)
    return found


def plain(raw: bytes) -> str:
    return ANSI.sub("", raw.decode(errors="replace"))


@dataclass
class Terminal:
    """A long-running command on its own pseudo-terminal (the foreground meter)."""

    process: subprocess.Popen[bytes]
    fd: int
    output: bytearray = field(default_factory=bytearray)

    @classmethod
    def start(cls, command: list[str], cwd: Path, env: dict[str, str]) -> Terminal:
        fd, tty = pty.openpty()
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=tty, stdout=tty, stderr=tty, start_new_session=True
        )
        os.close(tty)
        terminal = cls(process, fd)
        threading.Thread(target=terminal._read, daemon=True).start()
        return terminal

    def _read(self) -> None:
        while True:
            try:
                ready = select.select([self.fd], [], [], 0.2)[0]
                if ready:
                    chunk = os.read(self.fd, 65536)
                    if not chunk:
                        return
                    self.output += chunk
                elif self.process.poll() is not None:
                    return
            except OSError:
                return

    @property
    def text(self) -> str:
        return plain(bytes(self.output))

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, 9)
        self.process.wait()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def in_terminal(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> Any:
    """Run a command on a pseudo-terminal, as typed in a shell; (exit code, what it printed)."""
    terminal = Terminal.start(command, cwd, env)
    try:
        terminal.process.wait(timeout=timeout)
        time.sleep(0.2)  # the reader drains what is left
    finally:
        terminal.stop()
    return terminal.process.returncode, terminal.text


@dataclass
class Person:
    """A user's shell on this machine: a fresh HOME, the clone as the working folder."""

    clone: Path
    home: Path
    env: dict[str, str]
    seen: list[str] = field(default_factory=list)

    def type(self, line: str, *, expect: int = 0, cwd: Path | None = None) -> str:
        """A command line as the README spells it (a `.venv/bin/…` path is the clone's)."""
        argv = line.split()
        if argv[0].startswith(".venv/"):
            argv[0] = str(self.clone / argv[0])
        code, text = in_terminal(argv, cwd or self.clone, self.env)
        self.seen.append(f"$ {line}\n{text}")
        assert "Traceback" not in text, f"{line}:\n{text}"
        assert code == expect, f"{line} exited {code}:\n{text}"
        return text

    def json(self, *args: str, program: str = "halton-meter") -> Any:
        done = subprocess.run(
            [program, *args, "--json"],
            cwd=self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode in (0, 1, 2), done.stderr
        return json.loads(done.stdout)

    def curl(self, program: str, *project: str) -> str:
        """A tool's LLM call, metered the README's way: `halton-meter run [--project P] -- …`."""
        out = self.home / "reply.json"
        line = " ".join(
            [
                program,
                "run",
                *project,
                "--",
                "curl -sS --fail -o",
                str(out),
                "https://api.anthropic.com/v1/messages",
            ]
        )
        argv = [*line.split(), "-H", "content-type: application/json", "--data", MESSAGES]
        if argv[0].startswith(".venv/"):
            argv[0] = str(self.clone / argv[0])
        code, text = in_terminal(argv, self.clone, self.env)
        self.seen.append(f"$ {line}\n{text}")
        assert code == 0 and "Traceback" not in text, text
        assert json.loads(out.read_text())["type"] == "message"
        return text


def healthy_words(text: str, what: str) -> None:
    """While the meter works, nothing a person reads may say it is down or broken."""
    lowered = text.lower()
    assert " down" not in lowered and "broken" not in lowered, f"{what}:\n{text}"
    assert "fail" not in lowered, f"{what}:\n{text}"


@pytest.fixture
def person(fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Person]:
    # Not "halton-meter": the untagged call is attributed to this git repository by name.
    clone, home = tmp_path / "checkout", tmp_path / "home"
    home.mkdir()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True)
    # The person's machine: Python 3.12+ and uv on PATH, ~/.local/bin on PATH (where uv tool
    # installs), no proxy variables, nothing of Halton Meter yet.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "uv").symlink_to(UV)
    python_bin = Path(sys.base_prefix) / "bin"
    real_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    env = {
        "HOME": str(home),
        "PATH": os.pathsep.join(
            [
                str(home / ".local" / "bin"),
                str(tools),
                str(python_bin),
                "/usr/local/bin",
                "/usr/bin",
                "/bin",
            ]
        ),
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "COLUMNS": "120",
        "PIP_CACHE_DIR": str(real_cache / "pip"),
        "UV_CACHE_DIR": str(real_cache / "uv"),
        "UV_PYTHON_DOWNLOADS": "never",
        "HALTON_METER_SUPERVISOR": "background",
        "BROWSER": str(tools / "browser") + " %s",
    }
    # The machine's own way to reach the package registries (its certificates, pip's and uv's
    # settings) is the person's too; proxies to the meter are not set yet.
    for name, value in os.environ.items():
        if name.startswith(("PIP_", "UV_")) or "CERT" in name or name.endswith("CA_BUNDLE"):
            env.setdefault(name, value)
    # The dashboard opens "in the browser": this one notes the URL for headless Chromium.
    (tools / "browser").write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{home}/opened-url"\n')
    (tools / "browser").chmod(0o755)
    meter_home = home / ".halton-meter"
    meter_home.mkdir()
    resolve = "\n".join(
        f'"{host}:443" = "127.0.0.1:{fake_upstream.port}"' for host in UPSTREAM_HOSTS
    )
    (meter_home / "config.toml").write_text(
        f"""[daemon]
proxy_port = {free_port()}
internal_port = {free_port()}
api_port = {free_port()}

[upstream]
ca_bundle = "{fake_upstream.pki.ca_cert}"

[upstream.resolve]
{resolve}
"""
    )
    walker = Person(clone, home, env)
    yield walker
    # Whatever happened, nothing of this walk keeps running.
    for name in ("edge.json", "daemon.json", "edge.pid", "daemon.pid"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            os.kill(int(json.loads((meter_home / name).read_text())["pid"]), 9)


@pytest.mark.timeout(1500)  # two installs from the package index: minutes, not seconds
def test_the_readme_walk(person: Person) -> None:
    commands = readme_commands()
    assert commands[:2] == ["./scripts/meter", "./scripts/test"], commands
    port = int(
        re.findall(r"proxy_port = (\d+)", (person.home / ".halton-meter/config.toml").read_text())[
            0
        ]
    )

    # --- On a fresh machine: ./scripts/meter sets up, then meters in the foreground ------------
    started = time.monotonic()
    meter = Terminal.start(["./scripts/meter"], person.clone, person.env)
    try:
        wait_for(
            lambda: "metering on 127.0.0.1" in meter.text or meter.process.poll() is not None,
            SETUP_BUDGET,
            "./scripts/meter to set up and meter",
        )
        setup_seconds = time.monotonic() - started
        print(f"./scripts/meter: set up and metering after {setup_seconds:.0f} s")
        text = meter.text
        assert meter.process.poll() is None, text
        assert "Traceback" not in text, text
        # Progress during the silent minute, and where the program is for the next step.
        assert "halton-meter set-up: creating .venv" in text, text
        assert "halton-meter set-up: installing the project" in text, text
        assert f"{person.clone}/.venv/bin/halton-meter" in text, text
        assert f"http://127.0.0.1:{port}" in text, text

        # --- In another shell, while it runs (README: "Try it while ./scripts/meter runs") --
        tried = [c for c in commands if c.startswith(".venv/bin/halton-meter")]
        assert [c.split()[1] for c in tried] == ["run", "status", "doctor", "requests"], tried
        person.curl(".venv/bin/halton-meter")  # `run -- CMD`: any command, here curl
        wait_for(
            lambda: person.json("requests", program=str(person.clone / ".venv/bin/halton-meter")),
            30,
            "the row",
        )
        status = person.type(".venv/bin/halton-meter status")
        assert "healthy" in status and "standalone" in status, status
        healthy_words(status, "status")
        doctor = person.type(".venv/bin/halton-meter doctor")
        assert "HEALTHY" in doctor and "fix:" not in doctor, doctor
        healthy_words(doctor, "doctor")
        requests = person.type(".venv/bin/halton-meter requests")
        assert "claude-sonnet-4-5" in requests, requests

        # --- Install (users): from this checkout, then init takes over -----------------------
        installing = [c for c in commands if c.startswith(("uv tool install", "halton-meter init"))]
        assert installing[:2] == ["uv tool install .", "halton-meter init"], installing
        started = time.monotonic()
        person.type("uv tool install .")
        print(f"uv tool install .: {time.monotonic() - started:.0f} s")
        assert (person.home / ".local/bin/halton-meter").exists()
        init = " ".join(person.type("halton-meter init").split())  # as read, line breaks aside
        assert "Halton Meter is running" in init and "self-test" in init, init
        assert "stopped the standalone daemon" in init, init
        # The foreground meter wrote its rows and ended cleanly.
        assert meter.process.wait(timeout=30) == 0, meter.text
        assert "Traceback" not in meter.text, meter.text
        # init's own advice, followed.
        assert "halton-meter status" in init and "halton-meter run -- CMD" in init, init
        status = person.type("halton-meter status")
        assert "healthy" in status and "behind-edge" in status, status
        healthy_words(status, "status after init")
    finally:
        meter.stop()

    # --- Then, in another shell, meter any command --------------------------------------------
    person.curl("halton-meter", "--project", "acme")
    person.curl("halton-meter")  # no tag: attributed from the process (the clone's git repo)
    calls = wait_for(
        lambda: (rows := person.json("requests")) and len(rows) >= 3 and rows, 30, "the rows"
    )
    assert "halton-meter" not in {row["provider"] for row in calls}  # no self-test rows
    tagged = next(row for row in calls if row["project"] == "acme")
    assert tagged["attribution"] == "tag"
    untagged = calls[0]
    assert untagged["project"] == person.clone.name and untagged["attribution"] == "git", untagged
    requests = person.type("halton-meter requests")
    assert "acme" in requests and person.clone.name in requests, requests
    projects = person.type("halton-meter projects")
    assert "acme" in projects and person.clone.name in projects, projects
    assert {p["project"] for p in person.json("projects")} == {"acme", person.clone.name}
    why = person.type(f"halton-meter why {tagged['id']}")
    assert "Project:  acme" in why and "tag" in why, why
    report = person.type("halton-meter report --since 7d --by project --by model")
    assert "acme" in report and "claude-sonnet-4-5" in report, report
    assert "Unpriced" not in report and "*" not in report, report
    doctor = person.type("halton-meter doctor")
    assert "HEALTHY" in doctor and "fix:" not in doctor, doctor

    # --- dashboard: in the browser (here: headless Chromium) ---------------------------------
    person.type("halton-meter dashboard")
    url = (person.home / "opened-url").read_text()
    assert url.startswith("http://127.0.0.1:") and "#token=" in url, url
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_selector("#card-requests .value")
            page.wait_for_function("document.body.dataset.refreshes >= 1")
            # The calls since the set-up, none of init's self-tests.
            assert page.inner_text("#card-requests .value") == str(len(calls))
            assert page.locator("#unpriced-warning").count() == 0
            page.goto(url.split("#")[0] + "#/projects")
            page.wait_for_selector('#projects-table tr[data-slug="acme"]')
            assert page.locator('#projects-table tr[data-slug="halton-meter"]').count() == 0
            assert errors == []
        finally:
            browser.close()

    # --- uninstall -------------------------------------------------------------------------
    gone = person.type("halton-meter uninstall")
    assert "stopped daemon" in gone and "stopped edge" in gone, gone
    status = person.type("halton-meter status", expect=2)  # nothing runs now: down is true
    person.type("uv tool uninstall halton-meter")
    assert not (person.home / ".local/bin/halton-meter").exists()
    assert (person.home / ".halton-meter/db.sqlite").exists()  # the ledger stays
    leftovers = [p.name for p in person.home.iterdir()]
    assert ".profile" not in leftovers and ".bashrc" not in leftovers, leftovers
