"""Keeping the edge and the daemon running: systemd --user units where a user manager runs,
detached background processes with pid files everywhere else (containers, CI, WSL without
systemd).

Both supervisors start the same commands, `halton-meter edge` and `halton-meter daemon
--behind-edge`, with the absolute path of the running executable; a process is "up" when it
has published its state file (`edge.json`, `daemon.json`) and its pid there is alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]

from halton_meter.lifecycle.environment import PROXY_VARIABLES
from halton_meter.logs import output_path, rotate_output
from halton_meter.paths import Paths

SUPERVISOR_ENV = "HALTON_METER_SUPERVISOR"  # "systemd" or "background": skip the detection
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0  # the daemon writes every pending row first
NO_MANAGER = "no systemd user manager: running as background processes"


class SupervisorError(RuntimeError):
    """A component could not be started or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    args: tuple[str, ...]
    unit: str
    state_file: str
    description: str

    def pid_file(self, paths: Paths) -> Path:
        return paths.home / f"{self.name}.pid"

    def output_file(self, paths: Paths) -> Path:
        """The process's stdout and stderr: only what it prints before its own JSON-lines log
        (`logs/<name>.jsonl`) is open, such as a crash at start-up."""
        return output_path(paths.logs, self.name)


EDGE = Component("edge", ("edge",), "halton-meter-edge.service", "edge.json", "Halton Meter edge")
DAEMON = Component(
    "daemon",
    ("daemon", "--behind-edge"),
    "halton-meter.service",
    "daemon.json",
    "Halton Meter daemon",
)
COMPONENTS = (EDGE, DAEMON)


def launcher() -> list[str]:
    """The absolute command of the running `halton-meter`, as it was invoked (a symlink in
    ~/.local/bin stays a symlink: that path survives upgrades)."""
    argv0 = sys.argv[0] if sys.argv else ""
    candidate = argv0 if os.sep in argv0 else (shutil.which(argv0) or "") if argv0 else ""
    if candidate and Path(candidate).name.startswith("halton-meter"):
        path = Path(os.path.abspath(candidate))
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path)]
    return [os.path.abspath(sys.executable), "-m", "halton_meter"]


def process_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def running_pid(component: Component, paths: Paths) -> int | None:
    """The live pid that published the component's state file, if any. A state file left by
    a crash or a reboot may name a pid the system has since given to another program: that
    one is not ours, so it is never reported, let alone stopped."""
    data = _read_json(paths.home / component.state_file)
    if data is None:
        return None
    pid, started = data.get("pid"), data.get("started_at")
    if not isinstance(pid, int) or not process_alive(pid):
        return None
    return pid if _is_ours(pid, component, started_by=started) else None


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The supervised processes' environment: the caller's, without proxy variables that
    point at ourselves (the env block in the user's shell would loop the daemon into the edge)."""
    env = dict(base)
    for name in (*PROXY_VARIABLES, "ALL_PROXY", "all_proxy"):
        if "127.0.0.1" in env.get(name, "") or "localhost" in env.get(name, ""):
            del env[name]
    return env


def _wait_started(
    component: Component,
    paths: Paths,
    exited: Callable[[], bool] | None,
    log: Path,
    previous: int | None,
) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = running_pid(component, paths)
        if pid is not None and pid != previous:
            return pid
        if exited is not None and exited():
            break
        time.sleep(0.05)
    tail = ""
    with contextlib.suppress(OSError):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
    raise SupervisorError(f"{component.description} did not start (log {log}):\n{tail}".rstrip())


class BackgroundSupervisor:
    """Detached processes (own session, output to logs/<name>.out.log) with pid files."""

    kind = "background"

    def start(self, component: Component, paths: Paths) -> int:
        pid = running_pid(component, paths)
        if pid is not None:
            return pid
        paths.logs.mkdir(parents=True, exist_ok=True)
        log = component.output_file(paths)
        rotate_output(log)
        command = [*launcher(), *component.args]
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                cwd=str(paths.home),
                env=child_environment(os.environ),
            )
        _write_pid(component.pid_file(paths), process.pid, command)
        try:
            return _wait_started(
                component, paths, lambda: process.poll() is not None, log, previous=None
            )
        except SupervisorError:
            if process.poll() is None:
                process.kill()
                process.wait()
            component.pid_file(paths).unlink(missing_ok=True)
            raise

    def stop(self, component: Component, paths: Paths) -> bool:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; True when something was running."""
        return bool(self.stop_all((component,), paths))

    def stop_all(self, components: tuple[Component, ...], paths: Paths) -> list[Component]:
        """Stop several at once (SIGTERM to all, then wait); the ones that were running."""
        found: dict[int, Component] = {}
        for component in components:
            pid = running_pid(component, paths)
            if pid is not None:
                found[pid] = component
            record = _read_json(component.pid_file(paths)) or {}
            recorded = record.get("pid")
            if (
                isinstance(recorded, int)
                and process_alive(recorded)
                and _is_ours(recorded, component, started_by=record.get("started_at"))
            ):
                found[recorded] = component
        _terminate(list(found))
        for component in components:
            component.pid_file(paths).unlink(missing_ok=True)
        return [c for c in components if c in found.values()]

    def command_of(self, component: Component, paths: Paths) -> list[str] | None:
        recorded = _read_json(component.pid_file(paths))
        if recorded is None or running_pid(component, paths) != recorded.get("pid"):
            return None
        command = recorded.get("command")
        return [str(part) for part in command] if isinstance(command, list) else None


def _write_pid(path: Path, pid: int, command: list[str]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        created: float | None = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    record = {"pid": pid, "command": command, "started_at": created}
    temporary.write_text(json.dumps(record) + "\n")
    os.replace(temporary, path)


# A process publishes its state file after it was created: allow for clock granularity.
CREATE_TIME_SLACK = 2.0


def _is_ours(pid: int, component: Component, *, started_by: object = None) -> bool:
    """The pid runs this component (its command line says so) and, when we know when ours
    started, it already existed then: a reused pid belongs to a process created later."""
    try:
        process = psutil.Process(pid)
        cmdline, created = process.cmdline(), process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # another user's process cannot be one we started
        return False
    if component.args[0] not in cmdline:
        return False
    if isinstance(started_by, int | float):
        return bool(created <= started_by + CREATE_TIME_SLACK)
    return True


def _terminate(pids: list[int]) -> None:
    """SIGTERM to all, then SIGKILL to those still alive after STOP_TIMEOUT. A zombie counts
    as gone: our children are re-parented, and some init processes reap them late."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    if _wait_gone(pids, STOP_TIMEOUT):
        return
    for pid in pids:
        if process_alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    _wait_gone(pids, 5.0)


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(process_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class SystemdSupervisor:
    """`systemctl --user` on the units that `init` wrote."""

    kind = "systemd"

    def start(self, component: Component, paths: Paths) -> int:
        previous = running_pid(component, paths)
        if previous is not None:
            return previous
        done = systemctl("start", component.unit, check=False)
        if done.returncode != 0:
            raise SupervisorError(
                f"`systemctl --user start {component.unit}` failed: {done.stderr.strip()}. "
                "Run `halton-meter init` to (re)write the units."
            )
        return _wait_started(component, paths, None, component.output_file(paths), previous=None)

    def stop(self, component: Component, paths: Paths) -> bool:
        was = running_pid(component, paths) is not None
        systemctl("stop", component.unit, check=False)
        return was

    def command_of(self, component: Component, paths: Paths) -> list[str] | None:
        return None  # systemd restarts a unit whose file changed (see init)


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["systemctl", "--user", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check and done.returncode != 0:
        raise SupervisorError(
            f"`systemctl --user {' '.join(args)}` failed: {done.stderr.strip() or done.stdout}"
        )
    return done


def systemd_user_manager() -> bool:
    """Whether a systemd user manager answers (`systemctl --user is-system-running`)."""
    forced = os.environ.get(SUPERVISOR_ENV, "").lower()
    if forced in ("systemd", "background"):
        return forced == "systemd"
    if shutil.which("systemctl") is None:
        return False
    try:
        done = systemctl("is-system-running", check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.stdout.strip() in ("running", "degraded", "starting")


def linger_advice() -> str | None:
    """With systemd: the user manager (and the meter) stops at logout unless linger is on."""
    import getpass

    user = os.environ.get("USER") or getpass.getuser()
    try:
        done = subprocess.run(
            ["loginctl", "show-user", user, "-p", "Linger"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.stdout.strip() != "Linger=no":
        return None
    return f"linger is off, so the meter stops when you log out: `loginctl enable-linger {user}`"


def choose_supervisor() -> BackgroundSupervisor | SystemdSupervisor:
    from halton_meter.lifecycle import native  # Task Scheduler, launchd

    found = native.supervisor()
    if found is not None:
        return found
    return SystemdSupervisor() if systemd_user_manager() else BackgroundSupervisor()
