"""The guard: in background mode (no systemd user manager, no Task Scheduler or launchd), the
small process that brings a crashed edge or daemon back.

Who watches whom, and why:

- The guard watches both. `<name>.pid` says a component should run (the background supervisor
  writes it when it starts one and removes it *before* it stops one, so an intended stop is
  never undone) and with which command; the component's state file says whether it runs. When
  the recorded process is dead and no live process has published the state file, the guard
  brings the component back and records the new pid. It learns of a death at once where the
  system has pidfds (Linux 5.3+: the descriptor becomes readable when the process ends), and
  otherwise looks every 50 ms.
- Why not the daemon watching the edge: the edge must come back within a second, also while
  the daemon is down (stopped on purpose, crashed, or still starting after a crash), and the
  daemon is the heavy process (mitmproxy, the ledger, the API) most likely to be the one that
  died. Why not the edge watching the daemon: the edge's job is to stay simple and up; a child
  process to manage is one more way for it to fail. So a third process, standard library only
  and doing nothing but this, watches both; it does not import the edge, the daemon or their
  dependencies, so neither's crash can take it along.
- Back fast on a loaded machine: start-up is mostly imports (the daemon ~1 s of CPU, the edge
  ~0.2 s), and with other work on the cores they take several times that. So once a component
  has run for STANDBY_AFTER seconds, the guard starts a standby of it: the same command, which
  does its imports and then waits (launch.py). A death wakes the standby, which reads the
  configuration and starts in tens of milliseconds of CPU; a new standby follows once it has
  run STANDBY_AFTER. Without a standby (none yet, it died, a crash loop) the command is
  started afresh. The price is the standbys' memory (about 30 MB for the edge's, 100 MB for
  the daemon's), in background mode only.
- No connection refused while the edge is dead: the guard keeps a copy of the edge's
  listening socket (asked for on `edge.sock`, as a successor edge would, edge/handover.py).
  The kernel goes on accepting connections into its queue while no edge runs, and the edge
  the guard starts accepts on that same socket, so clients see a short wait, not a refusal.
- The edge is respawned at once; a daemon at once the first time, then, when it keeps dying
  within CRASH_WINDOW of its start (a crash loop: a broken config, a full disk), after 1, 2,
  4 … up to 60 s, so the loop costs little while the edge tunnels meanwhile. The edge backs
  off too (0.5 s up to 10 s): it is what clients connect to, so it is never given up on.
- Every respawn is logged (`logs/guard.jsonl`) and counted in `guard.json`, which `status`
  shows.
- With nothing to watch (both pid files gone: `uninstall`, or a rollback to a release without
  a guard followed by its uninstall) for IDLE_EXIT seconds, the guard exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halton_meter import __version__
from halton_meter.edge import handover
from halton_meter.edge.log import JsonLog
from halton_meter.runstate import (
    DAEMON_STATE_FILE,
    EDGE_LISTEN_FD_ENV,
    EDGE_STATE_FILE,
    GUARD_STATE_FILE,
    STANDBY_ENV,
    live_pid,
    pid_alive,
    process_created,
    read_state,
    write_atomic,
)

POLL_SECONDS = 0.05
CRASH_WINDOW = 30.0  # a process that dies sooner after its start is crash-looping
IDLE_EXIT = 60.0
# A component runs this long before its standby is started: the standby's imports would
# compete with its start-up for the CPU.
STANDBY_AFTER = 3.0
STANDBY_RETRY = 60.0  # after a standby that failed on its own (a broken install)
# "0" in the guard's environment (set when running `init` or `start`): no standbys, for a
# machine short of memory; respawns then start the command afresh.
STANDBY_SWITCH_ENV = "HALTON_METER_GUARD_STANDBY"
EDGE_HOST = "127.0.0.1"  # edge/listener.py's LISTEN_HOST


@dataclass(frozen=True, slots=True)
class Watched:
    name: str
    state_file: str
    first_delay: float  # before the first respawn
    base_delay: float  # before the second one in a crash loop, doubling each time
    max_delay: float


WATCHED = (
    Watched("edge", EDGE_STATE_FILE, 0.0, 0.5, 10.0),
    Watched("daemon", DAEMON_STATE_FILE, 0.0, 1.0, 60.0),
)


@dataclass
class Record:
    """What the guard did for one component (in guard.json)."""

    respawns: int = 0
    crash_loop: int = 0  # consecutive deaths within CRASH_WINDOW of a start
    last_respawn_at: float | None = None
    last_death_at: float | None = None
    last_back_seconds: float | None = None  # from seeing the death to the respawn's state file
    next_at: float | None = None  # when the next respawn is due (monotonic), while waiting
    started_mono: float = field(default_factory=time.monotonic)
    died_mono: float | None = None  # the last death, until the respawn published its state
    up_pid: int | None = None  # the pid seen running (its state file names it) ...
    up_since: float = 0.0  # ... since then (monotonic)
    standby_failed_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "respawns": self.respawns,
            "crash_loop": self.crash_loop,
            "last_respawn_at": self.last_respawn_at,
            "last_death_at": self.last_death_at,
            "last_back_seconds": self.last_back_seconds,
        }


@dataclass(eq=False)
class Standby:
    """A started copy of a component's command, its imports done, waiting for the word."""

    process: subprocess.Popen[bytes]
    channel: socket.socket  # the guard's end of the socket pair
    command: list[str]
    ready: bool = False  # its imports are done (it said so)

    def heard(self) -> bool:
        """Whether it has just said it is ready (read without waiting)."""
        if self.ready:
            return False
        with contextlib.suppress(OSError):
            if self.channel.recv(16, socket.MSG_DONTWAIT) == b"ready":
                self.ready = True
        return self.ready

    def wake(self, fds: list[int]) -> bool:
        """Tell it to run (passing `fds` along); False when it can no longer."""
        if self.process.poll() is not None:
            return False
        try:
            if fds:
                socket.send_fds(self.channel, [b"run"], fds)
            else:
                self.channel.sendall(b"run")
        except OSError:
            return False
        finally:
            self.channel.close()
        return True

    def dismiss(self) -> None:
        """End it: the end of stream tells a waiting standby to exit, SIGTERM one still
        importing."""
        self.channel.close()
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.terminate()


def pid_file(home: Path, name: str) -> Path:
    return home / f"{name}.pid"


class Guard:
    def __init__(self, home: Path, logs: Path, log: JsonLog, *, standbys: bool = True) -> None:
        self.home, self.logs, self.log = home, logs, log
        self.records = {w.name: Record() for w in WATCHED}
        self.started_at = time.time()
        self.stopping = False
        self.use_standbys = standbys
        self.standbys: dict[str, Standby] = {}
        self._children: list[subprocess.Popen[bytes]] = []
        self._exits: dict[int, int] = {}  # how the processes the guard started ended
        self._pidfds: dict[int, int] = {}  # pid -> pidfd, of the recorded processes
        self._edge_listener: socket.socket | None = None  # the copy of the edge's socket
        self._edge_listener_of: int | None = None  # the edge pid it was asked of

    def publish(self) -> None:
        state = {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "components": {name: r.as_json() for name, r in self.records.items()},
            "standby": {
                name: {"pid": s.process.pid, "ready": s.ready} for name, s in self.standbys.items()
            },
            "holds_edge_socket": self._edge_listener is not None,
        }
        write_atomic(self.home / GUARD_STATE_FILE, json.dumps(state))

    def tick(self) -> bool:
        """One look at each component; False when there is nothing to watch."""
        wanted = False
        watching: set[int] = set()
        for watched in WATCHED:
            recorded = read_state(pid_file(self.home, watched.name))
            if recorded is None:
                self.records[watched.name].next_at = None
                self._dismiss(watched.name)
                if watched.name == "edge":
                    self._keep_edge_listener(None)
                continue
            wanted = True
            if isinstance(recorded.get("pid"), int):
                watching.add(recorded["pid"])
            self._check(watched, recorded)
        for pid in set(self._pidfds) - watching:
            os.close(self._pidfds.pop(pid))
        return wanted

    def death_fds(self) -> list[int]:
        """Descriptors that become readable when a watched process ends (pidfds)."""
        return list(self._pidfds.values())

    def _watch(self, pid: int) -> None:
        if pid in self._pidfds or not hasattr(os, "pidfd_open"):
            return
        with contextlib.suppress(OSError):
            self._pidfds[pid] = os.pidfd_open(pid)

    def _check(self, watched: Watched, recorded: dict[str, Any]) -> None:
        record = self.records[watched.name]
        pid, command = recorded.get("pid"), recorded.get("command")
        state_file = self.home / watched.state_file
        if isinstance(pid, int) and pid_alive(pid, recorded.get("started_at")):
            self._watch(pid)
            self._running(watched, pid, command, read_state(state_file))
            return
        if isinstance(pid, int) and pid in self._pidfds:
            os.close(self._pidfds.pop(pid))  # readable from now on: no more waking on it
        if live_pid(state_file) is not None:
            return  # a live one published its state (started by hand or by `start` just now)
        if not isinstance(command, list) or not command:
            return
        # A crash, not a stop: a process that stops cleanly removes its state file, one that
        # was killed (SIGKILL, the OOM killer, a segfault) leaves it naming its pid; and a
        # process the guard started that exited with an error. (A supervisor of this release
        # removes the pid file before it stops anything; an older one only after, and this
        # keeps the guard from undoing its stops meanwhile.)
        state = read_state(state_file)
        crashed = state is not None and state.get("pid") == pid
        failed = isinstance(pid, int) and self._exits.get(pid, 0) != 0
        if not (crashed or failed):
            if watched.name == "edge":
                # A clean stop by a supervisor that does not know of us (an older release's,
                # after a rollback): its next edge binds the port, so let go of it at once.
                self._keep_edge_listener(None)
            return
        now = time.monotonic()
        if record.next_at is None:  # just found dead
            record.last_death_at = time.time()
            record.died_mono = now
            quick = record.last_respawn_at is not None and (
                now - record.started_mono < CRASH_WINDOW
            )
            record.crash_loop = record.crash_loop + 1 if quick else 0
            delay = (
                watched.first_delay
                if record.crash_loop == 0
                else min(watched.max_delay, watched.base_delay * 2 ** (record.crash_loop - 1))
            )
            record.next_at = now + delay
            self.log.warning(
                "died",
                component=watched.name,
                pid=pid,
                respawn_in=round(delay, 2),
                crash_loop=record.crash_loop,
            )
        if now < record.next_at:
            return
        # Read the pid file once more: a supervisor may have just stopped (removed it) or
        # replaced the component.
        if read_state(pid_file(self.home, watched.name)) != recorded:
            record.next_at = None
            return
        self._respawn(watched, [str(word) for word in command], record)

    def _running(
        self, watched: Watched, pid: int, command: object, state: dict[str, Any] | None
    ) -> None:
        """The recorded process lives: note when it is up (its state file names it), keep a
        copy of the edge's socket, and have a standby once it has run STANDBY_AFTER."""
        record = self.records[watched.name]
        if state is None or state.get("pid") != pid:
            return  # still starting
        now = time.monotonic()
        if record.up_pid != pid:
            record.up_pid, record.up_since = pid, now
            # A new process (a restart, an upgrade, a rollback, or our own respawn): a standby
            # started before it may run other code; the next one starts from what runs now.
            self._dismiss(watched.name)
            if record.died_mono is not None:
                record.last_back_seconds = round(now - record.died_mono, 3)
                record.died_mono = None
                self.log.info(
                    "back", component=watched.name, pid=pid, seconds=record.last_back_seconds
                )
                self.publish()
        if watched.name == "edge":
            self._keep_edge_listener(pid if state.get("handover") is True else None, state)
        if not self.use_standbys or not isinstance(command, list) or not command:
            return
        if state.get("version") != __version__:
            # Another release runs it (a rollback left this guard running): its entry point
            # may not know the standby's protocol, and would simply run a second copy.
            self._dismiss(watched.name)
            return
        words = [str(word) for word in command]
        standby = self.standbys.get(watched.name)
        if standby is not None and standby.command != words:
            self._dismiss(watched.name)  # replaced by another command (an upgrade)
            standby = None
        failed = record.standby_failed_at
        if (
            standby is None
            and now - record.up_since >= STANDBY_AFTER
            and (failed is None or now - failed >= STANDBY_RETRY)
        ):
            self._start_standby(watched, words)

    def _keep_edge_listener(self, pid: int | None, state: dict[str, Any] | None = None) -> None:
        """Hold a copy of the listening socket of the edge `pid` (None: hold none)."""
        if pid == self._edge_listener_of:
            return
        held = self._edge_listener is not None
        if self._edge_listener is not None:
            self._edge_listener.close()
            self._edge_listener = None
        self._edge_listener_of = pid
        port = (state or {}).get("port")
        if pid is not None and isinstance(port, int):
            self._edge_listener = handover.take_over(self.home, EDGE_HOST, port)
        if held or self._edge_listener is not None:
            self.publish()

    def _start_standby(self, watched: Watched, command: list[str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = self._spawn(watched, command, [theirs.fileno()], STANDBY_ENV)
        except OSError as error:
            ours.close()
            self.records[watched.name].standby_failed_at = time.monotonic()
            self.log.error("standby_failed", component=watched.name, error=str(error))
            return
        finally:
            theirs.close()
        self.standbys[watched.name] = Standby(process, ours, command)
        self.log.info("standby", component=watched.name, pid=process.pid)
        self.publish()

    def _dismiss(self, name: str) -> None:
        standby = self.standbys.pop(name, None)
        if standby is not None:
            self._let_go(standby)

    def _let_go(self, standby: Standby) -> None:
        standby.dismiss()
        self._children.append(standby.process)  # reaped like the others

    def _spawn(
        self, watched: Watched, command: list[str], fds: list[int], fd_env: str
    ) -> subprocess.Popen[bytes]:
        """Start `command` in its own session, output to its log, `fds` inherited and the
        first one named in `fd_env` (a standby's channel, or the edge's listening socket)."""
        env = dict(os.environ)
        if fds:
            env[fd_env] = str(fds[0])
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{watched.name}.out.log").open("ab") as handle:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=tuple(fds),
                cwd=str(self.home),
                env=env,
            )

    def _respawn(self, watched: Watched, command: list[str], record: Record) -> None:
        fds = []
        if watched.name == "edge" and self._edge_listener is not None:
            fds = [self._edge_listener.fileno()]
        standby = self.standbys.pop(watched.name, None)
        process: subprocess.Popen[bytes] | None = None
        if standby is not None and standby.command == command and standby.wake(fds):
            process = standby.process
        elif standby is not None:
            self._let_go(standby)
        if process is None:
            try:
                process = self._spawn(watched, command, fds, EDGE_LISTEN_FD_ENV)
            except OSError as error:
                record.next_at = None
                record.started_mono = time.monotonic()
                record.last_respawn_at = time.time()
                self.log.error("respawn_failed", component=watched.name, error=str(error))
                return
        record.respawns += 1
        record.last_respawn_at = time.time()
        record.started_mono = time.monotonic()
        record.next_at = None
        entry = {"pid": process.pid, "command": command, "started_at": process_created(process.pid)}
        write_atomic(pid_file(self.home, watched.name), json.dumps(entry) + "\n")
        self.log.warning(
            "respawned",
            component=watched.name,
            pid=process.pid,
            respawns=record.respawns,
            crash_loop=record.crash_loop,
            standby=standby is not None and process is standby.process,
        )
        self.publish()
        self._children.append(process)

    def reap(self) -> None:
        """Collect the exit status of the processes we started, so none stays a zombie; a
        standby that ended on its own is let go (and not started again for a while when it
        failed)."""
        running = []
        for child in self._children:
            code = child.poll()
            if code is None:
                running.append(child)
            else:
                self._exits[child.pid] = code
        self._children = running
        for name, standby in list(self.standbys.items()):
            if standby.heard():
                self.publish()
            code = standby.process.poll()
            if code is not None:
                del self.standbys[name]
                standby.channel.close()
                self.records[name].standby_failed_at = time.monotonic()
                self.log.warning(
                    "standby_ended", component=name, pid=standby.process.pid, code=code
                )
                self.publish()

    def close(self) -> None:
        """At the guard's stop: standbys ended, the copy of the edge's socket closed."""
        for name in list(self.standbys):
            self._dismiss(name)
        self._keep_edge_listener(None)
        for fd in self._pidfds.values():
            os.close(fd)
        self._pidfds.clear()

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, less when a watched process ends."""
        fds = self.death_fds()
        if not fds:
            time.sleep(seconds)
            return
        try:
            select.select(fds, [], [], seconds)
        except (OSError, ValueError):
            time.sleep(seconds)


def run_guard(home: Path, logs: Path) -> int:
    """Watch until SIGTERM or until there is nothing to watch for IDLE_EXIT seconds."""
    log = JsonLog(logs / "guard.jsonl", "info", stderr=False, process="guard")
    state = home / GUARD_STATE_FILE
    other = live_pid(state)
    if other is not None and other != os.getpid():
        log.info("already_guarded", pid=other)
        log.close()
        return 0
    guard = Guard(home, logs, log, standbys=os.environ.get(STANDBY_SWITCH_ENV) != "0")
    signal.signal(signal.SIGTERM, lambda *_: setattr(guard, "stopping", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(guard, "stopping", True))
    guard.publish()
    log.info("started", pid=os.getpid(), version=__version__)
    idle_since: float | None = None
    try:
        while not guard.stopping:
            wanted = guard.tick()
            guard.reap()
            now = time.monotonic()
            if wanted:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since > IDLE_EXIT:
                log.info("nothing_to_watch")
                break
            guard.wait(POLL_SECONDS)
    finally:
        guard.close()
        data = read_state(state)
        if data is not None and data.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                state.unlink()
        log.info("stopped", **{n: r.respawns for n, r in guard.records.items()})
        log.close()
    return 0
