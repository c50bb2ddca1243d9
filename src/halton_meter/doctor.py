"""`halton-meter doctor`: every check of an installation, each failure with one fix to paste.

Verdict: HEALTHY (all pass), INCONSISTENT (traffic flows, but something drifted or metering is
off: re-running `init` or `start` fixes it), BROKEN (clients fail or nothing can be recorded).

`--fix` applies the safe repairs: ones that only restore what `init` would write or start (key
permissions, the CA bundle, an env block already in a file, a unit, a stopped edge or daemon).
It never stops another program, makes a new CA, or changes a file `init` did not write.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halton_meter.config import Config
from halton_meter.lifecycle import ca, shell, this_os
from halton_meter.lifecycle.environment import CA_VARIABLES
from halton_meter.lifecycle.install import (
    edge_status,
    ledger_problem,
    ledger_writer_status,
    ports_in_use,
    standalone_daemon,
    standalone_words,
    state_path,
)
from halton_meter.lifecycle.ports import (
    Ports,
    listening,
    port_free,
    read_effective,
)
from halton_meter.lifecycle.supervisor import (
    DAEMON,
    EDGE,
    Component,
    launcher,
    running_pid,
)
from halton_meter.paths import Paths
from halton_meter.runstate import write_atomic

OK, INCONSISTENT, BROKEN = "ok", "inconsistent", "broken"
VERDICTS = {OK: "HEALTHY", INCONSISTENT: "INCONSISTENT", BROKEN: "BROKEN"}
EXIT_CODES = {"HEALTHY": 0, "INCONSISTENT": 1, "BROKEN": 2}
LOW_DISK = 200 * 1024 * 1024  # below this the ledger may soon stop growing
NO_DISK = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    severity: str  # ok, inconsistent, broken
    detail: str
    fix: str | None = None
    # What `--fix` may do about it on its own (None: only the person can, with `fix`).
    repair: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "status": self.severity,
            "detail": self.detail,
            "fix": self.fix,
            "auto_fix": self.repair is not None,
        }


def _chmod_ca(folder: Path, key: Path) -> Callable[[], None]:
    def repair() -> None:
        os.chmod(folder, 0o700)
        os.chmod(key, 0o600)

    return repair


def _rebuild_bundle(config: Config, paths: Paths) -> Callable[[], None]:
    def repair() -> None:
        ca.write_client_bundle(config, paths)

    return repair


def _start(component: Component, paths: Paths, *, restart: bool = False) -> Callable[[], None]:
    def repair() -> None:
        supervisor = this_os.supervisor()
        if restart:
            supervisor.stop(component, paths)
        supervisor.start(component, paths)

    return repair


def _rewrite_block(path: Path, block: str) -> Callable[[], None]:
    def repair() -> None:
        write_atomic(path, shell.with_block(path.read_text(errors="replace"), block).encode())

    return repair


@dataclass(frozen=True, slots=True)
class Repair:
    check: str
    outcome: str  # "fixed" or "failed"
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "outcome": self.outcome, "detail": self.detail}


def apply_fixes(checks: list[Check]) -> list[Repair]:
    """Run every safe repair of a failed check: files first, then processes, edge first.
    "fixed" here only means the repair raised nothing: `fix_and_verify` checks it took."""
    order = {"edge": 1, "daemon": 2, "migrations": 3}
    failed = [c for c in checks if c.severity != OK and c.repair is not None]
    done = []
    for check in sorted(failed, key=lambda c: order.get(c.name, 0)):
        assert check.repair is not None
        try:
            check.repair()
        except Exception as error:  # one failed repair must not stop the others
            done.append(Repair(check.name, "failed", str(error)))
        else:
            done.append(Repair(check.name, "fixed", check.fix or ""))
    return done


def verified(repairs: list[Repair], after: list[Check]) -> list[Repair]:
    """A repair is "fixed" only when its check passes when run again; otherwise "failed",
    with what the check finds now (a start that returned is not a daemon that runs)."""
    now = {check.name: check for check in after}
    out = []
    for repair in repairs:
        check = now.get(repair.check)
        if repair.outcome == "fixed" and check is not None and check.severity != OK:
            out.append(Repair(repair.check, "failed", f"still {check.severity}: {check.detail}"))
        else:
            out.append(repair)
    return out


def fix_and_verify(
    config: Config, paths: Paths, checks: list[Check], user_home: Path | None = None
) -> tuple[list[Repair], list[Check]]:
    """`doctor --fix`: the safe repairs, then every check again; each repair's outcome is the
    one its check shows afterwards."""
    repairs = apply_fixes(checks)
    if not repairs:
        return [], checks
    after = run_checks(config, paths, user_home)
    return verified(repairs, after), after


def _init_fix(paths: Paths) -> str:
    prefix = f"HALTON_METER_HOME={shlex.quote(str(paths.home))} " if paths.home_overridden else ""
    return f"{prefix}{shlex.join(launcher())} init"


def run_checks(config: Config, paths: Paths, user_home: Path | None = None) -> list[Check]:
    user_home = user_home or Path.home()
    init = _init_fix(paths)
    checks: list[Check] = []
    add = checks.append

    # The CA and the bundle clients trust.
    cert, folder = ca.ca_cert_path(config, paths), ca.ca_dir(config, paths)
    key = folder / f"{ca.CA_BASENAME}-ca.pem"
    if not cert.exists() or not key.exists():
        add(Check("ca_files", BROKEN, f"the CA is missing in {folder}", init))
    else:
        add(Check("ca_files", OK, f"{cert}"))
        if os.name != "nt":
            loose = [
                f"{path} is {oct(path.stat().st_mode & 0o777)}"
                for path, mode in ((folder, 0o700), (key, 0o600))
                if path.stat().st_mode & 0o077
            ]
            if loose:
                fix = f"chmod 700 {shlex.quote(str(folder))} && chmod 600 {shlex.quote(str(key))}"
                detail = "; ".join(loose) + " (readable by others)"
                add(Check("ca_permissions", BROKEN, detail, fix, _chmod_ca(folder, key)))
            else:
                add(Check("ca_permissions", OK, "key 0600, folder 0700"))
    bundle = paths.ca_bundle
    rebuild = _rebuild_bundle(config, paths) if key.exists() else None
    if not bundle.exists():
        add(Check("ca_bundle", BROKEN, f"{bundle} is missing", init, rebuild))
    elif cert.exists() and cert.read_bytes().strip() not in bundle.read_bytes():
        add(Check("ca_bundle", BROKEN, f"{bundle} does not hold the meter's CA", init, rebuild))
    else:
        add(Check("ca_bundle", OK, f"{bundle} holds the meter's CA"))

    # Ports, and who holds them.
    ports = ports_in_use(config, paths)
    answer = edge_status(ports.proxy_port)
    alone = standalone_daemon(paths) if answer is None else None
    if read_effective(paths) is None:
        if alone is not None:  # a standalone daemon takes config.toml's ports
            add(Check("effective_ports", OK, "none: init never ran (not needed standalone)"))
        else:
            detail = "no effective-ports.json: init never ran"
            add(Check("effective_ports", INCONSISTENT, detail, init))
    if alone is not None:
        # `halton-meter daemon` in the foreground (./scripts/meter): a supported way to run.
        add(Check("edge", OK, f"not used: {standalone_words(alone)}"))
        detail = f"pid {alone['pid']} meters on 127.0.0.1:{alone['listen_port']} (standalone)"
        add(Check("daemon", OK, detail))
    else:
        checks.extend(_process_checks(paths, ports, answer, init))

    # What init wrote: shell blocks and units, against what it would write now.
    for path in shell.shell_files(user_home):
        text = path.read_text(errors="replace") if path.exists() else ""
        want_block = shell.block_for(path, ports.proxy_port, bundle)
        if shell.has_block(text) and shell.with_block(text, want_block) != text:
            add(
                Check(
                    f"env_block:{path.name}",
                    INCONSISTENT,
                    f"the block in {path} does not match the ports or CA bundle in use",
                    init,
                    _rewrite_block(path, want_block),
                )
            )
    # What init registered and published: units, tasks or agents; the OS trust store and the
    # published variables where the platform manages them (Windows, macOS).
    if state_path(paths).exists():
        checks.extend(_platform_checks(config, paths, ports, init, user_home))

    # The ledger, and whether the running daemon manages to write it.
    checks.extend(_ledger_checks(paths))
    daemon_pid = alone["pid"] if alone is not None else running_pid(DAEMON, paths)
    if daemon_pid is not None:
        problem = ledger_problem(ledger_writer_status(ports.api_port), paths)
        if problem is not None:
            add(Check("ledger_writes", BROKEN, problem[0], problem[1]))
    checks.extend(_cloud_checks(config, paths))

    # Stale variables in this environment.
    for variable in CA_VARIABLES:
        value = os.environ.get(variable)
        if value and not Path(value).exists():
            add(
                Check(
                    f"env:{variable}",
                    BROKEN,
                    f"{variable}={value} names a missing file: TLS fails in this shell",
                    f"unset {variable}  # or: {init}",
                )
            )
    return checks


def _process_checks(
    paths: Paths, ports: Ports, answer: dict[str, Any] | None, init: str
) -> list[Check]:
    """The edge answers on the proxy port and the daemon listens behind it."""
    found: list[Check] = []
    add = found.append
    edge_pid = running_pid(EDGE, paths)
    if answer is not None and answer.get("pid") == edge_pid:
        add(Check("edge", OK, f"pid {edge_pid} answers on 127.0.0.1:{ports.proxy_port}"))
    elif not port_free(ports.proxy_port) and answer is None:
        add(
            Check(
                "edge",
                BROKEN,
                f"127.0.0.1:{ports.proxy_port} is held by another program, not our edge",
                f"ss -ltnp 'sport = :{ports.proxy_port}'  # stop it, then: {init}",
            )
        )
    else:
        detail = f"nothing answers on 127.0.0.1:{ports.proxy_port}"
        add(Check("edge", BROKEN, detail, init, _start(EDGE, paths)))
    daemon_pid = running_pid(DAEMON, paths)
    if daemon_pid is not None and listening(ports.internal_port):
        add(Check("daemon", OK, f"pid {daemon_pid} listens on 127.0.0.1:{ports.internal_port}"))
    elif daemon_pid is None and not port_free(ports.internal_port):
        add(
            Check(
                "daemon",
                INCONSISTENT,
                f"127.0.0.1:{ports.internal_port} is held by another program: nothing is metered",
                f"ss -ltnp 'sport = :{ports.internal_port}'  # stop it, then: {init}",
            )
        )
    else:
        start = init.removesuffix(" init") + " start"
        detail = "the daemon is down: traffic is not metered"
        add(Check("daemon", INCONSISTENT, detail, start, _start(DAEMON, paths)))
    return found


def _platform_checks(
    config: Config, paths: Paths, ports: Ports, init: str, user_home: Path
) -> list[Check]:
    platform = this_os.platform(user_home)
    found: list[Check] = []
    command = launcher()
    for component, (path, want) in platform.definitions(command, paths).items():
        name = f"{platform.wording.check_prefix}:{platform.definition_name(component)}"
        on_disk = path.read_bytes() if path.exists() else None
        target = platform.command_of(on_disk) if on_disk is not None else None
        if on_disk is None:
            detail = f"{path} is missing"
            found.append(Check(name, INCONSISTENT, detail, init, platform.rewrite(path, want)))
        elif target is not None and not Path(target).exists():
            detail = f"{path} runs {target}, which no longer exists (upgraded or moved?)"
            found.append(Check(name, INCONSISTENT, detail, init))
        elif on_disk != want:
            detail = f"{path} does not run this halton-meter ({command[0]})"
            found.append(Check(name, INCONSISTENT, detail, init, platform.rewrite(path, want)))
        elif (problem := platform.definition_problem(component)) is not None:
            found.append(Check(name, INCONSISTENT, problem, init))
        else:
            found.append(Check(name, OK, f"runs {target or command[0]}"))
    cert = ca.ca_cert_path(config, paths)
    trusted = platform.trusted(cert) if cert.exists() else None
    if trusted is True:
        found.append(Check("ca_trust", OK, "the OS trust store trusts the meter's CA"))
    elif trusted is False:
        detail = "the OS trust store does not trust the meter's CA (apps using it fail TLS)"
        found.append(Check("ca_trust", INCONSISTENT, detail, init))
    if platform.is_published(paths):
        drift = platform.published_drift(ports, paths.ca_bundle)
        if drift:
            detail = f"published variables differ from the ports or bundle in use: {drift}"
            found.append(Check("published", INCONSISTENT, detail, f"{init} --apps"))
        else:
            found.append(Check("published", OK, "proxy and CA variables current"))
    return found


def _ledger_checks(paths: Paths) -> list[Check]:
    from halton_meter.ledger.schema import LATEST_VERSION, schema_version

    checks = []
    ledger = paths.ledger
    if ledger.exists():
        try:
            con = sqlite3.connect(ledger, timeout=5, isolation_level=None)
            try:
                version = schema_version(con)
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
            finally:
                con.close()
        except sqlite3.Error as error:
            checks.append(
                Check(
                    "ledger",
                    BROKEN,
                    f"{ledger} cannot be written: {error}",
                    f"ls -l {shlex.quote(str(ledger))}*  # make it writable by you",
                )
            )
        else:
            if version < LATEST_VERSION:
                checks.append(
                    Check(
                        "migrations",
                        INCONSISTENT,
                        f"ledger at migration {version}, this release has {LATEST_VERSION}",
                        "halton-meter restart  # the daemon migrates on start",
                        _start(DAEMON, paths, restart=True),
                    )
                )
            else:
                checks.append(Check("migrations", OK, f"migration {version}"))
            checks.append(Check("ledger", OK, f"{ledger} is writable"))
    elif not os.access(paths.home if paths.home.exists() else paths.home.parent, os.W_OK):
        fix = f"chmod u+w {shlex.quote(str(paths.home))}"
        checks.append(Check("ledger", BROKEN, f"{paths.home} is not writable", fix))
    if paths.home.exists():
        free = shutil.disk_usage(paths.home).free
        megabytes = free // (1024 * 1024)
        if free < LOW_DISK:
            checks.append(
                Check(
                    "disk",
                    BROKEN if free < NO_DISK else INCONSISTENT,
                    f"{megabytes} MB free where the ledger lives",
                    f"df -h {shlex.quote(str(paths.home))}  # free some space",
                )
            )
        else:
            checks.append(Check("disk", OK, f"{megabytes} MB free"))
    return checks


def _cloud_checks(config: Config, paths: Paths) -> list[Check]:
    """Only for a machine paired with a team server: is the sync moving? Never BROKEN: the
    local ledger is the source of truth and keeps every row until the server takes it."""
    from halton_meter.cloud import sync
    from halton_meter.cloud.credentials import credentials_path

    if not paths.ledger.exists() or not credentials_path(paths).exists():
        return []
    try:
        con = sqlite3.connect(f"{paths.ledger.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            state = sync.status(paths, con, config.cloud)
        finally:
            con.close()
    except sqlite3.Error as error:
        return [Check("cloud", INCONSISTENT, f"cannot read the sync state: {error}")]
    waiting = f"{state['unsynced_rows']} rows wait to be sent to {state['server']}"
    if state["state"] == sync.PAUSED:
        reason = state["pause_reason"]
        fix = (
            pair_again_command(state) + "  # pair again"
            if str(reason).startswith(("unauthorised", "forbidden"))
            else "halton-meter cloud resume"
        )
        return [Check("cloud", INCONSISTENT, f"sync paused ({reason}); {waiting}", fix)]
    if state["state"] == sync.DEGRADED:
        detail = f"the last sync failed: {state['last_error']}; {waiting}"
        return [Check("cloud", INCONSISTENT, detail, "halton-meter cloud sync  # try once now")]
    if state["state"] == sync.NOT_CONFIGURED:  # the credentials file is unreadable
        detail = f"cloud-credentials.json cannot be used: {state['last_error']}"
        fix = "halton-meter cloud disconnect && halton-meter cloud connect --server URL"
        return [Check("cloud", INCONSISTENT, detail, fix)]
    return [Check("cloud", OK, f"syncing to {state['server']}; {state['unsynced_rows']} unsent")]


def pair_again_command(state: dict[str, object]) -> str:
    """The `cloud connect` that pairs this machine again where it was: same server, workspace
    and name (pasted as printed, it must not land the machine in another workspace)."""
    words = ["halton-meter", "cloud", "connect", "--server", str(state["server"])]
    if state.get("workspace"):
        words += ["--workspace", str(state["workspace"])]
    if state.get("machine"):
        words += ["--name", str(state["machine"])]
    return shlex.join(words)


def verdict(checks: list[Check]) -> str:
    severities = {check.severity for check in checks}
    worst = BROKEN if BROKEN in severities else INCONSISTENT if INCONSISTENT in severities else OK
    return VERDICTS[worst]
