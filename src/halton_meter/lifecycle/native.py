"""`init`, `uninstall`, supervision and doctor's checks on Windows and macOS.

The same steps as on Linux (install.py), with the OS's own supervisor and settings behind one
interface, `Integration`, implemented by windows.py (Task Scheduler, Root store, HKCU) and
macos.py (LaunchAgents, login keychain, launchctl env). Those two reach the system only through
lifecycle/boundary.py. install.py, supervisor.py and doctor.py call in here at one seam each;
on Linux every entry point here returns None and they carry on as before.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from halton_meter.config import Config
from halton_meter.lifecycle import boundary, ca
from halton_meter.lifecycle.ports import Ports, choose_ports, effective_path, write_effective
from halton_meter.lifecycle.supervisor import (
    COMPONENTS,
    BackgroundSupervisor,
    Component,
    SupervisorError,
    _wait_gone,
    _wait_started,
    launcher,
    running_pid,
)
from halton_meter.paths import Paths, ensure_home

if TYPE_CHECKING:
    from halton_meter.doctor import Check
    from halton_meter.lifecycle.install import Confirm, InitResult, Progress


class Integration(Protocol):
    os_name: str  # the key of its part of system_state.json
    kind: str  # the supervisor, as `status` shows it

    def capture_state(self, cert: Path, paths: Paths) -> dict[str, Any]: ...
    def trusted(self, cert: Path) -> bool: ...
    def trust_ca(self, cert: Path) -> bool: ...
    def is_published(self, paths: Paths) -> bool: ...
    def publish(
        self, ports: Ports, bundle: Path, paths: Paths, write: Callable[[Path, bytes], bool]
    ) -> list[str]: ...
    def definitions(
        self, launch: list[str], paths: Paths
    ) -> dict[Component, tuple[Path, bytes]]: ...
    def register(self, component: Component, path: Path, changed: bool) -> bool: ...
    def rollback(self) -> None: ...
    def start(self, component: Component) -> None: ...
    def stop(self, component: Component) -> None: ...
    def uninstall(
        self, paths: Paths, snapshot: dict[str, Any], graceful: bool, cert: Path
    ) -> list[str]: ...
    def definition_state(self, component: Component) -> str | None: ...
    def published_drift(self, ports: Ports, bundle: Path) -> list[str]: ...
    def command_of(self, content: bytes) -> str | None: ...


def integration(user_home: Path | None = None) -> Integration | None:
    """The running OS's integration; None on Linux (install.py's own code)."""
    kind = boundary.current_os()
    if kind == boundary.WINDOWS:
        from halton_meter.lifecycle.windows import WindowsIntegration

        return WindowsIntegration(boundary.windows())
    if kind == boundary.MACOS:
        from halton_meter.lifecycle.macos import MacIntegration

        return MacIntegration(boundary.macos(), user_home or Path.home())
    return None


class NativeSupervisor(BackgroundSupervisor):
    """Start and stop through Task Scheduler or launchd; a process is up when it has published
    its state file, as everywhere. (A BackgroundSupervisor so the callers' types hold; its
    `stop_all` still ends stray processes recorded in pid files.)"""

    def __init__(self, native: Integration) -> None:
        self.native = native
        self.kind = native.kind

    def start(self, component: Component, paths: Paths) -> int:
        pid = running_pid(component, paths)
        if pid is not None:
            return pid
        paths.logs.mkdir(parents=True, exist_ok=True)
        self.native.start(component)
        return _wait_started(component, paths, None, component.output_file(paths), previous=None)

    def stop(self, component: Component, paths: Paths) -> bool:
        pid = running_pid(component, paths)
        self.native.stop(component)
        if pid is not None and not _wait_gone([pid], 20.0):
            raise SupervisorError(f"{component.description} (pid {pid}) did not stop")
        return pid is not None

    def command_of(self, component: Component, paths: Paths) -> list[str] | None:
        return None  # a changed definition is what restarts a process (see run_init)


def supervisor() -> NativeSupervisor | None:
    found = integration()
    return NativeSupervisor(found) if found is not None else None


def _noop(step: str, outcome: str, detail: str) -> None:
    pass


def run_init(
    config: Config,
    paths: Paths,
    *,
    shell_rc: bool = True,
    clean: bool = False,
    confirm: Confirm | None = None,
    progress: Progress = _noop,
    user_home: Path | None = None,
) -> InitResult:
    """install.run_init's steps, with tasks or agents for units and the OS's trust store and
    user environment; a failure puts back files, registry values, trust and registrations."""
    from halton_meter.lifecycle.install import (
        InitError,
        InitResult,
        _clean_slate,
        _needs_restart,
        _snapshot,
        _Undo,
        self_test,
        state_path,
    )

    user_home = user_home or Path.home()
    native = integration(user_home)
    assert native is not None
    supervisor = NativeSupervisor(native)
    result = InitResult(supervisor=native.kind)
    undo = _Undo()
    started: list[Component] = []
    step = "home"

    def done(outcome: str, detail: str) -> None:
        result.steps.append({"step": step, "outcome": outcome, "detail": detail})
        progress(step, outcome, detail)

    def write(path: Path, content: bytes) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        if undo.write(path, content):
            result.written.append(str(path))
            return True
        return False

    try:
        ensure_home(paths)
        done("ok", str(paths.home))

        step = "snapshot"
        state = state_path(paths)
        cert = ca.ensure_ca(config, paths)
        if state.exists():
            done("ok", f"kept {state}")
        else:
            before = json.loads(_snapshot(paths, user_home))
            before.pop("units", None)
            if native.os_name == "macos":
                from halton_meter.lifecycle.macos import shell_files

                before["shell_files"] = {
                    str(path): {"existed": path.exists(), "had_block": False}
                    for path in shell_files(user_home)
                } | before.get("shell_files", {})
            before[native.os_name] = native.capture_state(cert, paths)
            write(state, (json.dumps(before, indent=2) + "\n").encode())
            done("changed", f"saved the state before init in {state}")

        if clean:
            step = "clean"
            if confirm is not None and not confirm(
                "--clean stops the edge for a moment (tools using the proxy fail meanwhile) "
                "and chooses the ports anew. Continue?"
            ):
                raise InitError("cancelled; nothing was changed")
            removed = _clean_slate(paths, supervisor, undo, user_home, result)
            for path, _ in native.definitions(launcher(), paths).values():
                if path.exists():  # rewritten and registered again below
                    undo.remember(path)
                    path.unlink()
                    removed.append(path.name)
            done("changed", f"removed {', '.join(removed)}" if removed else "nothing to remove")

        step = "ca"
        bundle = paths.ca_bundle
        changed = write(bundle, ca.client_bundle_bytes(config, paths))
        trusted = native.trust_ca(cert)
        trust = "trust added" if trusted else "already trusted"
        done("changed" if changed or trusted else "ok", f"CA {cert} ({trust}), {bundle}")

        step = "ports"
        choice = choose_ports(config, paths)
        result.ports, result.fallbacks = choice.ports, choice.fallbacks
        undo.remember(effective_path(paths))
        if write_effective(paths, choice.ports):
            result.written.append(str(effective_path(paths)))
        ports = choice.ports
        moved = "".join(f"; {n} {w} is taken, using {c}" for n, (w, c) in choice.fallbacks.items())
        done(
            "changed" if choice.fallbacks else "ok",
            f"edge {ports.proxy_port}, daemon {ports.internal_port}, api {ports.api_port}{moved}",
        )

        step = "shell"
        if shell_rc or native.is_published(paths):
            touched = native.publish(ports, bundle, paths, write)
            result.written += [item for item in touched if item not in result.written]
            done(
                "changed" if touched else "ok",
                f"published: {', '.join(touched)}" if touched else "variables current",
            )
        else:
            done("skipped", "variables are published with --apps")

        step = "units"
        command = launcher()
        running_before = {c: running_pid(c, paths) for c in COMPONENTS}
        changed_units = []
        for component, (path, content) in native.definitions(command, paths).items():
            rewritten = write(path, content)
            if native.register(component, path, rewritten) or rewritten:
                changed_units.append(component)
        names = ", ".join(c.name for c in changed_units)
        done("changed" if changed_units else "ok", f"registered {names}" if names else "current")

        step = "start"
        for component in COMPONENTS:
            before_pid = running_before[component]
            pid = running_pid(component, paths)
            if (
                pid is not None
                and pid == before_pid
                and (
                    component in changed_units
                    or _needs_restart(component, paths, ports, supervisor, command, False)
                )
            ):
                supervisor.stop(component, paths)
                pid = None
            if pid is None:
                supervisor.start(component, paths)
                started.append(component)
            elif pid == before_pid:
                continue
            if component.name in result.restarted:  # --clean stopped it
                continue
            (result.restarted if before_pid is not None else result.started).append(component.name)
        acted = [*result.started, *(f"{n} (restarted)" for n in result.restarted)]
        done(
            "changed" if acted else "ok", f"{', '.join(acted) or 'already running'}; {native.kind}"
        )

        step = "self-test"
        done("ok", self_test(config, paths, ports))
    except (Exception, KeyboardInterrupt) as error:  # whatever failed, undo this run
        result.error = f"{step}: {error}"
        done("failed", str(error))
        for component in reversed(started):
            with contextlib.suppress(SupervisorError, OSError):
                supervisor.stop(component, paths)
        result.restored = undo.restore()
        native.rollback()
        for component in COMPONENTS:
            if component.name in result.restarted:
                with contextlib.suppress(SupervisorError, OSError):
                    supervisor.start(component, paths)
        if isinstance(error, KeyboardInterrupt):
            raise
    return result


def uninstall(paths: Paths, snapshot: dict[str, Any], *, graceful: bool) -> list[str]:
    """Stop and remove tasks or agents, put back the registry or launchctl values and the
    trust store as system_state.json recorded them; [] on Linux."""
    native = integration()
    if native is None:
        return []
    from halton_meter.config import load_config

    try:
        cert = ca.ca_cert_path(load_config(paths), paths)
    except Exception:  # a broken config must not stop an uninstall
        cert = paths.default_ca_dir() / f"{ca.CA_BASENAME}-ca-cert.pem"
    return native.uninstall(paths, snapshot, graceful, cert)


def checks(config: Config, paths: Paths, ports: Ports, init_fix: str) -> list[Check] | None:
    """Doctor's checks of what init registered and published; None on Linux."""
    native = integration()
    if native is None:
        return None
    from halton_meter.doctor import INCONSISTENT, OK, Check
    from halton_meter.lifecycle.install import state_path

    found: list[Check] = []
    if not state_path(paths).exists():
        return found
    for component, (path, content) in native.definitions(launcher(), paths).items():
        name = f"{native.kind}:{component.name}"
        on_disk = path.read_bytes() if path.exists() else None
        target = native.command_of(on_disk) if on_disk is not None else None
        if on_disk is None:
            found.append(Check(name, INCONSISTENT, f"{path} is missing", init_fix))
        elif target is not None and not Path(target).exists():
            detail = f"{path} runs {target}, which no longer exists (upgraded or moved?)"
            found.append(Check(name, INCONSISTENT, detail, init_fix))
        elif on_disk != content:
            detail = f"{path} does not run this halton-meter ({launcher()[0]})"
            found.append(Check(name, INCONSISTENT, detail, init_fix))
        elif (problem := native.definition_state(component)) is not None:
            found.append(Check(name, INCONSISTENT, problem, init_fix))
        else:
            found.append(Check(name, OK, f"runs {target}"))
    cert = ca.ca_cert_path(config, paths)
    if cert.exists():
        if native.trusted(cert):
            found.append(Check("ca_trust", OK, "the OS trust store trusts the meter's CA"))
        else:
            detail = "the OS trust store does not trust the meter's CA (apps using it fail TLS)"
            found.append(Check("ca_trust", INCONSISTENT, detail, init_fix))
    if native.is_published(paths):
        drift = native.published_drift(ports, paths.ca_bundle)
        if drift:
            detail = f"published variables differ from the ports or bundle in use: {drift}"
            found.append(Check("published", INCONSISTENT, detail, f"{init_fix} --apps"))
        else:
            found.append(Check("published", OK, "proxy and CA variables current"))
    return found
