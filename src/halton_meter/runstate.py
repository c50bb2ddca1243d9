"""The run-state contract: what the edge, the daemon and the commands that manage them tell each
other, through files in the home folder and one header on the loopback hand-off.

- A running edge publishes `edge.json` (`EdgeState`), a running daemon `daemon.json`
  (`DaemonState`). A process is up when its state file names a live pid that was created no
  later than the `started_at` it wrote (`pid_alive`): after a crash or a reboot the file may
  name a pid the system has since given to another program.
- Every file one process writes and another reads (state and pid files, ports, service
  definitions, the CA bundle, the cloud credentials) is written with `write_atomic`, so a
  reader never sees half a file, not even after a power cut.
- The edge names the real client in `X-Halton-Client` when it hands a connection to the
  daemon; the supervisor sets `HALTON_METER_EDGE_TAKE_OVER` on an edge that is to take its
  predecessor's listening socket over.
- The timeouts whose order matters live here, and their order is checked at import.

Standard library only: the edge imports this module, and the edge stays standard-library only
so it starts fast and never breaks with the daemon's dependencies.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

EDGE_STATE_FILE = "edge.json"
DAEMON_STATE_FILE = "daemon.json"
# The hosts the daemon decrypts (`providers.ClaimedHosts` as JSON), written at its start: the
# edge hands these to the daemon, and so learns hosts the daemon takes from the price catalogue
# without importing it. Re-read by the edge when it changes.
CLAIMED_HOSTS_FILE = "claimed-hosts.json"
# What a daemon's drain did at its last stop (`DrainReport`): `stop` and `restart` print it.
DRAIN_FILE = "daemon-drain.json"
# The background guard's state (`GuardState`): its pid and the respawns it made; `status`
# shows them.
GUARD_STATE_FILE = "guard.json"

# The edge's addition to the request head of a connection it hands to the daemon: the client's
# `ip:port`, which the daemon needs to find the owning process (the daemon only sees the edge).
# The daemon trusts it only behind the edge and never forwards it.
CLIENT_HEADER = "X-Halton-Client"
# Set to "1" by the supervisor when it starts a successor edge: a second edge started by hand
# must not quietly share the port with the running one.
TAKE_OVER_ENV = "HALTON_METER_EDGE_TAKE_OVER"
# The same for a successor daemon: it takes the running daemon's listening socket (internal
# port) over, so a restart refuses no hand-off and tunnels nothing unmetered.
DAEMON_TAKE_OVER_ENV = "HALTON_METER_DAEMON_TAKE_OVER"
# Set by the guard (guard.py) on a standby it starts: the descriptor of the Unix socket on
# which the standby, its imports done, waits for the word to run (launch.py).
STANDBY_ENV = "HALTON_METER_STANDBY_FD"
# Set on an edge that is to accept on an inherited listening socket (this descriptor): the one
# the guard kept open while the edge it replaces was dead, so no connection was refused.
EDGE_LISTEN_FD_ENV = "HALTON_METER_EDGE_LISTEN_FD"

# The daemon holds a new connection's CONNECT answer until it knows which process owns the
# client's socket (a client that got its answer could close the socket first), at most this
# long. Typically ~0.5 ms.
OWNER_WAIT_SECONDS = 0.5
# The edge waits this long for the daemon's answer to a handed-off CONNECT (mitmproxy answers
# without going upstream), then tunnels the connection itself, unmetered. It must stay above
# OWNER_WAIT_SECONDS: otherwise a slow owner lookup would turn a healthy daemon's connection
# into an unmetered tunnel.
DAEMON_ANSWER_TIMEOUT = 2.0
# At a stop the edge lets open connections finish for this long, then cuts them.
EDGE_GRACE_SECONDS = 3.0
# On SIGTERM the daemon stops taking connections and lets the calls in flight finish for
# `[daemon] drain_seconds` (this default; config accepts 0 to DRAIN_SECONDS_MAX), then writes
# their rows and exits. An edge that handed its socket to a successor drains as long.
DRAIN_SECONDS = 30.0
DRAIN_SECONDS_MAX = 60.0
# After the drain: cut calls recorded, the ledger writer's queue committed, the API stopped.
AFTER_DRAIN_SECONDS = 15.0
# A supervisor waits this long after SIGTERM before SIGKILL (systemd's TimeoutStopSec, the
# background and native supervisors). It must stay above the longest drain plus what follows
# it, or a stopping daemon is killed mid-drain and its calls are cut after all; and above
# EDGE_GRACE_SECONDS, or a stopping edge is killed mid-grace.
STOP_TIMEOUT = DRAIN_SECONDS_MAX + AFTER_DRAIN_SECONDS

# A process writes its state file after it was created: allow for the clock's granularity.
CREATE_TIME_SLACK = 2.0

# Windows: OpenProcess's right to ask for the exit code and times, and the exit code of a
# process still running.
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_STILL_ACTIVE = 259
_FILETIME_EPOCH = 116444736000000000  # 1601-01-01 to 1970-01-01, in 100 ns steps
# macOS: sysctl(CTL_KERN, KERN_PROC, KERN_PROC_PID, pid) fills a `struct kinfo_proc` (648 bytes
# on 64-bit), whose `kp_proc` starts with p_starttime (timeval), has p_stat at 36 (SZOMB = 5)
# and p_pid at 40.
_KERN_PROC_PID = (1, 14, 1)
_KINFO_PROC_SIZE = 1024
_SZOMB = 5


def check_timeout_order(
    answer: float = DAEMON_ANSWER_TIMEOUT,
    owner_wait: float = OWNER_WAIT_SECONDS,
    grace: float = EDGE_GRACE_SECONDS,
    stop: float = STOP_TIMEOUT,
    drain: float = DRAIN_SECONDS,
    drain_max: float = DRAIN_SECONDS_MAX,
) -> None:
    """Raise when the timeouts are in an order that silently breaks metering or stopping."""
    if not answer > owner_wait:
        raise ValueError(
            f"the edge's answer timeout ({answer} s) must exceed the daemon's owner wait "
            f"({owner_wait} s): slow lookups would become unmetered tunnels"
        )
    if not stop > grace:
        raise ValueError(
            f"the supervisor's stop timeout ({stop} s) must exceed the edge's grace ({grace} s)"
        )
    if not 0 <= drain <= drain_max:
        raise ValueError(f"the default drain ({drain} s) must lie within 0-{drain_max} s")
    if not stop > drain_max:
        raise ValueError(
            f"the supervisor's stop timeout ({stop} s) must exceed the longest drain "
            f"({drain_max} s): a draining daemon would be killed and its calls cut"
        )


check_timeout_order()


# --- files ------------------------------------------------------------------------------


def write_atomic(path: Path, content: bytes | str, mode: int | None = None) -> None:
    """Replace `path` with `content` all at once: written to a unique temporary file in the
    same folder, flushed to disk, renamed over `path`, and the folder flushed too (where the OS
    allows), so a reader sees the old or the new content, never a mix, even after a crash.

    `mode` sets the file's permissions (the temporary file is 0600 until then, so a secret is
    never readable by others); without it the file gets the default mode, as `open` gives."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            descriptor = os.open(temporary, flags, 0o666 if mode is None else 0o600)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; Windows cannot open a folder for that."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def read_state(path: Path) -> dict[str, Any] | None:
    """A state or pid file's JSON object; None when missing, unreadable or not an object.
    Lenient on purpose: a file written by another version still names its pid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def live_pid(path: Path) -> int | None:
    """The pid a state file names, when that process is alive and was created no later than
    the `started_at` the file records (a reused pid is someone else's)."""
    data = read_state(path)
    if data is None:
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    return pid if pid_alive(pid, data.get("started_at")) else None


@dataclass(frozen=True, slots=True)
class EdgeState:
    """`edge.json`: written by a running edge; read by the supervisor (pid, started_at,
    handover), init's port choice (port), `status`, and a second edge that cannot bind."""

    pid: int
    port: int
    internal_port: int
    version: str
    started_at: float
    handover: bool  # it offers its listening socket to a successor (edge/handover.py)
    # Once a successor took its socket over, it lets its open connections finish (up to
    # `[daemon] drain_seconds`) instead of cutting them after EDGE_GRACE_SECONDS.
    drains: bool = False

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self)))


@dataclass(frozen=True, slots=True)
class DaemonState:
    """`daemon.json`: written by a running daemon; read by the supervisor, `run`, `status`,
    init's port choice (listen_port, api_port) and tests."""

    pid: int
    version: str
    listen_port: int
    behind_edge: bool
    started_at: float
    # The loopback API's port, or None when it could not listen (the daemon meters anyway).
    api_port: int | None = None
    # It drains on SIGTERM (lets calls in flight finish); an older daemon without this key
    # cuts them, so a newer supervisor waits for it to go quiet first.
    drains: bool = False
    # It offers its listening socket to a successor (`daemon.sock`, edge/handover.py).
    handover: bool = False

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self)))


@dataclass(frozen=True, slots=True)
class DrainReport:
    """`daemon-drain.json`: what a stopping daemon waited for. Written when the drain ends, so
    the command that stopped it can say how many calls it waited for and how long."""

    pid: int
    calls: int  # calls in flight when the drain began
    finished: int  # of those, how many ended within the drain
    cut: int  # still open at its end: recorded as cut short (error_class network)
    seconds: float  # how long the drain took
    limit: float  # `[daemon] drain_seconds`
    handed_over: bool  # a successor took the listening socket over (restart, upgrade)

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self)))


def remove_own_state(path: Path) -> None:
    """Remove a state file only when it names this process: a second process that failed to
    start must not remove the running one's."""
    data = read_state(path)
    if data is not None and data.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


# --- processes --------------------------------------------------------------------------


def pid_alive(pid: int, started_at: object = None) -> bool:
    """Whether `pid` runs (a zombie awaiting its reaper does not) and, when `started_at` (epoch
    seconds) is given and the OS tells when the process was created, whether it already existed
    then: a pid reused by a process created later is not the one that wrote the file."""
    alive, created = _probe(pid)
    if not alive:
        return False
    if isinstance(started_at, int | float) and not isinstance(started_at, bool):
        return created is None or created <= started_at + CREATE_TIME_SLACK
    return True


def process_created(pid: int) -> float | None:
    """When the process was created (epoch seconds), the value psutil's `create_time` gives;
    None when it is gone or the OS does not tell."""
    alive, created = _probe(pid)
    return created if alive else None


Probe = tuple[bool, float | None]  # (alive and not a zombie, creation time when known)


def _probe(pid: int) -> Probe:
    if pid <= 0:
        return False, None
    if os.name == "nt":
        return _probe_windows(pid)
    found = _probe_darwin(pid) if sys.platform == "darwin" else _probe_proc(pid)
    return found if found is not None else _probe_signal(pid)


def _probe_signal(pid: int) -> Probe:
    """Signal 0: whether it exists; the creation time stays unknown."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except OSError:  # alive, owned by another user
        pass
    return True, None


def _probe_proc(pid: int) -> Probe | None:
    """Linux: /proc/<pid>/stat's state and start time (clock ticks after boot, as psutil
    reads it); None when there is no readable /proc (the caller then sends a signal)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return (False, None) if os.path.exists("/proc/self/stat") else None
    except OSError:  # hidepid
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()  # the name in parentheses may hold spaces
    if not fields or fields[0] in (b"Z", b"X"):
        return False, None
    try:
        return True, _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, OSError):
        return True, None


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def _probe_darwin(pid: int) -> Probe | None:
    """macOS: sysctl's kinfo_proc (state and start time); None when it cannot be read or does
    not have the layout we know (the caller then sends a signal)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mib = (ctypes.c_int * 4)(*_KERN_PROC_PID, pid)
        buffer = ctypes.create_string_buffer(_KINFO_PROC_SIZE)
        size = ctypes.c_size_t(_KINFO_PROC_SIZE)
        if libc.sysctl(mib, 4, buffer, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    if size.value == 0:
        return False, None  # no such process
    seconds, microseconds = struct.unpack_from("=qi", buffer.raw, 0)
    (found,) = struct.unpack_from("=i", buffer.raw, 40)
    if found != pid:
        return None
    if buffer.raw[36] == _SZOMB:
        return False, None
    created = seconds + microseconds / 1e6
    return True, created if 0 < created <= time.time() + CREATE_TIME_SLACK else None


def _probe_windows(pid: int) -> Probe:
    """Windows: the exit code (STILL_ACTIVE) and GetProcessTimes' creation time. Never
    os.kill(pid, 0): on Windows that terminates the process."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return False, None
    try:
        code = wintypes.DWORD()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        if code.value != _STILL_ACTIVE:
            return False, None
        times = [wintypes.FILETIME() for _ in range(4)]
        if not kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
            return True, None
        created = (times[0].dwHighDateTime << 32) | times[0].dwLowDateTime
        return True, (created - _FILETIME_EPOCH) / 1e7
    finally:
        kernel32.CloseHandle(handle)
