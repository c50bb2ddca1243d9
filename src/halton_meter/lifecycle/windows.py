"""Windows, per user and without admin: Task Scheduler tasks, the user Root store, HKCU.

- Two tasks, `halton-meter-edge` and `halton-meter`, registered with `schtasks /Create /XML
  file /TN name /F` from XML written as UTF-16 LE with a BOM. `<Command>` is the base
  interpreter's `pythonw.exe` and the arguments put the private runtime this version staged in
  the home folder (runtime.py) first on `sys.path`: the tasks hold no file of the tool's own
  folder, so `uv tool upgrade` / `pipx upgrade` can replace it while they run. An `init` after
  an upgrade stages the new version and re-registers the tasks; the next `init` removes the old
  copy. When the
  base interpreter lies inside the tool's folder, `<Command>` is the install's
  `halton-meterw.exe` (the GUI twin of `halton-meter.exe`: no console window at logon), as
  before. Element order: see `task_xml`.
- The CA goes into the user's Root store (`certutil -user -addstore Root`) only when its SHA-1
  thumbprint is not there: the store shows a Yes/No dialog every time.
- Published variables (`init --apps`): HKCU\\Environment (proxy, NO_PROXY, CA variables), then
  WM_SETTINGCHANGE; the WinINet proxy in HKCU\\...\\Internet Settings. Each value is compared
  and written only when it differs, so a second `init` writes nothing.
- `system_state.json` keeps every value as it was before the first `init`; a value that
  carries proxy credentials is kept in the registry (HKCU\\Software\\Halton Meter), never on
  disk. `uninstall` puts everything back.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, unescape

import psutil  # type: ignore[import-untyped,unused-ignore]

from halton_meter import __version__
from halton_meter.lifecycle import runtime
from halton_meter.lifecycle.boundary import (
    ENVIRONMENT_KEY,
    INTERNET_SETTINGS_KEY,
    REG_DWORD,
    REG_SZ,
    RegistryValue,
    WindowsSystem,
)
from halton_meter.lifecycle.ca import thumbprint
from halton_meter.lifecycle.environment import (
    CA_VARIABLES,
    LOOPBACK,
    meter_environment,
    without_credentials,
)
from halton_meter.lifecycle.native import WORDING, NativePlatform
from halton_meter.lifecycle.platforms import Write
from halton_meter.lifecycle.ports import Ports
from halton_meter.lifecycle.supervisor import (
    COMPONENTS,
    DAEMON,
    EDGE,
    Component,
    SupervisorError,
    running_pid,
)
from halton_meter.paths import Paths, resolve_paths

KIND = "task-scheduler"
TASK_NAMES = {EDGE: "halton-meter-edge", DAEMON: "halton-meter"}
SAVED_KEY = r"Software\Halton Meter\Saved Environment"
# Windows variable names are case-insensitive: one spelling of each.
ENV_NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", *CA_VARIABLES, "NODE_USE_ENV_PROXY")
INTERNET_NAMES = ("ProxyEnable", "ProxyServer", "ProxyOverride")
MAX_COMMAND = 260  # the schema's pathType
# The edge is restarted (almost) forever; the daemon gives up after 10 tries, as on Linux.
RESTART_COUNT = {EDGE: 255, DAEMON: 10}
NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"


class WindowsSetupError(RuntimeError):
    """A Windows step failed; the message says which command and why."""


def task_command(launch: list[str]) -> tuple[str, list[str]]:
    """(Command, leading arguments) for a task: the GUI twin of the running executable, or
    pythonw running the same entry point when there is none (a source checkout)."""
    first = Path(launch[0])
    python = Path(sys.executable)
    if len(launch) == 1:
        candidates = [first.with_name(f"{first.stem}w{first.suffix}")]
    else:  # `python -m halton_meter`: the venv's Scripts folder holds python.exe and ours
        candidates = [python.with_name(f"halton-meterw{python.suffix}")]
    for gui in candidates:
        if gui.is_file():
            return str(gui), []
    pythonw = python.with_name(f"pythonw{python.suffix}")
    interpreter = pythonw if pythonw.is_file() else python
    return str(interpreter), ["-m", "halton_meter.cli.background"]


def runtime_version() -> str:
    """The runtime folder's name: one copy per installed version."""
    return __version__


def runtime_command(paths: Paths) -> tuple[str, list[str]] | None:
    """(Command, leading arguments) that run this version's staged runtime with the base
    interpreter; None when the base interpreter lies inside the tool's folder."""
    base = runtime.base_interpreter()
    if base is None:
        return None
    site = runtime.site_folder(paths, runtime_version())
    return str(runtime.windowless(base)), ["-I", "-c", runtime.BOOTSTRAP, str(site)]


def task_arguments(component: Component, prefix: list[str], paths: Paths) -> str:
    home = ["--home", str(paths.home)] if paths.home_overridden else []
    return subprocess.list2cmdline([*prefix, *home, *component.args])


def task_xml(component: Component, command: str, arguments: str, user: str, paths: Paths) -> str:
    """The task, in the order the Task Scheduler schema requires where it requires one.

    `Task`, `RegistrationInfo`, `Settings`, `Principal` and `Exec` are `xs:all` (any order);
    we keep the order `schtasks /Query /XML` prints. The trigger is an `xs:sequence`:
    Enabled, StartBoundary, EndBoundary, Repetition, ExecutionTimeLimit (triggerBaseType),
    then UserId, Delay (logonTriggerType); `Principals` and `Actions` are sequences too.
    """
    if len(command) > MAX_COMMAND:
        raise WindowsSetupError(
            f"{command} is longer than the {MAX_COMMAND} characters a task's <Command> allows: "
            "install Halton Meter in a shorter folder"
        )
    name = TASK_NAMES[component]
    e = escape
    lines = [
        '<?xml version="1.0" encoding="UTF-16"?>',
        f'<Task version="1.3" xmlns="{NAMESPACE}">',
        "  <RegistrationInfo>",
        "    <Author>Halton Meter</Author>",
        f"    <Version>{e(__version__)}</Version>",
        f"    <Description>{e(component.description)} {e(__version__)}. Written by "
        "`halton-meter init`; `halton-meter uninstall` removes it.</Description>",
        f"    <URI>\\{e(name)}</URI>",
        "  </RegistrationInfo>",
        "  <Triggers>",
        "    <LogonTrigger>",
        "      <Enabled>true</Enabled>",
        f"      <UserId>{e(user)}</UserId>",
        "    </LogonTrigger>",
        "  </Triggers>",
        "  <Principals>",
        '    <Principal id="Author">',
        f"      <UserId>{e(user)}</UserId>",
        "      <LogonType>InteractiveToken</LogonType>",
        "      <RunLevel>LeastPrivilege</RunLevel>",
        "    </Principal>",
        "  </Principals>",
        "  <Settings>",
        "    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>",
        "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>",
        "    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>",
        "    <AllowHardTerminate>true</AllowHardTerminate>",
        "    <StartWhenAvailable>true</StartWhenAvailable>",
        "    <AllowStartOnDemand>true</AllowStartOnDemand>",
        "    <Enabled>true</Enabled>",
        "    <Hidden>true</Hidden>",
        "    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>",
        "    <Priority>5</Priority>",
        "    <RestartOnFailure>",
        "      <Interval>PT1M</Interval>",
        f"      <Count>{RESTART_COUNT[component]}</Count>",
        "    </RestartOnFailure>",
        "  </Settings>",
        '  <Actions Context="Author">',
        "    <Exec>",
        f"      <Command>{e(command)}</Command>",
        f"      <Arguments>{e(arguments)}</Arguments>",
        f"      <WorkingDirectory>{e(str(paths.home))}</WorkingDirectory>",
        "    </Exec>",
        "  </Actions>",
        "</Task>",
        "",
    ]
    return "\r\n".join(lines)


def task_bytes(text: str) -> bytes:
    """UTF-16 LE with a BOM, as the declaration says: what schtasks reads without guessing."""
    return b"\xff\xfe" + text.encode("utf-16-le")


def task_file(paths: Paths, component: Component) -> Path:
    return paths.home / "tasks" / f"{TASK_NAMES[component]}.xml"


def proxy_override(current: str | None) -> str:
    """The user's bypass list, with `<local>` and loopback added once."""
    entries = [item.strip() for item in (current or "").split(";") if item.strip()]
    lowered = {item.lower() for item in entries}
    entries += [host for host in ("<local>", *LOOPBACK) if host.lower() not in lowered]
    return ";".join(entries)


def _mask(value: RegistryValue | None) -> tuple[dict[str, Any] | None, bool]:
    """(what system_state.json may hold, whether the real value carries credentials)."""
    if value is None:
        return None, False
    if isinstance(value.data, int):
        return value.as_json(), False
    masked = without_credentials(value.data)
    return {"kind": value.kind, "data": masked}, masked != value.data


class WindowsPlatform(NativePlatform):
    """The Windows Platform: what `init`, `uninstall`, `start`/`stop` and `doctor` do differently
    here, above the boundary."""

    os_name = "windows"
    kind = KIND
    wording = WORDING._replace(check_prefix=KIND)
    untrusted = "the CA from the user Root store"

    def __init__(self, system: WindowsSystem) -> None:
        self.system = system
        self._home: Paths | None = None
        super().__init__()

    # --- the state before the first init --------------------------------------------------

    def capture_state(self, cert: Path, paths: Paths) -> dict[str, Any]:
        environment: dict[str, Any] = {}
        saved: list[str] = []
        for name in ENV_NAMES:
            value = self.system.read_value(ENVIRONMENT_KEY, name)
            environment[name], secret = _mask(value)
            if secret and value is not None:
                self.system.write_value(SAVED_KEY, name, value)
                self.undo_later(partial(self.system.delete_value, SAVED_KEY, name))
                saved.append(name)
        internet = {}
        for name in INTERNET_NAMES:
            internet[name], _ = _mask(self.system.read_value(INTERNET_SETTINGS_KEY, name))
        return {
            "environment": environment,
            "saved_in_registry": saved,
            "internet_settings": internet,
            "ca_trusted": self.trusted(cert),
            "tasks": {name: self._registered(name) for name in TASK_NAMES.values()},
        }

    # --- the CA ---------------------------------------------------------------------------

    def trusted(self, cert: Path) -> bool:
        return self.system.run(["certutil", "-user", "-store", "Root", thumbprint(cert)]).ok

    def add_trust(self, cert: Path) -> None:
        """The store asks the user (a Yes/No dialog)."""
        done = self.system.run(["certutil", "-user", "-addstore", "Root", str(cert)])
        if not done.ok:
            raise WindowsSetupError(
                f"`certutil -user -addstore Root {cert}` failed (was the dialog answered No?): "
                f"{(done.stderr or done.stdout).strip()}"
            )

    def untrust(self, cert: Path) -> None:
        self.system.run(["certutil", "-user", "-delstore", "Root", thumbprint(cert)])

    # --- published variables --------------------------------------------------------------

    def wanted_environment(self, ports: Ports, bundle: Path) -> dict[str, RegistryValue]:
        current = self.system.read_value(ENVIRONMENT_KEY, "NO_PROXY")
        base = {"NO_PROXY": str(current.data)} if current is not None else {}
        env = meter_environment(base, ports.proxy_port, bundle)
        return {name: RegistryValue(REG_SZ, env[name]) for name in ENV_NAMES}

    def wanted_internet_settings(self, ports: Ports) -> dict[str, RegistryValue]:
        current = self.system.read_value(INTERNET_SETTINGS_KEY, "ProxyOverride")
        return {
            "ProxyEnable": RegistryValue(REG_DWORD, 1),
            "ProxyServer": RegistryValue(REG_SZ, f"127.0.0.1:{ports.proxy_port}"),
            "ProxyOverride": RegistryValue(
                REG_SZ, proxy_override(str(current.data) if current else None)
            ),
        }

    def is_published(self, paths: Paths) -> bool:
        """A previous `init --apps` pointed the user's CA variable at our bundle."""
        value = self.system.read_value(ENVIRONMENT_KEY, "SSL_CERT_FILE")
        return value is not None and value.data == str(paths.ca_bundle)

    def _set(self, key: str, wanted: dict[str, RegistryValue]) -> list[str]:
        changed = []
        for name, value in wanted.items():
            before = self.system.read_value(key, name)
            if before == value:
                continue
            self.system.write_value(key, name, value)
            self.undo_later(partial(self._put, key, name, before))
            changed.append(name)
        return changed

    def _put(self, key: str, name: str, value: RegistryValue | None) -> None:
        if value is None:
            self.system.delete_value(key, name)
        else:
            self.system.write_value(key, name, value)

    def publish(self, ports: Ports, bundle: Path, paths: Paths, write: Write) -> list[str]:
        """Registry values only (`write`, for files, is not needed on Windows)."""
        changed = self._set(ENVIRONMENT_KEY, self.wanted_environment(ports, bundle))
        if changed:
            self.system.broadcast_environment()
        proxy = self._set(INTERNET_SETTINGS_KEY, self.wanted_internet_settings(ports))
        if proxy:
            self.system.refresh_internet_settings()
        return [f"HKCU\\Environment\\{n}" for n in changed] + [
            f"Internet Settings\\{n}" for n in proxy
        ]

    # --- tasks ----------------------------------------------------------------------------

    def definitions(self, launch: list[str], paths: Paths) -> dict[Component, tuple[Path, bytes]]:
        self._home = paths
        command, prefix = runtime_command(paths) or task_command(launch)
        user = self.system.user_id()
        return {
            component: (
                task_file(paths, component),
                task_bytes(
                    task_xml(
                        component, command, task_arguments(component, prefix, paths), user, paths
                    )
                ),
            )
            for component in COMPONENTS
        }

    def _registered(self, name: str) -> bool:
        return self.system.run(["schtasks", "/Query", "/TN", name]).ok

    def _create(self, component: Component, path: Path) -> None:
        name = TASK_NAMES[component]
        done = self.system.run(["schtasks", "/Create", "/XML", str(path), "/TN", name, "/F"])
        if not done.ok:
            raise WindowsSetupError(
                f"`schtasks /Create /XML {path} /TN {name} /F` failed: "
                f"{(done.stderr or done.stdout).strip()}"
            )

    def register(
        self, definitions: dict[Component, tuple[Path, bytes]], rewritten: dict[Component, bool]
    ) -> list[Component]:
        """Stage this version's runtime before the tasks name it; drop the ones no running
        service uses. The copy the services ran before this `init` stays until the next one:
        if this run fails, its rollback registers the old tasks again, and they need it."""
        paths = self._paths()
        if runtime_command(paths) is None:
            return super().register(definitions, rewritten)
        runtime.stage(paths, runtime_version())
        changed = super().register(definitions, rewritten)
        self.prune_runtimes(paths)
        return changed

    def _paths(self) -> Paths:
        """The home the last `definitions` were made for (init and doctor make them first)."""
        return self._home if self._home is not None else resolve_paths()

    def prune_runtimes(self, paths: Paths, keep: tuple[str, ...] | None = None) -> list[str]:
        """Remove the runtime folders neither this version nor a running service uses."""
        in_use: list[str] = []
        for component in COMPONENTS:
            pid = running_pid(component, paths)
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                in_use += psutil.Process(pid).cmdline()
        return runtime.prune(paths, (runtime_version(),) if keep is None else keep, in_use)

    def register_one(self, component: Component, path: Path, changed: bool) -> bool:
        """Register the task when its XML changed or it is missing; True when it did."""
        name = TASK_NAMES[component]
        existed = self._registered(name)
        if existed and not changed:
            return False
        self._create(component, path)

        def undo() -> None:  # after the file itself was put back
            if path.exists() and existed:
                self._create(component, path)
            else:
                self.system.run(["schtasks", "/Delete", "/TN", name, "/F"])

        self.undo_later(undo)
        return True

    # --- supervision ----------------------------------------------------------------------

    def start(self, component: Component) -> None:
        name = TASK_NAMES[component]
        done = self.system.run(["schtasks", "/Run", "/TN", name])
        if not done.ok:
            raise SupervisorError(
                f"`schtasks /Run /TN {name}` failed: {(done.stderr or done.stdout).strip()}. "
                "Run `halton-meter init` to register the tasks."
            )

    def stop(self, component: Component) -> None:
        """`schtasks /End` is TerminateProcess: the ledger survives it (WAL), a row in flight
        may not be recorded."""
        self.system.run(["schtasks", "/End", "/TN", TASK_NAMES[component]])

    # --- uninstall ------------------------------------------------------------------------

    def remove(self, paths: Paths, snapshot: dict[str, Any], graceful: bool) -> list[str]:
        removed = []
        for component in COMPONENTS:
            name = TASK_NAMES[component]
            if not (graceful and component is EDGE):
                self.stop(component)
            if self._registered(name):
                self.system.run(["schtasks", "/Delete", "/TN", name, "/F"])
                removed.append(f"task {name}")
            task_file(paths, component).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # only when empty
            (paths.home / "tasks").rmdir()
        for name in self.prune_runtimes(paths, keep=()):  # a graceful edge keeps its own
            removed.append(f"runtime {name}")
        before: dict[str, Any] = snapshot.get("windows", {})
        if before:
            removed += self._restore(paths, before)
        return removed

    def _restore(self, paths: Paths, before: dict[str, Any]) -> list[str]:
        restored = []
        saved = set(before.get("saved_in_registry", []))
        environment = before.get("environment", {})
        for name in ENV_NAMES:
            if name not in environment:
                continue
            value = RegistryValue.from_json(environment[name])
            if name in saved:
                value = self.system.read_value(SAVED_KEY, name)
                self.system.delete_value(SAVED_KEY, name)
            if self.system.read_value(ENVIRONMENT_KEY, name) != value:
                self._put(ENVIRONMENT_KEY, name, value)
                restored.append(f"HKCU\\Environment\\{name}")
        if restored:
            self.system.broadcast_environment()
        internet = before.get("internet_settings", {})
        proxy = []
        for name in INTERNET_NAMES:
            if name not in internet:
                continue
            value = RegistryValue.from_json(internet[name])
            if self.system.read_value(INTERNET_SETTINGS_KEY, name) != value:
                self._put(INTERNET_SETTINGS_KEY, name, value)
                proxy.append(f"Internet Settings\\{name}")
        if proxy:
            self.system.refresh_internet_settings()
        return [f"{item} (restored)" for item in [*restored, *proxy]]

    # --- doctor ---------------------------------------------------------------------------

    def definition_problem(self, component: Component) -> str | None:
        """None when registered, else why not."""
        name = TASK_NAMES[component]
        if not self._registered(name):
            return f"task {name} is not registered"
        paths = self._paths()
        if runtime_command(paths) is not None and not runtime.is_staged(paths, runtime_version()):
            return f"{runtime.folder(paths, runtime_version())} is missing or incomplete"
        return None

    def published_drift(self, ports: Ports, bundle: Path) -> list[str]:
        drift = [
            f"HKCU\\Environment\\{name}"
            for name, value in self.wanted_environment(ports, bundle).items()
            if self.system.read_value(ENVIRONMENT_KEY, name) != value
        ]
        drift += [
            f"Internet Settings\\{name}"
            for name, value in self.wanted_internet_settings(ports).items()
            if self.system.read_value(INTERNET_SETTINGS_KEY, name) != value
        ]
        return drift

    def command_of(self, content: bytes) -> str | None:
        """The `<Command>` of task XML as written by `task_bytes`."""
        text = content[2:].decode("utf-16-le", errors="replace")
        start, end = text.find("<Command>"), text.find("</Command>")
        if start == -1 or end == -1:
            return None
        return unescape(text[start + len("<Command>") : end])
