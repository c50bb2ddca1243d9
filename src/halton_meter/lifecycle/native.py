"""What the Windows and macOS platforms share: supervision through the OS's service manager,
undoing this run's changes outside files, and uninstall's CA lookup.

windows.py (Task Scheduler, Root store, HKCU) and macos.py (LaunchAgents, login keychain,
launchctl env) subclass `NativePlatform`; install.py runs the same steps for them as for Linux
(platforms.py). They reach the system only through lifecycle/boundary.py. This module knows
neither of them: this_os.py chooses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from halton_meter.config import Config, load_config
from halton_meter.lifecycle import ca
from halton_meter.lifecycle.platforms import Confirm, Wording
from halton_meter.lifecycle.supervisor import (
    BackgroundSupervisor,
    Component,
    SupervisorError,
    running_pid,
    wait_gone,
    wait_started,
)
from halton_meter.paths import Paths
from halton_meter.runstate import STOP_TIMEOUT

WORDING = Wording(
    published="published: {}",
    current="variables current",
    skipped="variables are published with --apps",
    registered="registered {}",
    check_prefix="",  # the supervisor's kind, set by each OS
    records_published=True,
)


class NativePlatform:
    """The parts of `Platform` that are the same on Windows and macOS. A subclass says what
    differs: its snapshot section, trust, publishing, definitions and their registration."""

    os_name: str  # the key of its part of system_state.json
    kind: str
    wording: Wording
    untrusted: str  # uninstall's note when it took back the CA's trust

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self.supervisor = NativeSupervisor(self)

    # --- what each OS provides -------------------------------------------------------------

    def capture_state(self, cert: Path, paths: Paths) -> dict[str, Any]:
        raise NotImplementedError

    def register_one(self, component: Component, path: Path, changed: bool) -> bool:
        """Register the definition when it `changed` or is missing; True when it did."""
        raise NotImplementedError

    def trusted(self, cert: Path) -> bool:
        raise NotImplementedError

    def add_trust(self, cert: Path) -> None:
        raise NotImplementedError

    def untrust(self, cert: Path) -> None:
        raise NotImplementedError

    def remove(self, paths: Paths, snapshot: dict[str, Any], graceful: bool) -> list[str]:
        """Uninstall's own part: services, definitions, the values the snapshot recorded."""
        raise NotImplementedError

    def start(self, component: Component) -> None:
        raise NotImplementedError

    def stop(self, component: Component) -> None:
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------------

    def snapshot(self, state: dict[str, Any], config: Config, paths: Paths) -> dict[str, Any]:
        cert = ca.ensure_ca(config, paths)
        return state | {self.os_name: self.capture_state(cert, paths)}

    def trust_ca(self, cert: Path) -> bool:
        """Only when the store lacks it: adding asks the user every time."""
        if self.trusted(cert):
            return False
        self.add_trust(cert)
        self.undo_later(lambda: self.untrust(cert))
        return True

    def definition_name(self, component: Component) -> str:
        return component.name

    def register(
        self, definitions: dict[Component, tuple[Path, bytes]], rewritten: dict[Component, bool]
    ) -> list[Component]:
        return [
            component
            for component, (path, _) in definitions.items()
            if self.register_one(component, path, rewritten[component]) or rewritten[component]
        ]

    def restart_for(
        self, component: Component, paths: Paths, command: list[str], changed: bool
    ) -> bool:
        return changed  # the definition holds the command: a new one is a changed definition

    def restart(self, component: Component, paths: Paths) -> None:
        self.supervisor.stop(component, paths)
        self.supervisor.start(component, paths)

    def started_by_registration(self, component: Component) -> None:
        self.start(component)

    def supervision(self, confirm: Confirm | None) -> str:
        return self.kind

    def undo_later(self, action: Callable[[], None]) -> None:
        """What puts back a change this run made outside files, if init fails later."""
        self._undo.append(action)

    def rollback(self, restored: list[str]) -> None:
        """Undo this run's values, trust and registrations, newest first (after the files)."""
        for undo in reversed(self._undo):
            try:
                undo()
            except (OSError, RuntimeError):
                continue
        self._undo.clear()

    def uninstall(self, paths: Paths, snapshot: dict[str, Any], graceful: bool) -> list[str]:
        try:
            cert = ca.ca_cert_path(load_config(paths), paths)
        except Exception:  # a broken config must not stop an uninstall
            cert = paths.default_ca_dir() / f"{ca.CA_BASENAME}-ca-cert.pem"
        removed = self.remove(paths, snapshot, graceful)
        before = snapshot.get(self.os_name, {})
        if before.get("ca_trusted") is False and cert.exists() and self.trusted(cert):
            self.untrust(cert)  # trusted by this meter's init: take it back
            removed.append(self.untrusted)
        return removed

    def rewrite(self, path: Path, content: bytes) -> Callable[[], None] | None:
        return None  # a rewritten file is not registered: `init` repairs it


class NativeSupervisor(BackgroundSupervisor):
    """Start and stop through Task Scheduler or launchd; a process is up when it has published
    its state file, as everywhere. (A BackgroundSupervisor so the callers' types hold; its
    `stop_all` still ends stray processes recorded in pid files.)"""

    def __init__(self, native: NativePlatform) -> None:
        self.native = native
        self.kind = native.kind

    def start(self, component: Component, paths: Paths) -> int:
        pid = running_pid(component, paths)
        if pid is not None:
            return pid
        paths.logs.mkdir(parents=True, exist_ok=True)
        self.native.start(component)
        return wait_started(component, paths, None, component.output_file(paths), previous=None)

    def stop(self, component: Component, paths: Paths) -> bool:
        pid = running_pid(component, paths)
        self.native.stop(component)
        if pid is not None and not wait_gone([pid], STOP_TIMEOUT):
            raise SupervisorError(f"{component.description} (pid {pid}) did not stop")
        return pid is not None

    def command_of(self, component: Component, paths: Paths) -> list[str] | None:
        return None  # a changed definition is what restarts a process (see restart_for)
