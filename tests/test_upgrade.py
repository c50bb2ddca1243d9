"""The upgrade page, for real on Linux: install an older release, meter through it, upgrade
with each install channel, roll back, and check that what the page promises survives.

Two wheels are built from this tree: OLD (this tree) and NEW (this tree plus an extra additive
migration, a nullable column and an index, standing in for the next schema change), so the
rollback runs OLD on a ledger that NEW migrated, with a migration and a column it never heard
of. Dependencies come from a wheelhouse that
`pip download` fills once (kept in tests/artifacts/, reused while pyproject's dependencies and
the Python version stay the same); every install then runs with uv's `no-index` and pip's
`PIP_NO_INDEX`, so only our two wheels can be picked, never a `halton-meter` from PyPI.

Each channel gets its own user: HOME, the uv and pipx folders, the meter's home all in a
temporary folder. HALTON_METER_HOME is left unset on purpose, so the files are where the page
names them (~/.halton-meter and ~/.mitmproxy inside that HOME). HALTON_METER_SUPERVISOR=
background (no systemd user manager here). The user runs the page's commands as written:
`halton-meter` is whatever the channel put on PATH. The three channels and the upgrade from
the release before run at the same time, each on its own ports; each test reports its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from halton_meter import __version__
from tests.conftest import ROOT, UPSTREAM_HOSTS, VENV_BIN, FakeUpstream, free_port, wait_for
from tests.streams import Streams

pytestmark = pytest.mark.timeout(420)

RELEASE = re.match(r"\d+(\.\d+)*", __version__).group(0)  # type: ignore[union-attr]
OLD, NEW = f"{RELEASE}.post1", f"{RELEASE}.post2"
PROBE_MIGRATION = 9001  # NEW's extra migration; far from the numbers reserved for real ones
BASE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
PROMISED = (  # the page's "What survives an upgrade", as files under HOME
    ".halton-meter/config.toml",
    ".halton-meter/effective-ports.json",
    ".halton-meter/system_state.json",
    ".halton-meter/cloud-credentials.json",
    ".mitmproxy/mitmproxy-ca-cert.pem",
    ".mitmproxy/mitmproxy-ca.pem",
)


# --- the two releases --------------------------------------------------------------------------


@dataclass(frozen=True)
class Releases:
    wheelhouse: Path  # the dependencies
    old: Path
    new: Path
    prior: Path  # the release before issue 14, built from git history


def _wheelhouse() -> Path:
    """The dependencies' wheels for this Python, downloaded once and reused across sessions."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = sorted([*pyproject["project"]["dependencies"], "setuptools>=69", "wheel"])
    tag = f"{sys.implementation.cache_tag}-{sys.platform}-{os.uname().machine}"
    key = hashlib.sha256("\n".join([tag, *wanted]).encode()).hexdigest()[:16]
    folder = ROOT / "tests" / "artifacts" / "wheelhouse" / key
    if folder.is_dir():
        return folder
    partial = folder.with_name(f".{key}.{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"),
            *("--dest", str(partial), *wanted),
        ],
        check=True,
        timeout=600,
    )
    with contextlib.suppress(OSError):  # a parallel session got there first: theirs is as good
        partial.rename(folder)
    shutil.rmtree(partial, ignore_errors=True)
    return folder


def _patched_tree(
    target: Path, version: str, schema: Callable[[str], str], root: Path = ROOT
) -> Path:
    target.mkdir(parents=True)
    shutil.copy2(root / "pyproject.toml", target)
    shutil.copy2(root / "README.md", target)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(root / "src", target / "src", ignore=ignore)
    init = target / "src" / "halton_meter" / "__init__.py"
    text, count = re.subn(
        r'^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text(), flags=re.M
    )
    assert count == 1, "src/halton_meter/__init__.py no longer sets __version__ on one line"
    init.write_text(text)
    schema_py = target / "src" / "halton_meter" / "ledger" / "schema.py"
    schema_py.write_text(schema(schema_py.read_text()))
    return target


LATEST_LINE = "LATEST_VERSION = MIGRATIONS[-1][0]"


def _same_schema(text: str) -> str:
    """OLD is this tree's schema. (Dropping a migration would not make an older release: this
    tree's code uses every one of its migrations.)"""
    return text


def _newer_schema(text: str) -> str:
    """NEW adds an additive migration: a nullable column and an index, as the policy allows."""
    assert LATEST_LINE in text
    probe = (
        f"MIGRATIONS.append(({PROBE_MIGRATION}, 'upgrade_probe', ["
        "'ALTER TABLE requests ADD COLUMN upgrade_probe TEXT', "
        "'CREATE INDEX IF NOT EXISTS requests_upgrade_probe ON requests (upgrade_probe)']))\n"
    )
    return text.replace(LATEST_LINE, probe + LATEST_LINE)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """OLD, NEW and PRIOR, built once for the module and at the same time (each build waits
    mostly on its own build environment)."""
    wheelhouse = _wheelhouse()
    base = tmp_path_factory.mktemp("releases")
    trees = {
        OLD: _patched_tree(base / f"tree-{OLD}", OLD, _same_schema),
        NEW: _patched_tree(base / f"tree-{NEW}", NEW, _newer_schema),
        PRIOR: _prior_tree(base / "prior"),
    }
    with ThreadPoolExecutor(len(trees)) as pool:
        futures = {
            version: pool.submit(
                _build_wheel, tree, base / f"dist-{version}", wheelhouse, base / f"uv-{version}"
            )
            for version, tree in trees.items()
        }
        built = {version: future.result() for version, future in futures.items()}
    return Releases(wheelhouse, built[OLD], built[NEW], built[PRIOR])


def _build_wheel(tree: Path, out: Path, wheelhouse: Path, cache: Path) -> Path:
    subprocess.run(
        [
            *(str(VENV_BIN / "uv"), "build", "--wheel", "--quiet", "--no-config"),
            *("--no-index", "--find-links", str(wheelhouse), "--out-dir", str(out), str(tree)),
        ],
        env={
            **_clean_environment(),
            "UV_CACHE_DIR": str(cache),
            "UV_PYTHON": BASE_PYTHON,
            "UV_PYTHON_DOWNLOADS": "never",
        },
        check=True,
        timeout=120,
    )
    (wheel,) = out.glob("halton_meter-*.whl")
    return wheel


# The release before issue 14 (drain, restart without a gap, the guard): main's last commit
# before that work. Its wheel is built from git history, versioned below OLD.
PRIOR_COMMIT = "8aba29c"
PRIOR = f"{RELEASE}.post0"


def _prior_tree(base: Path) -> Path:
    """PRIOR_COMMIT's sources, versioned PRIOR."""
    source = base / "source"
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PRIOR_COMMIT, "pyproject.toml", "README.md", "src"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    return _patched_tree(base / "tree", PRIOR, _same_schema, root=source)


def _clean_environment() -> dict[str, str]:
    """The test's environment without anything that would steer uv, pip, pipx or the meter."""
    drop = ("UV_", "PIP_", "PIPX_", "XDG_", "HALTON_METER_", "VIRTUAL_ENV", "PYTHON")
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(drop) and not key.lower().endswith("_proxy")
    }


# --- one user's machine ------------------------------------------------------------------------


@dataclass
class Machine:
    """A user with their own HOME, tool folders and package index (the local release folder)."""

    home: Path
    index: Path  # what is "on PyPI": the released wheels
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    @property
    def meter_home(self) -> Path:
        return self.home / ".halton-meter"

    def release(self, wheel: Path) -> None:
        shutil.copy2(wheel, self.index)

    def run(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            list(args),
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        self.log.append(
            f"$ {' '.join(args)}  # {time.monotonic() - started:.1f}s rc={done.returncode}\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
        if check:
            assert done.returncode == 0, f"{' '.join(args)} failed:\n{self.log[-1]}"
        return done

    def state(self, name: str) -> dict[str, Any]:
        return json.loads((self.meter_home / name).read_text())  # type: ignore[no-any-return]

    def ports(self) -> dict[str, int]:
        return self.state("effective-ports.json")  # type: ignore[return-value]


def _machine(root: Path, releases: Releases, upstream: FakeUpstream) -> Machine:
    home = root / "home"
    index = root / "index"
    tools = root / "tools"  # uv, uvx and pipx only: the dev venv's halton-meter stays hidden
    for folder in (home / ".config" / "uv", index, tools):
        folder.mkdir(parents=True)
    for name in ("uv", "uvx", "pipx"):
        (tools / name).symlink_to(VENV_BIN / name)
    local = home / ".local"
    # uv reads its user configuration from there, as on any machine with a private index.
    (home / ".config" / "uv" / "uv.toml").write_text(
        "no-index = true\n"
        f'find-links = ["{releases.wheelhouse}", "{index}"]\n'
        'python-downloads = "never"\n'
    )
    env = {
        **_clean_environment(),
        "HOME": str(home),
        "PATH": f"{local / 'bin'}:{tools}:/usr/local/bin:/usr/bin:/bin",
        "UV_TOOL_DIR": str(local / "share" / "uv" / "tools"),
        "UV_TOOL_BIN_DIR": str(local / "bin"),
        "UV_CACHE_DIR": str(home / ".cache" / "uv"),
        "UV_PYTHON": BASE_PYTHON,
        "PIPX_HOME": str(local / "share" / "pipx"),
        "PIPX_BIN_DIR": str(local / "bin"),
        "PIPX_DEFAULT_PYTHON": BASE_PYTHON,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{releases.wheelhouse} {index}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "HALTON_METER_SUPERVISOR": "background",
    }
    machine = Machine(home, index, env)
    _write_config(machine, upstream)
    return machine


CLOUD_CREDENTIALS = b'{"server": "https://team.example", "device_id": "stand-in"}\n'


def _write_config(machine: Machine, upstream: FakeUpstream) -> None:
    """A hand-edited config.toml (comments included) on free ports, reaching the fake providers
    under their real names; and a stand-in cloud pairing file."""
    resolve = "\n".join(f'"{host}:443" = "127.0.0.1:{upstream.port}"' for host in UPSTREAM_HOSTS)
    machine.meter_home.mkdir(parents=True)
    (machine.meter_home / "config.toml").write_text(
        "# My Halton Meter settings. An upgrade must keep this file byte for byte.\n"
        "[daemon]\n"
        f"proxy_port = {free_port()}  # the edge: what my tools use\n"
        f"internal_port = {free_port()}\n"
        f"api_port = {free_port()}\n"
        "\n"
        "[upstream]\n"
        "# the test's fake providers, under the providers' real names\n"
        f'ca_bundle = "{upstream.pki.ca_cert}"\n'
        "\n"
        "[upstream.resolve]\n"
        f"{resolve}\n"
    )
    (machine.meter_home / "cloud-credentials.json").write_bytes(CLOUD_CREDENTIALS)


# --- the channels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    name: str
    install: tuple[tuple[str, ...], ...]  # the first install of the latest release
    upgrade: tuple[tuple[str, ...], ...]  # the page's upgrade sequence
    rollback: tuple[tuple[str, ...], ...]  # the page's rollback to OLD
    command: tuple[str, ...]  # how the user runs halton-meter
    rolled_back_command: tuple[str, ...]


CHANNELS = (
    Channel(
        "uv-tool",
        install=(("uv", "tool", "install", "halton-meter"),),
        upgrade=(("uv", "tool", "upgrade", "halton-meter"),),
        rollback=(("uv", "tool", "install", "--force", f"halton-meter=={OLD}"),),
        command=("halton-meter",),
        rolled_back_command=("halton-meter",),
    ),
    Channel(
        "pipx",
        install=(("pipx", "install", "halton-meter"),),
        upgrade=(("pipx", "upgrade", "halton-meter"),),
        rollback=(("pipx", "install", "--force", f"halton-meter=={OLD}"),),
        command=("halton-meter",),
        rolled_back_command=("halton-meter",),
    ),
    Channel(
        "uvx",
        install=(),
        upgrade=(("uv", "cache", "clean", "halton-meter"), ("uvx", "halton-meter", "--version")),
        rollback=(),  # the page rolls back with a pinned uvx
        command=("uvx", "halton-meter"),
        rolled_back_command=("uvx", f"halton-meter@{OLD}"),
    ),
)


# --- traffic -----------------------------------------------------------------------------------


def _meter_calls(machine: Machine, project: str, count: int) -> None:
    """OpenAI chat calls through the edge with curl, as a tool with the env block would."""
    port = machine.ports()["proxy_port"]
    for _ in range(count):
        done = machine.run(
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "20",
            "--proxy",
            f"http://{project}:meter@127.0.0.1:{port}",
            "--cacert",
            str(machine.meter_home / "ca-bundle.pem"),
            "https://api.openai.com/v1/chat/completions",
            "-H",
            "content-type: application/json",
            "--data",
            '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}',
        )
        assert '"usage"' in done.stdout, done.stdout


def _rows(machine: Machine, project: str | None = None) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{machine.meter_home / 'db.sqlite'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        sql, args = "SELECT * FROM requests ORDER BY id", ()
        if project is not None:
            sql, args = "SELECT * FROM requests WHERE project = ? ORDER BY id", (project,)
        return [dict(row) for row in con.execute(sql, args)]
    finally:
        con.close()


def _wait_rows(machine: Machine, project: str, count: int) -> list[dict[str, Any]]:
    wait_for(lambda: len(_rows(machine, project)) >= count, 20, f"{count} rows of {project}")
    rows = _rows(machine, project)
    assert len(rows) == count, rows
    return rows


def _migrations(machine: Machine) -> set[int]:
    con = sqlite3.connect(f"file:{machine.meter_home / 'db.sqlite'}?mode=ro", uri=True)
    try:
        return {row[0] for row in con.execute("SELECT id FROM _migrations")}
    finally:
        con.close()


class TunnelLoop:
    """CONNECTs to a host the meter does not claim (example.org), through the edge, end to end
    TLS with the fake, one after another until stopped: every failure is kept."""

    def __init__(self, port: int, upstream: FakeUpstream) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(upstream.pki.ca_cert))
        self.done = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TunnelLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._once()
                self.done += 1
            except (OSError, AssertionError) as error:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {error!r}")
            time.sleep(0.01)

    def _once(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            raw.sendall(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = raw.recv(4096)
                assert chunk, f"the edge closed the connection after {head!r}"
                head += chunk
            assert head.startswith(b"HTTP/1.1 200"), head
            with self.context.wrap_socket(raw, server_hostname="example.org") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n")
                body = b""
                while chunk := tls.recv(65536):
                    body += chunk
        assert b"hello from example.org" in body, body[-200:]


# --- checks ------------------------------------------------------------------------------------


def _promised_files(machine: Machine) -> dict[str, bytes]:
    found = {}
    for name in PROMISED:
        path = machine.home / name
        assert path.is_file(), f"{name} is missing"
        found[name] = path.read_bytes()
    # The clients' bundle may change with certifi; it must always hold the same CA.
    ca = found[".mitmproxy/mitmproxy-ca-cert.pem"].strip()
    assert ca in (machine.meter_home / "ca-bundle.pem").read_bytes()
    return found


def _shell_files(machine: Machine) -> dict[str, bytes]:
    names = (".profile", ".bashrc", ".bash_profile", ".zshrc")
    return {n: (machine.home / n).read_bytes() for n in names if (machine.home / n).exists()}


def _definitions(machine: Machine) -> dict[str, list[str]]:
    """What the supervisors start: the pid files' commands and the units' ExecStart."""
    found = {}
    for name in ("edge", "daemon"):
        found[f"{name}.pid"] = machine.state(f"{name}.pid")["command"]
    for unit in ("halton-meter-edge.service", "halton-meter.service"):
        text = (machine.home / ".config" / "systemd" / "user" / unit).read_text()
        (exec_start,) = re.findall(r"^ExecStart=(.*)$", text, flags=re.M)
        found[unit] = exec_start.split()
        (description,) = re.findall(r"^Description=(.*)$", text, flags=re.M)
        found[f"{unit} description"] = description.split()
    return found


def _expected_executable(machine: Machine, channel: Channel, version: str) -> str:
    """The stable path every definition must name."""
    if channel.name == "uvx":
        # Never a path inside uv's cache (a cache clean deletes it): the home's launcher.
        return str(machine.meter_home / "bin" / f"halton-meter-{version}")
    return str(machine.home / ".local" / "bin" / "halton-meter")


def _check_running(machine: Machine, channel: Channel, version: str) -> None:
    executable = _expected_executable(machine, channel, version)
    definitions = _definitions(machine)
    for name, args in (
        ("edge.pid", ["edge"]),
        ("daemon.pid", ["daemon", "--behind-edge"]),
        ("halton-meter-edge.service", ["edge"]),
        ("halton-meter.service", ["daemon", "--behind-edge"]),
    ):
        assert definitions[name] == [executable, *args], (name, definitions[name])
        if name.endswith(".service"):
            assert definitions[f"{name} description"][-1] == version
    assert os.access(executable, os.X_OK)
    uv_cache = machine.env["UV_CACHE_DIR"]
    assert not any(uv_cache in word for words in definitions.values() for word in words)
    # The processes themselves say which release they run.
    for name in ("edge.json", "daemon.json"):
        assert machine.state(name)["version"] == version, name
    status = json.loads(machine.run(*_command(channel, version), "status", "--json").stdout)
    assert status["state"] == "healthy", status
    assert status["version"] == version
    assert {c["version"] for c in status["components"].values()} == {version}


def _command(channel: Channel, version: str) -> tuple[str, ...]:
    return channel.rolled_back_command if version == OLD else channel.command


def _stop_everything(machine: Machine) -> None:
    """Whatever happened, leave no process of this test running (the ones it started)."""
    pids = set()
    for name in ("guard.json", "edge.json", "daemon.json", "edge.pid", "daemon.pid"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids.add(int(machine.state(name)["pid"]))
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


# --- the test ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    error: BaseException | None
    log: list[str]


Scenario = Callable[[Machine, Channel, Releases, FakeUpstream], None]
PRIOR_JOB = "prior-upgrade"


@pytest.fixture(scope="module")
def outcomes(
    releases: Releases, fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """All three channels and the upgrade from the release before at once, each on its own
    machine (HOME, ports, tools): most of the time goes to waiting for processes, so together
    they take little longer than one."""

    def one(name: str, channel: Channel, scenario: Scenario) -> Outcome:
        root = tmp_path_factory.mktemp(name)
        machine = _machine(root, releases, fake_upstream)
        error: BaseException | None = None
        try:
            scenario(machine, channel, releases, fake_upstream)
        except Exception as failure:
            error = failure
        finally:
            with contextlib.suppress(Exception):
                machine.run(*channel.command, "uninstall", check=False, timeout=60)
            _stop_everything(machine)
            (root / "commands.log").write_text("\n".join(machine.log))
        return Outcome(error, machine.log)

    jobs: list[tuple[str, Channel, Scenario]] = [
        (c.name, c, _upgrade_and_roll_back) for c in CHANNELS
    ]
    jobs.append((PRIOR_JOB, CHANNELS[0], _upgrade_from_prior_and_roll_back))  # uv tool
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(one, name, c, scenario) for name, c, scenario in jobs}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("channel", CHANNELS, ids=[c.name for c in CHANNELS])
def test_upgrade_then_rollback_keeps_everything_the_page_promises(
    channel: Channel, outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[channel.name]
    if outcome.error is not None:
        print("\n".join(outcome.log))  # the commands and their output, for the failure report
        raise outcome.error


def _upgrade_and_roll_back(
    machine: Machine, channel: Channel, releases: Releases, upstream: FakeUpstream
) -> None:
    # OLD is the latest release: install it, set up, meter.
    machine.release(releases.old)
    for step in channel.install:
        machine.run(*step)
    assert machine.run(*channel.command, "--version").stdout.split()[-1] == OLD
    machine.run(*channel.command, "init", "--apps")
    _check_running(machine, channel, OLD)
    _meter_calls(machine, "before", 3)
    before_rows = _wait_rows(machine, "before", 3)
    assert all(row["cost_nanousd"] for row in before_rows)
    before = _promised_files(machine)
    shell_files = _shell_files(machine)
    assert any(b"127.0.0.1" in text for text in shell_files.values()), shell_files
    assert PROBE_MIGRATION not in _migrations(machine)

    # NEW is released; the user follows the upgrade page while their tools keep working.
    with TunnelLoop(machine.ports()["proxy_port"], upstream) as tunnels:
        machine.release(releases.new)
        for step in channel.upgrade:
            machine.run(*step)
        assert machine.run(*channel.command, "--version").stdout.split()[-1] == NEW
        machine.run(*channel.command, "init")  # restarts both on the new release
        time.sleep(0.5)
    assert tunnels.done >= 20, tunnels.done
    assert tunnels.failures == [], f"{len(tunnels.failures)} of {tunnels.done}: {tunnels.failures}"

    _check_running(machine, channel, NEW)
    assert _promised_files(machine) == before
    assert _shell_files(machine) == shell_files  # the env block, as `init --apps` wrote it
    assert _rows(machine, "before") == [{**row, "upgrade_probe": None} for row in before_rows]
    assert PROBE_MIGRATION in _migrations(machine)
    _meter_calls(machine, "after-upgrade", 2)
    _wait_rows(machine, "after-upgrade", 2)
    edge_starts = [
        json.loads(line)
        for line in (machine.meter_home / "logs" / "edge.jsonl").read_text().splitlines()
        if '"started"' in line
    ]
    assert edge_starts[-1]["version"] == NEW and edge_starts[-1]["took_over"] is True
    if channel.name == "uvx":
        # Even a full cache clean leaves the services startable: the launcher fetches again.
        launcher = _expected_executable(machine, channel, NEW)
        machine.run("uv", "cache", "clean")
        assert not list(Path(machine.env["UV_CACHE_DIR"]).glob("archive-v*/*"))
        assert machine.run(launcher, "--version").stdout.split()[-1] == NEW

    # NEW is bad after all: back to OLD, which must run on the ledger NEW migrated.
    for step in channel.rollback:
        machine.run(*step)
    assert machine.run(*_command(channel, OLD), "--version").stdout.split()[-1] == OLD
    machine.run(*_command(channel, OLD), "init")
    _check_running(machine, channel, OLD)
    assert _promised_files(machine) == before
    _meter_calls(machine, "after-rollback", 2)
    rows = _wait_rows(machine, "after-rollback", 2)
    assert all(row["cost_nanousd"] for row in rows)
    ours = [row for row in _rows(machine) if row["project"] != "halton-meter"]  # init's own
    assert len(ours) == 3 + 2 + 2
    assert PROBE_MIGRATION in _migrations(machine)
    doctor = machine.run(*_command(channel, OLD), "doctor", "--json", check=False)
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["migrations"]["status"] == "ok", checks["migrations"]
    assert checks["ledger"]["status"] == "ok", checks["ledger"]

    # Uninstall takes every definition away (the uvx launchers too) and keeps the data.
    machine.run(*_command(channel, OLD), "uninstall")
    assert not list((machine.home / ".config" / "systemd" / "user").glob("halton-meter*"))
    assert not list(machine.meter_home.glob("bin/*"))
    assert not (machine.meter_home / "edge.sock").exists()
    assert len(_rows(machine)) >= 7 and (machine.home / PROMISED[0]).exists()


# --- from the release before, and back, with traffic in flight --------------------------------


def _streams_through(machine: Machine, project: str) -> Streams:
    """10 Anthropic SDK streams of about 20 s through the edge, each on its own connection."""
    port = machine.ports()["proxy_port"]
    proxy = f"http://{project}:meter@127.0.0.1:{port}"
    return Streams(proxy, machine.meter_home / "ca-bundle.pem", events=100).start()


def _all_complete(machine: Machine, project: str, streams: Streams) -> None:
    assert streams.errors == [], streams.errors
    assert sorted(streams.completed) == list(range(10))
    rows = _wait_rows(machine, project, 10)
    assert [(r["status"], r["tokens_complete"]) for r in rows] == [("ok", 1)] * 10


def test_upgrade_from_the_release_before_and_roll_back_cut_nothing(
    outcomes: dict[str, Outcome],
) -> None:
    """The upgrade page's uv tool sequence from the release before this work (built from git
    history) to this tree, and its rollback, each with a connection loop and 10 streams in
    flight: no connection refused, no stream cut, every stream metered."""
    outcome = outcomes[PRIOR_JOB]
    if outcome.error is not None:
        print("\n".join(outcome.log))  # the commands and their output, for the failure report
        raise outcome.error


def _upgrade_from_prior_and_roll_back(
    machine: Machine, channel: Channel, releases: Releases, fake_upstream: FakeUpstream
) -> None:
    machine.release(releases.prior)
    machine.run("uv", "tool", "install", "halton-meter")
    assert machine.run("halton-meter", "--version").stdout.split()[-1] == PRIOR
    machine.run("halton-meter", "init")
    assert machine.state("daemon.json")["version"] == PRIOR

    with TunnelLoop(machine.ports()["proxy_port"], fake_upstream) as tunnels:
        streams = _streams_through(machine, "upgrade")
        machine.release(releases.old)
        machine.run("uv", "tool", "upgrade", "halton-meter")
        machine.run("halton-meter", "init")
        streams.join()
    assert tunnels.done >= 20, tunnels.done
    assert tunnels.failures == [], tunnels.failures
    _all_complete(machine, "upgrade", streams)
    _check_running(machine, channel, OLD)
    assert machine.state("guard.json")["version"] == OLD

    # Back to the release before, as the page says.
    with TunnelLoop(machine.ports()["proxy_port"], fake_upstream) as tunnels:
        streams = _streams_through(machine, "rollback")
        machine.run("uv", "tool", "install", "--force", f"halton-meter=={PRIOR}")
        machine.run("halton-meter", "init")
        streams.join()
    assert tunnels.done >= 20, tunnels.done
    assert tunnels.failures == [], tunnels.failures
    _all_complete(machine, "rollback", streams)
    for name in ("edge.json", "daemon.json"):
        assert machine.state(name)["version"] == PRIOR, name
    status = json.loads(machine.run("halton-meter", "status", "--json").stdout)
    assert status["state"] == "healthy", status
    _meter_calls(machine, "after-rollback", 2)
    _wait_rows(machine, "after-rollback", 2)
