"""The guard: in background mode (no systemd user manager, no Task Scheduler or launchd), the
small process that brings a crashed edge or daemon back.

Who watches whom, and why:

- The guard watches both, by polling every 50 ms what the background supervisor recorded:
  `<name>.pid` says a component should run (the supervisor writes it when it starts one and
  removes it *before* it stops one, so an intended stop is never undone) and with which
  command; the component's state file says whether it runs. When the recorded process is dead
  and no live process has published the state file, the guard starts the recorded command
  again, as the supervisor would have, and records the new pid.
- Why not the daemon watching the edge: the edge must come back within a second, also while
  the daemon is down (stopped on purpose, crashed, or still starting after a crash), and the
  daemon is the heavy process (mitmproxy, the ledger, the API) most likely to be the one that
  died. Why not the edge watching the daemon: the edge's job is to stay simple and up; a child
  process to manage is one more way for it to fail. So a third process, standard library only
  and doing nothing but this, watches both; it does not import the edge, the daemon or their
  dependencies, so neither's crash can take it along.
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
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halton_meter import __version__
from halton_meter.edge.log import JsonLog
from halton_meter.runstate import (
    DAEMON_STATE_FILE,
    EDGE_STATE_FILE,
    GUARD_STATE_FILE,
    live_pid,
    pid_alive,
    process_created,
    read_state,
    write_atomic,
)

POLL_SECONDS = 0.05
CRASH_WINDOW = 30.0  # a process that dies sooner after its start is crash-looping
IDLE_EXIT = 60.0


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
    next_at: float | None = None  # when the next respawn is due (monotonic), while waiting
    started_mono: float = field(default_factory=time.monotonic)

    def as_json(self) -> dict[str, Any]:
        return {
            "respawns": self.respawns,
            "crash_loop": self.crash_loop,
            "last_respawn_at": self.last_respawn_at,
            "last_death_at": self.last_death_at,
        }


def pid_file(home: Path, name: str) -> Path:
    return home / f"{name}.pid"


class Guard:
    def __init__(self, home: Path, logs: Path, log: JsonLog) -> None:
        self.home, self.logs, self.log = home, logs, log
        self.records = {w.name: Record() for w in WATCHED}
        self.started_at = time.time()
        self.stopping = False
        self._children: list[subprocess.Popen[bytes]] = []
        self._exits: dict[int, int] = {}  # how the processes the guard started ended

    def publish(self) -> None:
        state = {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "components": {name: r.as_json() for name, r in self.records.items()},
        }
        write_atomic(self.home / GUARD_STATE_FILE, json.dumps(state))

    def tick(self) -> bool:
        """One look at each component; False when there is nothing to watch."""
        wanted = False
        for watched in WATCHED:
            recorded = read_state(pid_file(self.home, watched.name))
            if recorded is None:
                self.records[watched.name].next_at = None
                continue
            wanted = True
            self._check(watched, recorded)
        return wanted

    def _check(self, watched: Watched, recorded: dict[str, Any]) -> None:
        record = self.records[watched.name]
        pid, command = recorded.get("pid"), recorded.get("command")
        if isinstance(pid, int) and pid_alive(pid, recorded.get("started_at")):
            return
        state_file = self.home / watched.state_file
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
            return
        now = time.monotonic()
        if record.next_at is None:  # just found dead
            record.last_death_at = time.time()
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

    def _respawn(self, watched: Watched, command: list[str], record: Record) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        out = self.logs / f"{watched.name}.out.log"
        try:
            with out.open("ab") as handle:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    cwd=str(self.home),
                )
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
        )
        self.publish()
        self._children.append(process)

    def reap(self) -> None:
        """Collect the exit status of the processes we started, so none stays a zombie."""
        running = []
        for child in self._children:
            code = child.poll()
            if code is None:
                running.append(child)
            else:
                self._exits[child.pid] = code
        self._children = running


def run_guard(home: Path, logs: Path) -> int:
    """Watch until SIGTERM or until there is nothing to watch for IDLE_EXIT seconds."""
    log = JsonLog(logs / "guard.jsonl", "info", stderr=False, process="guard")
    state = home / GUARD_STATE_FILE
    other = live_pid(state)
    if other is not None and other != os.getpid():
        log.info("already_guarded", pid=other)
        log.close()
        return 0
    guard = Guard(home, logs, log)
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
            time.sleep(POLL_SECONDS)
    finally:
        data = read_state(state)
        if data is not None and data.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                state.unlink()
        log.info("stopped", **{n: r.respawns for n, r in guard.records.items()})
        log.close()
    return 0
