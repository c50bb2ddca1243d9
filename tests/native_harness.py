"""Running the real `halton-meter` CLI in-process as if on Windows or macOS.

`HALTON_METER_OS` picks the OS's code path and `boundary.use_windows` / `use_macos` hand in the
fakes of tests/os_fakes.py; everything else is the real thing: the click commands, init's
steps, files on disk, and the edge and daemon processes that the fake Task Scheduler or
launchd starts from what init registered. "The executable" is a folder per installed version
holding `halton-meter` and `halton-meterw` (links to this checkout's entry points), so an
upgrade is a new folder, as `uv tool` or `pipx` would make after a reinstall elsewhere.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]
from click.testing import CliRunner

from halton_meter.cli import cli
from halton_meter.lifecycle import boundary
from tests.conftest import UPSTREAM_HOSTS, VENV_BIN, FakeUpstream, free_port
from tests.os_fakes import FakeMac, FakeWindows


def _register_commands() -> None:
    from halton_meter.cli import (
        daemon_cmd,
        edge_cmd,
        lifecycle_cmd,
        pricing_cmd,
        report_cmd,
        run_cmd,
    )

    for module in (daemon_cmd, edge_cmd, run_cmd, report_cmd, pricing_cmd, lifecycle_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


def install_version(folder: Path) -> Path:
    """A version of halton-meter installed in `folder`; returns its `halton-meter`."""
    folder.mkdir(parents=True)
    for name in ("halton-meter", "halton-meterw"):
        (folder / name).symlink_to(VENV_BIN / name)
    return folder / "halton-meter"


# What the running processes publish in the home (state, caches, spools): theirs, not init's.
RUNTIME_FILES = (
    "edge.json",
    "daemon.json",
    "edge.pid",
    "daemon.pid",
    "claimed-hosts.json",
    "budget-state.json",
    "budget-alerts.json",
    "daemon-drain.json",
    "reconcile.json",
    "unmetered.jsonl",
)
# The CA variables init publishes, spelled out here rather than taken from the code under test.
CA_NAMES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    "CODEX_CA_CERTIFICATE",
)


@dataclass
class NativeInstall:
    os_name: str
    user_home: Path
    home: Path
    executable: Path
    fake: FakeWindows | FakeMac

    def _use(self) -> AbstractContextManager[None]:
        if isinstance(self.fake, FakeWindows):
            return boundary.use_windows(self.fake)
        return boundary.use_macos(self.fake)

    @contextmanager
    def _as_installed(self) -> Iterator[None]:
        saved = sys.argv[:]
        sys.argv = [str(self.executable)]
        try:
            with self._use():
                yield
        finally:
            sys.argv = saved

    def meter(self, *args: str) -> tuple[int, str, str]:
        _register_commands()
        env: dict[str, str | None] = {
            name: None for name in os.environ if name.lower().endswith("_proxy")
        }
        env |= {
            "HOME": str(self.user_home),
            "HALTON_METER_HOME": str(self.home),
            boundary.OS_ENV: self.os_name,
            "HALTON_METER_SUPERVISOR": None,
            "XDG_CONFIG_HOME": None,
            "NO_PROXY": None,
        }
        with self._as_installed():
            result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    def json(self, *args: str, expect: int | None = 0) -> dict[str, Any]:
        code, out, err = self.meter(*args, "--json")
        if expect is not None:
            assert code == expect, f"exit {code}: {out}{err}"
        data: dict[str, Any] = json.loads(out)
        return data

    def init(self, *args: str) -> dict[str, Any]:
        result = self.json("init", *args)
        assert result["ok"], result
        return result

    def process_command(self, component: str) -> list[str]:
        """The command line of the running edge or daemon (the pid its state file names)."""
        state = json.loads((self.home / f"{component}.json").read_text())
        return list(psutil.Process(state["pid"]).cmdline())

    @contextmanager
    def uninstalled_after(self) -> Iterator[NativeInstall]:
        """A module fixture's body: this install, uninstalled and its processes ended after."""
        try:
            yield self
        finally:
            self.meter("uninstall", "--yes")
            self.fake.stop_all()

    def managed_files(self) -> dict[str, tuple[bytes, int]]:
        """Every file init wrote, with its content and mtime: a second init changes none.
        (Logs, the ledger and what the running processes publish or compile are theirs, not
        init's; Windows' staged runtime is init's.)"""
        found = {}
        for root in (self.home, self.user_home):
            for path in root.rglob("*"):
                if (
                    not path.is_file()
                    or "logs" in path.relative_to(root).parts
                    or "__pycache__" in path.parts  # the services' own bytecode
                    or path.name.startswith(("db.sqlite", "bodies.sqlite"))
                    or path.name in RUNTIME_FILES
                ):
                    continue
                found[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
        return found


def make_native_install(
    base: Path, upstream: FakeUpstream, fake: FakeWindows | FakeMac, os_name: str
) -> NativeInstall:
    user_home, home = base / "user", base / "meter"
    user_home.mkdir()
    home.mkdir()
    resolve = "\n".join(f'"{host}:443" = "127.0.0.1:{upstream.port}"' for host in UPSTREAM_HOSTS)
    (home / "config.toml").write_text(
        f"""[daemon]
proxy_port = {free_port()}
internal_port = {free_port()}
api_port = {free_port()}

[upstream]
ca_bundle = "{upstream.pki.ca_cert}"

[upstream.resolve]
{resolve}
"""
    )
    executable = install_version(base / "apps" / "0.1" / "bin")
    return NativeInstall(os_name, user_home, home, executable, fake)
