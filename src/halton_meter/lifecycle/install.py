"""`init`, `status` and `uninstall`: setting the machine up around the meter, idempotently.

`init` writes a file only when its content changes, so a second `init` rewrites nothing; it
saves what it found before its first change in `system_state.json` (never overwritten), and
when a step or the final self-test fails it puts back every file this run changed and stops
what this run started.

The steps are the same on every OS; what differs (the snapshot's OS part, CA trust, how the
variables are published, the service definitions and their registration, the supervisor) comes
from the running OS's `Platform` (the contract in platforms.py; this_os.py picks linux.py,
windows.py or macos.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halton_meter import __version__
from halton_meter.config import Config
from halton_meter.ledger import spans
from halton_meter.lifecycle import agent_statusline, ca, selftest, shell, this_os
from halton_meter.lifecycle.environment import (
    CA_VARIABLES,
    PROXY_VARIABLES,
    without_credentials,
)
from halton_meter.lifecycle.platforms import Confirm, Platform
from halton_meter.lifecycle.ports import (
    Ports,
    choose_ports,
    configured_ports,
    effective_path,
    listening,
    read_effective,
    write_effective,
)
from halton_meter.lifecycle.supervisor import (
    COMPONENTS,
    DAEMON,
    EDGE,
    GUARD,
    NO_MANAGER,
    BackgroundSupervisor,
    Component,
    SupervisorError,
    launcher,
    running_pid,
)
from halton_meter.paths import Paths, ensure_home
from halton_meter.providers.selftest import SELF_TEST_PROVIDER
from halton_meter.reconcile import run as reconcile_run
from halton_meter.runstate import EDGE_STATE_FILE, GUARD_STATE_FILE, read_state, write_atomic

STATE_FILE = "system_state.json"
# The shell files an init created (they did not exist when it wrote its block): uninstall
# deletes such a file when only the block was in it. The snapshot cannot say so for a file
# that appeared after the first init (fish installed later), and it is never rewritten.
CREATED_FILE = "created-shell-files.json"
SELF_TEST_TIMEOUT = 10.0
Progress = Callable[[str, str, str], None]  # (step, outcome, detail)


class InitError(RuntimeError):
    """A step failed; what this run changed has been put back."""


def no_progress(step: str, outcome: str, detail: str) -> None:
    pass


@dataclass
class _Undo:
    """The content each file had before this run first wrote it (None: it did not exist)."""

    saved: dict[Path, bytes | None] = field(default_factory=dict)

    def remember(self, path: Path) -> None:
        if path not in self.saved:
            self.saved[path] = path.read_bytes() if path.exists() else None

    def write(self, path: Path, content: bytes) -> bool:
        """Write only when the content changes; True when written."""
        if path.exists() and path.read_bytes() == content:
            return False
        self.remember(path)
        write_in_place(path, content)
        return True

    def restore(self) -> list[str]:
        restored = []
        for path, content in self.saved.items():
            with contextlib.suppress(OSError):
                if content is None:
                    path.unlink(missing_ok=True)
                else:
                    write_in_place(path, content)
                restored.append(str(path))
        return restored


def write_in_place(path: Path, content: bytes) -> None:
    """Atomically, through a symlink (dotfile managers link ~/.bashrc), keeping the mode."""
    target = path.resolve() if path.is_symlink() else path
    mode = target.stat().st_mode & 0o7777 if target.exists() else None
    write_atomic(target, content, mode)


@dataclass
class InitResult:
    supervisor: str
    ports: Ports | None = None
    fallbacks: dict[str, tuple[int, int]] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    steps: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    restored: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.error is None,
            "version": __version__,
            "supervisor": self.supervisor,
            "ports": self.ports.as_dict() if self.ports else None,
            "fallbacks": {k: {"wanted": w, "chosen": c} for k, (w, c) in self.fallbacks.items()},
            "changed": bool(self.written or self.started or self.restarted),
            "written": self.written,
            "started": self.started,
            "restarted": self.restarted,
            "steps": self.steps,
            "error": self.error,
            "restored": self.restored,
        }


def state_path(paths: Paths) -> Path:
    return paths.home / STATE_FILE


def _snapshot(paths: Paths, user_home: Path) -> dict[str, Any]:
    """What every OS records before the first init; the platform adds its own part."""
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "version": __version__,
        "executable": launcher(),
        "shell_files": {
            str(path): {
                "existed": path.exists(),
                "had_block": path.exists() and shell.has_block(path.read_text(errors="replace")),
            }
            for path in shell.shell_files(user_home)
        },
        "effective_ports_existed": effective_path(paths).exists(),
        "environment": {
            name: without_credentials(os.environ.get(name))
            for name in (*PROXY_VARIABLES, *CA_VARIABLES, "NO_PROXY", "no_proxy")
        },
    }


def run_init(
    config: Config,
    paths: Paths,
    *,
    shell_rc: bool = True,
    clean: bool = False,
    confirm: Confirm | None = None,
    progress: Progress = no_progress,
    user_home: Path | None = None,
    no_shell_rc: bool = False,
) -> InitResult:
    """Set everything up; raises nothing: a failure is in `result.error` (what this run changed
    is put back: files, and through the platform registrations, trust and registry values).

    `confirm` asks the person a yes/no question; None means non-interactive (no questions, the
    default answer: proceed with --clean, only advise on linger). `clean` starts from a clean
    slate: both processes stopped, generated files (ports, bundle, units, state files, shell
    blocks) removed, ports chosen anew; the ledger, config, CA and snapshot are kept.
    `shell_rc` (`--apps`) publishes the variables; where a previous `--apps` published them
    (Windows, macOS), a plain init keeps them current. `no_shell_rc` only words the skipped
    step (the person asked for it)."""
    user_home = user_home or Path.home()
    platform = this_os.platform(user_home)
    supervisor = platform.supervisor
    words = platform.wording
    result = InitResult(supervisor=platform.kind)
    undo = _Undo()
    started: list[Component] = []
    step = "home"

    def done(outcome: str, detail: str) -> None:
        result.steps.append({"step": step, "outcome": outcome, "detail": detail})
        progress(step, outcome, detail)

    def write(path: Path, content: bytes) -> bool:
        if undo.write(path, content):
            result.written.append(str(path))
            return True
        return False

    try:
        ensure_home(paths)
        done("ok", str(paths.home))

        step = "snapshot"
        state = state_path(paths)
        if state.exists():
            done("ok", f"kept {state}")
        else:
            before = platform.snapshot(_snapshot(paths, user_home), config, paths)
            write(state, (json.dumps(before, indent=2) + "\n").encode())
            done("changed", f"saved the state before init in {state}")

        if clean:
            step = "clean"
            if confirm is not None and not confirm(
                "--clean stops the edge for a moment (tools using the proxy fail meanwhile) "
                "and chooses the ports anew. Continue?"
            ):
                raise InitError("cancelled; nothing was changed")
            removed = _clean_slate(paths, platform, undo, user_home, result)
            done("changed", f"removed {', '.join(removed)}" if removed else "nothing to remove")

        step = "ca"
        bundle = paths.ca_bundle
        changed = write(bundle, ca.client_bundle_bytes(config, paths))
        cert = ca.ca_cert_path(config, paths)
        trusted = platform.trust_ca(cert)
        trust = "" if trusted is None else " (trust added)" if trusted else " (already trusted)"
        done("changed" if changed or trusted else "ok", f"CA {cert}{trust}, {bundle}")

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
        if shell_rc or platform.is_published(paths):
            touched = platform.publish(ports, bundle, paths, write)
            _record_created(paths, user_home, undo, write)
            if words.records_published:
                result.written += [item for item in touched if item not in result.written]
            changes = ", ".join(touched)
            done(
                "changed" if touched else "ok",
                words.published.format(changes) if touched else words.current,
            )
        else:
            done(
                "skipped", "--no-shell-rc: no shell file changed" if no_shell_rc else words.skipped
            )

        if shell_rc:
            step = "statusline"
            done(*_offer_statusline(paths, user_home, confirm, write))

        step = "units"
        command = launcher()
        # Registering may start or stop a process (launchd's RunAtLoad, bootout): what ran
        # before it decides what counts as started or restarted below.
        running_before = {c: running_pid(c, paths) for c in COMPONENTS}
        definitions = platform.definitions(command, paths)
        rewritten = {c: write(path, content) for c, (path, content) in definitions.items()}
        changed_units = platform.register(definitions, rewritten)
        names = ", ".join(platform.definition_name(c) for c in changed_units)
        done(
            "changed" if changed_units else "ok",
            words.registered.format(names) if names else "current",
        )

        step = "start"
        took_over = ""
        alone = standalone_daemon(paths)
        if alone is not None:
            # One daemon per home: the edge takes the proxy port, the daemon goes behind it.
            # SIGTERM, as Ctrl-C: it writes every pending row first.
            BackgroundSupervisor().stop(DAEMON, paths)
            took_over = f"stopped the standalone daemon (pid {alone['pid']}); "
        for component in COMPONENTS:
            before_pid = running_before[component]
            pid = running_pid(component, paths)
            stale = (
                pid is not None
                and pid == before_pid
                and _needs_restart(
                    component, paths, ports, platform, command, component in changed_units
                )
            )
            if pid is not None and pid == before_pid and not stale:
                continue
            if component.name not in result.restarted:  # else --clean stopped it
                ran_before = before_pid is not None
                (result.restarted if ran_before else result.started).append(component.name)
            if stale:
                platform.restart(component, paths)
            elif pid is None:
                supervisor.start(component, paths)
            else:  # registering it started it (launchd's RunAtLoad)
                platform.started_by_registration(component)
                continue
            started.append(component)
        if isinstance(supervisor, BackgroundSupervisor) and supervisor.kind == "background":
            supervisor.ensure_guard(paths)  # respawns a crashed edge or daemon (guard.py)
        acted = [*result.started, *(f"{n} (restarted)" for n in result.restarted)]
        how = platform.supervision(confirm)
        done(
            "changed" if acted else "ok",
            f"{took_over}{', '.join(acted) or 'already running'}; {how}",
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
        platform.rollback(result.restored)
        # What ran before this init runs again (above all the edge: clients depend on it).
        for component in COMPONENTS:
            if component.name in result.restarted:
                with contextlib.suppress(SupervisorError, OSError):
                    supervisor.start(component, paths)
        if isinstance(error, KeyboardInterrupt):
            raise
    return result


def _record_created(
    paths: Paths, user_home: Path, undo: _Undo, write: Callable[[Path, bytes], bool]
) -> None:
    """Add the shell files this run created to CREATED_FILE (through `write`: a failed init
    puts the record back with the files)."""
    created = [str(p) for p in shell.shell_files(user_home) if p in undo.saved and p.exists()]
    created = [p for p in created if undo.saved[Path(p)] is None]
    if not created:
        return
    record = paths.home / CREATED_FILE
    known = read_state(record) or {}
    files = sorted({*known.get("files", []), *created})
    write(record, (json.dumps({"files": files}, indent=2) + "\n").encode())


def _offer_statusline(
    paths: Paths, user_home: Path, confirm: Confirm | None, write: Callable[[Path, bytes], bool]
) -> tuple[str, str]:
    """Ask to add `halton-meter statusline` to Claude Code's settings (never without a yes on
    a terminal); written through `write`, so a failed init puts the file back."""
    if not (user_home / ".claude").is_dir():
        return "skipped", "Claude Code not found (no ~/.claude)"
    command = launcher()
    plan = agent_statusline.planned(user_home, command)
    if isinstance(plan, str):
        return "ok", plan
    if confirm is None:
        return "skipped", "run `halton-meter init --apps` on a terminal to add it to Claude Code"
    path, content = plan
    if not confirm(f"Show today's spend in Claude Code's status line (statusLine in {path})?"):
        return "skipped", "declined"
    existed = path.exists()
    write(path, content)
    entry = agent_statusline.entry(command)
    state = agent_statusline.record(paths.home, path, existed, str(entry["command"]))
    write(paths.home / agent_statusline.STATE_FILE, state)
    return "changed", f"Claude Code's status line runs `{entry['command']}` ({path})"


def _clean_slate(
    paths: Paths, platform: Platform, undo: _Undo, user_home: Path, result: InitResult
) -> list[str]:
    """Stop both processes and remove what init generates; everything is remembered, so a
    failure later in this run puts it all back (and starts the edge again)."""
    for component in COMPONENTS:
        if running_pid(component, paths) is not None:
            platform.supervisor.stop(component, paths)
            result.restarted.append(component.name)
    generated = [
        effective_path(paths),
        paths.ca_bundle,
        *(path for path, _ in platform.definitions(launcher(), paths).values()),
        *(paths.home / c.state_file for c in COMPONENTS),
        *(c.pid_file(paths) for c in COMPONENTS),
    ]
    removed = []
    for path in generated:
        if path.exists():
            undo.remember(path)
            path.unlink()
            removed.append(path.name)
    for path in shell.shell_files(user_home):
        text = path.read_text(errors="replace") if path.exists() else ""
        if shell.has_block(text) and undo.write(path, shell.without_block(text).encode()):
            removed.append(f"the block in {path.name}")
    return removed


def _needs_restart(
    component: Component,
    paths: Paths,
    ports: Ports,
    platform: Platform,
    command: list[str],
    definition_changed: bool,
) -> bool:
    """Running, but an older version, on other ports than this init chose, or (the
    platform's say) from another definition or executable."""
    state = _read_json(paths.home / component.state_file)
    port_key, wanted = (
        ("port", ports.proxy_port) if component is EDGE else ("listen_port", ports.internal_port)
    )
    if state.get(port_key) != wanted or state.get("version") != __version__:
        return True
    if component is EDGE and state.get("internal_port") != ports.internal_port:
        return True
    return platform.restart_for(component, paths, command, definition_changed)


def _read_json(path: Path) -> dict[str, Any]:
    return read_state(path) or {}


def self_test(config: Config, paths: Paths, ports: Ports) -> str:
    """The edge answers and sees a healthy daemon; a request through the edge to the daemon's
    test endpoint is recorded in the ledger; a non-LLM connection is tunnelled."""
    deadline = time.monotonic() + SELF_TEST_TIMEOUT
    problem = "no answer yet"
    while True:
        edge = edge_status(ports.proxy_port)
        daemon_pid = running_pid(DAEMON, paths)
        if edge is None:
            problem = f"the edge does not answer GET /status on 127.0.0.1:{ports.proxy_port}"
        elif daemon_pid is None or not listening(ports.internal_port):
            problem = f"the daemon is not listening on 127.0.0.1:{ports.internal_port}"
        elif edge.get("daemon_healthy") is not True:
            problem = f"the edge cannot reach the daemon: {edge.get('daemon_reason')}"
        else:
            break
        if time.monotonic() > deadline:
            raise InitError(f"self-test failed: {problem}")
        time.sleep(0.1)
    left = max(1.0, deadline - time.monotonic())
    try:
        request_id = selftest.metered_request(ports.proxy_port, paths.ca_bundle, left)
        selftest.wait_for_row(paths.ledger, request_id, max(1.0, deadline - time.monotonic()))
        if config.upstream.proxy:
            tunnelled = "tunnel check skipped ([upstream] proxy cannot reach a loopback host)"
        else:
            selftest.tunnel_check(ports.proxy_port, max(1.0, deadline - time.monotonic()))
            tunnelled = "a non-LLM connection was tunnelled"
    except selftest.SelfTestError as error:
        raise InitError(f"self-test failed: {error}") from None
    return (
        f"edge (pid {edge.get('pid')}) on {ports.proxy_port}, daemon (pid {daemon_pid}) on "
        f"{ports.internal_port}; a test request was metered (row {request_id}); {tunnelled}"
    )


def edge_status(port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The edge's `GET /status` answer, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: halton-meter\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def ledger_writer_status(api_port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The running daemon's ledger writer (`/v1/daemon/status`'s `ledger_writer`): whether
    rows are being written, and if not why, how many wait in memory and how many were lost.
    None when the API does not answer. Asked over loopback, never through a proxy."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=timeout)
    try:
        connection.request("GET", "/v1/daemon/status", headers={"Host": f"127.0.0.1:{api_port}"})
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            return None
        writer = json.loads(body).get("ledger_writer")
    except (OSError, ValueError, AttributeError):
        return None
    finally:
        connection.close()
    return writer if isinstance(writer, dict) else None


def ledger_problem(writer: dict[str, Any] | None, paths: Paths) -> tuple[str, str] | None:
    """(what is wrong, what to do) when the daemon cannot write the ledger or lost rows."""
    if writer is None:
        return None
    held, cap = writer.get("pending_rows", 0), writer.get("held_rows_cap", 0)
    dropped = writer.get("rows_dropped", 0)
    folder = shlex.quote(str(paths.ledger.parent))
    if not writer.get("writable", True):
        since = writer.get("unwritable_since")
        when = (
            dt.datetime.fromtimestamp(since).strftime("%Y-%m-%d %H:%M:%S")
            if isinstance(since, int | float)
            else "?"
        )
        why = (
            f"the ledger cannot be written since {when} ({writer.get('error')}): {held} calls "
            f"held in memory (at most {cap}, then the oldest are dropped), {dropped} dropped"
        )
        fix = (
            f"df -h {folder}  # free space there; the held rows are written as soon as "
            "SQLite can write, no restart needed"
        )
        return why, fix
    if dropped:
        why = f"{dropped} calls were not recorded since the daemon started (ledger unwritable)"
        return why, f"halton-meter doctor  # and see logs/daemon.jsonl; df -h {folder}"
    return None


# --- status ----------------------------------------------------------------------------------

HEALTHY, DEGRADED, DOWN = 0, 1, 2
STATES = {HEALTHY: "healthy", DEGRADED: "degraded", DOWN: "down"}


def ports_in_use(config: Config, paths: Paths) -> Ports:
    return read_effective(paths) or configured_ports(config)


def rows_today(paths: Paths) -> int | None:
    if not paths.ledger.exists():
        return 0
    midnight = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT00:00:00.000Z")
    try:
        con = sqlite3.connect(f"file:{paths.ledger.as_posix()}?mode=ro", uri=True, timeout=5)
        try:
            # Calls, not the meter checking itself (init's self-test rows).
            row = con.execute(
                "SELECT COUNT(*) FROM requests WHERE requested_at >= ? AND provider != ?",
                (midnight, SELF_TEST_PROVIDER),
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(row[0])


def standalone_daemon(paths: Paths) -> dict[str, Any] | None:
    """The state (`daemon.json`) of a live daemon started without `--behind-edge`, as
    `./scripts/meter` and `halton-meter daemon` run it: a supported way to meter, on the proxy
    port itself, with no edge. None when no such daemon runs."""
    pid = running_pid(DAEMON, paths)
    state = _read_json(paths.daemon_state)
    if pid is None or state.get("pid") != pid or state.get("behind_edge") is not False:
        return None
    port = state.get("listen_port")
    return {**state, "pid": pid} if isinstance(port, int) and listening(port) else None


def standalone_words(state: dict[str, Any]) -> str:
    return (
        f"a standalone daemon (`halton-meter daemon`, pid {state['pid']}) meters on "
        f"127.0.0.1:{state['listen_port']} itself; no edge runs"
    )


def status(config: Config, paths: Paths, supervisor_kind: str) -> dict[str, Any]:
    ports = ports_in_use(config, paths)
    alone = standalone_daemon(paths)
    if alone is not None and edge_status(ports.proxy_port) is None:
        return _standalone_status(paths, ports, alone, supervisor_kind)
    edge_pid = running_pid(EDGE, paths)
    answer = edge_status(ports.proxy_port)
    edge_ok = answer is not None
    edge = {
        "pid": answer.get("pid") if answer else edge_pid,
        "port": ports.proxy_port,
        "healthy": edge_ok,
        "mode": answer.get("mode") if answer else None,
        "version": answer.get("version") if answer else None,
    }
    daemon_state = _read_json(paths.daemon_state)
    daemon_pid = running_pid(DAEMON, paths)
    daemon_ok = (
        daemon_pid is not None
        and daemon_state.get("listen_port") == ports.internal_port
        and listening(ports.internal_port)
    )
    daemon = {
        "pid": daemon_pid,
        "port": ports.internal_port,
        "healthy": daemon_ok,
        "mode": ("behind-edge" if daemon_state.get("behind_edge") else "standalone")
        if daemon_pid
        else None,
        "version": daemon_state.get("version") if daemon_pid else None,
    }
    code = HEALTHY if edge_ok and daemon_ok else DEGRADED if edge_ok else DOWN
    report: dict[str, Any] = {
        **_ledger_writes(paths, ports.api_port if daemon_pid is not None else None),
        "state": STATES[code],
        "exit_code": code,
        "version": __version__,
        "supervisor": supervisor_kind,
        "note": NO_MANAGER if supervisor_kind == "background" else None,
        "mode": "metering" if code == HEALTHY else "passthrough" if edge_ok else "down",
        "ports": ports.as_dict(),
        "rows_today": rows_today(paths),
        "components": {"edge": edge, "daemon": daemon},
        "unmetered": _unmetered_today(paths, answer),
    }
    report["reconcile"] = _reconciled(paths)
    if supervisor_kind == "background":
        report["guard"] = guard_status(paths)
    return report


def _reconciled(paths: Paths) -> dict[str, Any] | None:
    """[reconcile] / `halton-meter reconcile`: the last comparison with the providers'
    reports, with its one-line summary."""
    reconciled = reconcile_run.load(paths.home)
    return {"line": reconcile_run.status_line(reconciled), **reconciled} if reconciled else None


def _ledger_writes(paths: Paths, api_port: int | None) -> dict[str, Any]:
    """Whether the running daemon (its API on `api_port`) manages to write the ledger."""
    writer = ledger_writer_status(api_port) if api_port is not None else None
    problem = ledger_problem(writer, paths)
    return {
        "ledger_writer": writer,
        "ledger_problem": {"why": problem[0], "fix": problem[1]} if problem else None,
    }


def _unmetered_today(paths: Paths, edge_answer: dict[str, Any] | None) -> dict[str, Any]:
    """LLM traffic tunnelled without metering: today's holes in the ledger, connections the
    edge spooled that no daemon stored yet, and the edge's own counts."""
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT00:00:00.000Z")
    return {
        **spans.summary(paths.ledger, paths.home, today),
        "edge": edge_answer.get("unmetered") if edge_answer else None,
    }


def guard_status(paths: Paths) -> dict[str, Any]:
    """The background guard (guard.py): whether it runs, and what it respawned."""
    pid = running_pid(GUARD, paths)
    state = _read_json(paths.home / GUARD_STATE_FILE) if pid is not None else {}
    found = state.get("components")
    components: dict[str, Any] = found if isinstance(found, dict) else {}
    respawns = {}
    for name in ("edge", "daemon"):
        entry = components.get(name)
        part: dict[str, Any] = entry if isinstance(entry, dict) else {}
        standby = state.get("standby")
        waiting = standby.get(name) if isinstance(standby, dict) else None
        respawns[name] = {
            "respawns": part.get("respawns", 0),
            "crash_loop": part.get("crash_loop", 0),
            "last_respawn_at": part.get("last_respawn_at"),
            "last_back_seconds": part.get("last_back_seconds"),
            "standby_ready": isinstance(waiting, dict) and waiting.get("ready") is True,
        }
    return {
        "pid": pid,
        "running": pid is not None,
        "components": respawns,
        "holds_edge_socket": state.get("holds_edge_socket") is True,
    }


def _standalone_status(
    paths: Paths, ports: Ports, alone: dict[str, Any], supervisor_kind: str
) -> dict[str, Any]:
    """Healthy: LLM calls are metered. The edge is not used (`healthy` null), not down."""
    port = alone["listen_port"]
    return {
        "state": STATES[HEALTHY],
        "exit_code": HEALTHY,
        "version": __version__,
        "supervisor": supervisor_kind,
        "note": f"{standalone_words(alone)} (`halton-meter init` sets up the always-on edge "
        "and the services, and takes over from it)",
        "mode": "metering",
        "ports": {**ports.as_dict(), "proxy_port": port},
        "rows_today": rows_today(paths),
        "components": {
            "edge": {"pid": None, "port": port, "healthy": None, "mode": None, "version": None},
            "daemon": {
                "pid": alone["pid"],
                "port": port,
                "healthy": True,
                "mode": "standalone",
                "version": alone.get("version"),
            },
        },
        "unmetered": _unmetered_today(paths, None),
        **_ledger_writes(paths, alone.get("api_port")),
        "reconcile": _reconciled(paths),  # a standalone daemon runs [reconcile] too
    }


# --- uninstall -------------------------------------------------------------------------------


# What `--purge` keeps unless `--include-logs`: the recorded calls and the logs.
_KEPT_ON_PURGE = ("db.sqlite", "db.sqlite-wal", "db.sqlite-shm", "logs")


def run_uninstall(
    paths: Paths,
    *,
    purge: bool = False,
    include_logs: bool = False,
    graceful: bool = False,
    user_home: Path | None = None,
) -> dict[str, Any]:
    """Stop both, remove units and shell blocks, put back what system_state.json recorded.

    `purge` also deletes the home's other files (config, bundle, ports, state); the ledger and
    logs go only with `include_logs` too. `graceful` leaves a running edge tunnelling (until it
    is stopped or the machine restarts), so shells that still have the proxy variables keep
    working."""
    user_home = user_home or Path.home()
    platform = this_os.platform(user_home)
    snapshot = _read_json(state_path(paths))
    to_stop = (DAEMON,) if graceful else (DAEMON, EDGE)
    stopped = [c.name for c in to_stop if running_pid(c, paths) is not None]
    # Services and their definitions; on Windows and macOS also the registry or launchctl
    # values and the CA's trust, as system_state.json recorded them.
    removed = platform.uninstall(paths, snapshot, graceful)
    BackgroundSupervisor().stop_all(to_stop, paths)  # both at once: nothing to keep up
    for script in sorted(paths.home.glob("bin/halton-meter-*")):  # uvx launchers (supervisor)
        script.unlink()
        removed.append(str(script))
    before = snapshot.get("shell_files", {})
    created = set((read_state(paths.home / CREATED_FILE) or {}).get("files", []))
    for path in shell.shell_files(user_home):
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        if not shell.has_block(text):
            continue
        rest = shell.without_block(text)
        existed = before.get(str(path), {}).get("existed", True) and str(path) not in created
        if not existed and not rest.strip():
            path.unlink()
        else:
            write_in_place(path, rest.encode())
        removed.append(f"{path} (env block)")
    if (statusline := agent_statusline.remove(paths.home)) is not None:
        removed.append(statusline)
    if snapshot and not snapshot.get("effective_ports_existed", True):
        effective_path(paths).unlink(missing_ok=True)
    state_path(paths).unlink(missing_ok=True)
    (paths.home / CREATED_FILE).unlink(missing_ok=True)
    if purge and paths.home.exists():
        if include_logs and not graceful:
            shutil.rmtree(paths.home)
            removed.append(str(paths.home))
        else:
            kept = set(_KEPT_ON_PURGE) if not include_logs else set()
            if graceful:  # the edge still runs from here: keep what it reads and writes
                kept |= {"config.toml", "effective-ports.json", EDGE_STATE_FILE, "edge.pid", "logs"}
            for entry in sorted(paths.home.iterdir()):
                if entry.name in kept:
                    continue
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(str(entry))
    return {"stopped": stopped, "removed": removed, "purged": purge}
