"""Linux: systemd --user unit files for the edge and the daemon (or background processes where
no user manager runs), and the env block in the shell files with `--apps`.

`ExecStart` is the absolute path of the running `halton-meter` (a unit must not depend on the
current directory or PATH), stamped with the version in the description, so an `init` after
an upgrade or a move sees the difference and rewrites the file; an unchanged unit is never
rewritten.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from halton_meter import __version__
from halton_meter.config import Config
from halton_meter.lifecycle import shell
from halton_meter.lifecycle.platforms import Confirm, Wording, Write
from halton_meter.lifecycle.ports import Ports
from halton_meter.lifecycle.supervisor import (
    COMPONENTS,
    DAEMON,
    EDGE,
    NO_MANAGER,
    BackgroundSupervisor,
    Component,
    SystemdSupervisor,
    systemctl,
    user_without_linger,
)
from halton_meter.paths import HOME_ENV, Paths
from halton_meter.runstate import STOP_TIMEOUT, write_atomic

WORDING = Wording(
    published="env block written to {}",
    current="env block current",
    skipped="no shell file changed (`init --apps` writes the env block)",
    registered="wrote {}",
    check_prefix="unit",
    records_published=False,
)


def unit_dir() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "systemd" / "user"


def _quote(word: str) -> str:
    """One ExecStart word: specifiers and variables escaped, quoted when it has spaces or
    quotes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if any(c.isspace() or c in "\"'\\;" for c in word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def unit_text(component: Component, command: list[str], paths: Paths) -> str:
    exec_start = " ".join(_quote(word) for word in [*command, *component.args])
    log = str(component.output_file(paths)).replace("%", "%%")
    lines = [
        "# Written by `halton-meter init`; `halton-meter uninstall` removes it.",
        "[Unit]",
        f"Description={component.description} {__version__}",
        # The edge is what clients connect to: never give up restarting it. The daemon may
        # stop being restarted after 10 failures in 5 minutes (the edge then tunnels).
        *(
            ["StartLimitIntervalSec=0"]
            if component is EDGE
            else ["StartLimitIntervalSec=300", "StartLimitBurst=10"]
        ),
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start}",
    ]
    if paths.home_overridden:
        lines.append(f'Environment="{HOME_ENV}={_escape_env(str(paths.home))}"')
    lines += [
        "Restart=always" if component is EDGE else "Restart=on-failure",
        "RestartSec=1" if component is EDGE else "RestartSec=3",
        f"TimeoutStopSec={STOP_TIMEOUT:g}",  # then SIGKILL, as the other supervisors
        f"StandardOutput=append:{log}",
        f"StandardError=append:{log}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def _escape_env(value: str) -> str:
    return value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')


def unit_files() -> dict[Component, Path]:
    folder = unit_dir()
    return {component: folder / component.unit for component in COMPONENTS}


class LinuxPlatform:
    """What init, uninstall and doctor do on Linux; the units are written whichever supervisor
    runs, and systemd is told about them only when it is the one."""

    wording = WORDING

    def __init__(
        self, supervisor: BackgroundSupervisor | SystemdSupervisor, user_home: Path
    ) -> None:
        self.supervisor = supervisor
        self.kind = supervisor.kind
        self.user_home = user_home
        self.systemd = isinstance(supervisor, SystemdSupervisor)

    def snapshot(self, state: dict[str, Any], config: Config, paths: Paths) -> dict[str, Any]:
        return state | {"units": {str(path): path.exists() for path in unit_files().values()}}

    def trust_ca(self, cert: Path) -> bool | None:
        return None  # clients trust the CA through the bundle the variables name

    def trusted(self, cert: Path) -> bool | None:
        return None

    def is_published(self, paths: Paths) -> bool:
        return False  # a plain init touches no shell file

    def publish(self, ports: Ports, bundle: Path, paths: Paths, write: Write) -> list[str]:
        return shell.write_blocks(
            shell.shell_files(self.user_home), ports.proxy_port, bundle, write
        )

    def published_drift(self, ports: Ports, bundle: Path) -> list[str]:
        return []  # doctor checks the shell blocks on every OS

    def definitions(self, launch: list[str], paths: Paths) -> dict[Component, tuple[Path, bytes]]:
        return {
            component: (path, unit_text(component, launch, paths).encode())
            for component, path in unit_files().items()
        }

    def definition_name(self, component: Component) -> str:
        return component.unit

    def register(
        self, definitions: dict[Component, tuple[Path, bytes]], rewritten: dict[Component, bool]
    ) -> list[Component]:
        changed = [component for component, written in rewritten.items() if written]
        if self.systemd:
            if changed:
                systemctl("daemon-reload")
            systemctl("enable", *(c.unit for c in COMPONENTS))
        return changed

    def restart_for(
        self, component: Component, paths: Paths, command: list[str], changed: bool
    ) -> bool:
        if self.systemd:
            return changed
        running = self.supervisor.command_of(component, paths)
        return running is not None and running != [*command, *component.args]

    def restart(self, component: Component, paths: Paths) -> None:
        if isinstance(self.supervisor, SystemdSupervisor):
            self.supervisor.stop(component, paths)
            self.supervisor.start(component, paths)
        else:
            self.supervisor.replace(component, paths)  # the edge hands its socket over

    def started_by_registration(self, component: Component) -> None:
        pass  # daemon-reload and enable start nothing

    def supervision(self, confirm: Confirm | None) -> str:
        return "systemd --user units" + _linger(confirm) if self.systemd else NO_MANAGER

    def rollback(self, restored: list[str]) -> None:
        if self.systemd and restored:
            systemctl("daemon-reload", check=False)

    def uninstall(self, paths: Paths, snapshot: dict[str, Any], graceful: bool) -> list[str]:
        to_stop = (DAEMON,) if graceful else (DAEMON, EDGE)
        if self.systemd:
            systemctl("disable", "--now", *(c.unit for c in to_stop), check=False)
            if graceful:
                systemctl("disable", EDGE.unit, check=False)  # not started at the next login
        removed = []
        for path in unit_files().values():
            if path.exists():
                path.unlink()
                removed.append(str(path))
        if removed and self.systemd:
            systemctl("daemon-reload", check=False)
        return removed

    def command_of(self, content: bytes) -> str | None:
        return None  # a unit for another executable reads as "does not run this halton-meter"

    def definition_problem(self, component: Component) -> str | None:
        return None

    def rewrite(self, path: Path, content: bytes) -> Callable[[], None] | None:
        def repair() -> None:
            write_atomic(path, content)
            if self.systemd:
                systemctl("daemon-reload", check=False)

        return repair


def _linger(confirm: Confirm | None) -> str:
    """systemd stops a user's services at logout unless linger is on: ask, or advise."""
    user = user_without_linger()
    if user is None:
        return ""
    advice = f"linger is off, so the meter stops when you log out: `loginctl enable-linger {user}`"
    if confirm is not None and confirm(
        f"Keep the meter running after you log out (loginctl enable-linger {user})?"
    ):
        done = subprocess.run(
            ["loginctl", "enable-linger", user], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return "; linger enabled: the meter keeps running after you log out"
        return f" ({advice}; enabling it failed: {done.stderr.strip()})"
    return f" ({advice})"
