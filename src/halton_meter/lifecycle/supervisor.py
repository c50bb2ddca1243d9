"""Keeping the edge and the daemon running: systemd --user units where a user manager runs,
detached background processes with pid files everywhere else (containers, CI, WSL without
systemd); native.py adds Task Scheduler and launchd on the same base.

Every supervisor starts the same commands, `halton-meter edge` and `halton-meter daemon
--behind-edge`, with the absolute path of the running executable; a process is "up" when it
has published its state file (`edge.json`, `daemon.json`, runstate.py) and its pid there is
alive and runs that component. Which supervisor runs is not decided here: this_os.py chooses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]

from halton_meter import __version__
from halton_meter.lifecycle.environment import PROXY_VARIABLES
from halton_meter.logs import output_path, rotate_output
from halton_meter.paths import Paths, resolve_paths
from halton_meter.runstate import (
    DAEMON_STATE_FILE,
    DAEMON_TAKE_OVER_ENV,
    DRAIN_SECONDS,
    EDGE_GRACE_SECONDS,
    EDGE_STATE_FILE,
    GUARD_STATE_FILE,
    STOP_TIMEOUT,
    TAKE_OVER_ENV,
    pid_alive,
    process_created,
    read_state,
    write_atomic,
)

SUPERVISOR_ENV = "HALTON_METER_SUPERVISOR"  # "systemd" or "background": skip the detection
START_TIMEOUT = 30.0
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


EDGE = Component(
    "edge", ("edge",), "halton-meter-edge.service", EDGE_STATE_FILE, "Halton Meter edge"
)
DAEMON = Component(
    "daemon",
    ("daemon", "--behind-edge"),
    "halton-meter.service",
    DAEMON_STATE_FILE,
    "Halton Meter daemon",
)
COMPONENTS = (EDGE, DAEMON)
# Background mode only: respawns a crashed edge or daemon (guard.py). No unit: where a service
# manager runs, it does this itself.
GUARD = Component("guard", ("guard",), "", GUARD_STATE_FILE, "Halton Meter guard")


PACKAGE = "halton-meter"


class EphemeralInstallError(SupervisorError):
    """Running from a disposable environment, and no uv to start this version again."""


def launcher() -> list[str]:
    """The absolute command that starts this `halton-meter` again after a reboot or an upgrade.

    Usually the running executable as it was invoked (a symlink in ~/.local/bin stays a
    symlink: that path survives upgrades). Under `uvx` the executable lives in uv's cache,
    which a cache clean may delete, so the services run a launcher script in the home folder
    instead (see `uvx_launcher`; a POSIX shell script: Windows still runs the cached path)."""
    if os.name != "nt" and in_disposable_environment():
        return [str(uvx_launcher(resolve_paths()))]
    argv0 = sys.argv[0] if sys.argv else ""
    candidate = argv0 if os.sep in argv0 else (shutil.which(argv0) or "") if argv0 else ""
    if candidate and Path(candidate).name.startswith("halton-meter"):
        path = Path(os.path.abspath(candidate))
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path)]
    return [os.path.abspath(sys.executable), "-m", "halton_meter"]


def in_disposable_environment(prefix: str | None = None) -> bool:
    """Whether this Python environment lies inside a cache folder (a parent holds a
    `CACHEDIR.TAG`, as uv's cache does): its owner may delete it at any time. The environment's
    own tag does not count: uv tags every virtualenv it makes, `uv tool install`'s too."""
    folder = Path(prefix or sys.prefix).absolute()
    return any((parent / "CACHEDIR.TAG").is_file() for parent in folder.parents)


def uvx_launcher(paths: Paths, environ: Mapping[str, str] | None = None) -> Path:
    """`<home>/bin/halton-meter-<version>`: asks uv for this version's environment (uv reuses
    its cached one, or fetches it again after a cache clean), then execs the real program.

    Not `uvx halton-meter@VERSION` itself: uv stays running as the parent of what it runs, and
    `uv cache clean` waits for every running uv, so the upgrade page's `uv cache clean
    halton-meter` would hang for as long as the meter runs. One file per version, written only
    when its content changes, so a newer `uvx halton-meter doctor` never changes what the
    running services start."""
    environ = os.environ if environ is None else environ
    uv = environ.get("UV", "")  # uv exports its own path to what it runs
    if not (uv and Path(uv).is_absolute() and os.access(uv, os.X_OK)):
        uv = shutil.which("uv", path=environ.get("PATH")) or ""
    if not uv:
        raise EphemeralInstallError(
            f"halton-meter runs from a cache folder ({sys.prefix}) that may be deleted at any "
            "time, and no uv was found to start it again. Install it for good with "
            f"`uv tool install {PACKAGE}` (or `pipx install {PACKAGE}`), then run "
            "`halton-meter init`."
        )
    script = paths.home / "bin" / f"{PACKAGE}-{__version__}"
    write_if_changed(script, uvx_launcher_text(os.path.abspath(uv), environ).encode(), 0o755)
    return script


def uvx_launcher_text(uv: str, environ: Mapping[str, str]) -> str:
    requirement = f"{PACKAGE}=={__version__}"
    lines = [
        "#!/bin/sh",
        f"# Written by `halton-meter init` for a uvx install: runs {requirement} from uv's",
        "# cache (uv fetches it again if the cache was cleaned), then execs it, so no uv process",
        "# stays running: `uv cache clean` would wait for it.",
    ]
    cache = environ.get("UV_CACHE_DIR")  # a location, never a secret: the same cache as uvx
    if cache:
        lines.append(f"UV_CACHE_DIR={shlex.quote(os.path.abspath(cache))}; export UV_CACHE_DIR")
    find_prefix = shlex.join(
        [uv, "--quiet", "tool", "run", "--from", requirement, "python", "-c", _PRINT_PREFIX]
    )
    lines += [
        f"prefix=$({find_prefix}) || exit 1",
        f'exec "$prefix/bin/{PACKAGE}" "$@"',
        "",
    ]
    return "\n".join(lines)


_PRINT_PREFIX = "import sys; print(sys.prefix)"


def write_if_changed(path: Path, content: bytes, mode: int) -> bool:
    if path.exists() and path.read_bytes() == content:
        return False
    write_atomic(path, content, mode)
    return True


def running_pid(component: Component, paths: Paths) -> int | None:
    """The live pid that published the component's state file, if any. A state file left by
    a crash or a reboot may name a pid the system has since given to another program: that
    one is not ours, so it is never reported, let alone stopped."""
    data = read_state(paths.home / component.state_file)
    if data is None:
        return None
    pid = data.get("pid")
    if not isinstance(pid, int):
        return None
    return pid if _is_ours(pid, component, started_by=data.get("started_at")) else None


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The supervised processes' environment: the caller's, without proxy variables that
    point at ourselves (the env block in the user's shell would loop the daemon into the edge)."""
    env = dict(base)
    for name in (*PROXY_VARIABLES, "ALL_PROXY", "all_proxy"):
        if "127.0.0.1" in env.get(name, "") or "localhost" in env.get(name, ""):
            del env[name]
    return env


def wait_started(
    component: Component,
    paths: Paths,
    exited: Callable[[], bool] | None,
    log: Path,
    previous: int | None,
) -> int:
    """The pid of the component once it has published its state (another than `previous`);
    SupervisorError with the tail of its output `log` when it does not within START_TIMEOUT
    or `exited` says it died."""
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
        return self._spawn(component, paths, previous=None)

    def replace(self, component: Component, paths: Paths) -> int:
        """Restart without a gap where the running process supports it: a running edge or
        daemon that offers its listening socket (`handover` in its state file) is stopped
        only once its successor, which took that socket over, has published its state; the
        old one then drains what it has (a daemon its calls in flight, an edge its open
        connections). Otherwise stop, then start. A process of an older release that cannot
        drain (no `drains` in its state file) is first given up to DRAIN_SECONDS to go quiet,
        so its stop cuts nothing that was in flight."""
        old = running_pid(component, paths)
        state = read_state(paths.home / component.state_file) or {}
        drains = state.get("drains") is True
        if old is None or state.get("handover") is not True:
            if old is not None and not drains:
                wait_quiet(old, DRAIN_SECONDS)
            self.stop(component, paths)
            return self.start(component, paths)
        record = read_state(component.pid_file(paths)) or {}
        recorded, recorded_start = record.get("pid"), record.get("started_at")
        variable = TAKE_OVER_ENV if component is EDGE else DAEMON_TAKE_OVER_ENV
        try:
            pid = self._spawn(component, paths, previous=old, extra_env={variable: "1"})
        except SupervisorError:  # it could not take over (and found the port taken)
            self.stop(component, paths)
            return self.start(component, paths)
        olds = {old}
        if (
            isinstance(recorded, int)
            and recorded != pid
            and _is_ours(recorded, component, started_by=recorded_start)
        ):
            olds.add(recorded)
        if component is EDGE and not drains:
            # An older edge cuts what it relays 3 s after SIGTERM: wait until it is quiet.
            for each in olds:
                wait_quiet(each, DRAIN_SECONDS)
        if component is EDGE and drains:
            # It drains on its own (its relays may be pooled connections that last): give it
            # the usual grace, then leave it finishing in the background.
            _terminate(sorted(olds), timeout=EDGE_GRACE_SECONDS + 1.0, kill=False)
        else:
            _terminate(sorted(olds))  # a daemon: its drain, then its rows, then exit
        return pid

    def _spawn(
        self,
        component: Component,
        paths: Paths,
        previous: int | None,
        extra_env: Mapping[str, str] | None = None,
    ) -> int:
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
                env={**child_environment(os.environ), **(extra_env or {})},
            )
        pid_file = component.pid_file(paths)
        previous_pid_file = pid_file.read_bytes() if previous and pid_file.exists() else None
        _write_pid(pid_file, process.pid, command)
        try:
            return wait_started(
                component, paths, lambda: process.poll() is not None, log, previous=previous
            )
        except SupervisorError:
            if process.poll() is None:
                process.kill()
                process.wait()
            if previous_pid_file is not None:  # the one it was to replace still runs
                write_if_changed(pid_file, previous_pid_file, 0o644)
            else:
                pid_file.unlink(missing_ok=True)
            raise

    def stop(self, component: Component, paths: Paths) -> bool:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; True when something was running."""
        return bool(self.stop_all((component,), paths))

    def ensure_guard(self, paths: Paths) -> int:
        """The guard of this version runs (one of another version is replaced)."""
        pid = running_pid(GUARD, paths)
        state = read_state(paths.home / GUARD_STATE_FILE) or {}
        if pid is not None and state.get("version") != __version__:
            self.stop_all((GUARD,), paths)
        return self.start(GUARD, paths)

    def stop_all(self, components: tuple[Component, ...], paths: Paths) -> list[Component]:
        """Stop several at once (SIGTERM to all, then wait); the ones that were running. The
        pid files go first: they say what should run, so the guard (guard.py) respawns none
        of them; stopping the edge stops the guard too (before anything else)."""
        if EDGE in components and GUARD not in components:
            self.stop_all((GUARD,), paths)
        found: dict[int, Component] = {}
        for component in components:
            pid = running_pid(component, paths)
            if pid is not None:
                found[pid] = component
            record = read_state(component.pid_file(paths)) or {}
            recorded = record.get("pid")
            if isinstance(recorded, int) and _is_ours(
                recorded, component, started_by=record.get("started_at")
            ):
                found[recorded] = component
        for component in components:
            component.pid_file(paths).unlink(missing_ok=True)
        _terminate(list(found))
        return [c for c in components if c in found.values()]

    def command_of(self, component: Component, paths: Paths) -> list[str] | None:
        recorded = read_state(component.pid_file(paths))
        if recorded is None or running_pid(component, paths) != recorded.get("pid"):
            return None
        command = recorded.get("command")
        return [str(part) for part in command] if isinstance(command, list) else None


def _write_pid(path: Path, pid: int, command: list[str]) -> None:
    """`<name>.pid`: what the background supervisor started, and when (for `_is_ours`)."""
    record = {"pid": pid, "command": command, "started_at": process_created(pid)}
    write_atomic(path, json.dumps(record) + "\n")


def _is_ours(pid: int, component: Component, *, started_by: object = None) -> bool:
    """The pid is alive, runs this component (its command line says so) and, when we know
    when ours started, it already existed then: a reused pid belongs to a process created
    later (runstate.pid_alive)."""
    if not pid_alive(pid, started_by):
        return False
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # another user's process cannot be one we started
        return False
    return component.args[0] in cmdline


def _terminate(pids: list[int], timeout: float = STOP_TIMEOUT, *, kill: bool = True) -> None:
    """SIGTERM to all, then SIGKILL to those still alive after `timeout` (or, without `kill`,
    leave them finishing). A zombie counts as gone: our children are re-parented, and some
    init processes reap them late."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    if wait_gone(pids, timeout) or not kill:
        return
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    wait_gone(pids, 5.0)


QUIET_SECONDS = 1.0
QUIET_WAKES = 2  # main-thread wake-ups a quiet process may still have in QUIET_SECONDS


def wait_quiet(pid: int, limit: float, quiet: float = QUIET_SECONDS) -> float:
    """Wait until a process has no established TCP connection, or its main thread (the event
    loop, in the edge and the daemon alike) has slept through `quiet` seconds, at most `limit`;
    the seconds waited. For replacing a process of an older release that cuts whatever is in
    flight when it stops: a stream in flight wakes the loop every few hundred milliseconds, an
    idle pooled connection never. (Not bytes written: /proc's write counters miss send().)"""
    started = time.monotonic()
    deadline = started + limit
    last: int | None = None
    since = started
    try:
        process = psutil.Process(pid)
        while time.monotonic() < deadline:
            established = [
                c for c in process.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED
            ]
            if not established:
                break
            wakes = process.num_ctx_switches().voluntary
            now = time.monotonic()
            if last is None or wakes - last > QUIET_WAKES:
                last, since = wakes, now
            elif now - since >= quiet:
                break
            time.sleep(0.05)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        pass
    return time.monotonic() - started


def wait_gone(pids: list[int], timeout: float) -> bool:
    """Whether all `pids` ended (a zombie counts as ended) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids):
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
        return wait_started(component, paths, None, component.output_file(paths), previous=None)

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


def user_without_linger() -> str | None:
    """With systemd the user manager (and the meter) stops at logout unless linger is on: the
    user name when linger is off, else None (on, or unknown)."""
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
    return user if done.stdout.strip() == "Linger=no" else None


# What runs the components: every OS's supervisor is one of these (native.py's NativeSupervisor
# is a BackgroundSupervisor); this_os.py picks it.
Supervisor = BackgroundSupervisor | SystemdSupervisor
