"""The Windows and macOS boundary this Linux machine lacks: an in-memory HKCU registry and
recorders of schtasks / certutil / launchctl / security that keep the state those tools would.

They are deliberately small emulators, not stubs: `schtasks /Run` and `launchctl bootstrap`
or `kickstart` start the real process that the registered XML or plist names (its
`<Command>` + `<Arguments>`, its `ProgramArguments` + `EnvironmentVariables`), so a wrong path
or argument in what init wrote fails the test; `/End` kills it hard (TerminateProcess),
`bootout` sends SIGTERM. Trust stores are sets of SHA-1 thumbprints.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import plistlib
import shlex
import signal
import ssl
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from halton_meter.lifecycle.boundary import Completed, RegistryValue

TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
# Never handed to a supervised process: the test's own switches and proxies.
_DROPPED = ("HALTON_METER_OS", "HALTON_METER_HOME", "HALTON_METER_SUPERVISOR")


def sha1_of(cert: Path) -> str:
    return hashlib.sha1(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest().upper()


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _DROPPED and not k.lower().endswith("_proxy")
    }
    env.update(extra or {})
    return env


def _spawn(
    argv: list[str], env: dict[str, str], log: str | None, cwd: str | None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def _end(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(OSError):
        process.send_signal(sig)
    try:
        process.wait(timeout=25)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Recorder:
    commands: list[list[str]] = field(default_factory=list)

    def since(self, mark: int) -> list[list[str]]:
        return self.commands[mark:]


@dataclass
class FakeWindows(Recorder):
    """HKCU as a dict (names case-insensitive, as on Windows), plus Task Scheduler and the
    user's Root store."""

    user: str = "HALTON\\dev"
    registry: dict[tuple[str, str], tuple[str, RegistryValue]] = field(default_factory=dict)
    writes: list[tuple[str, str, str, RegistryValue | None]] = field(default_factory=list)
    broadcasts: int = 0
    refreshes: int = 0
    root_store: set[str] = field(default_factory=set)
    tasks: dict[str, str] = field(default_factory=dict)  # name -> registered XML text
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    refuse_trust: bool = False  # the user answers No in certutil's dialog

    # --- the registry ---
    def user_id(self) -> str:
        return self.user

    def read_value(self, key: str, name: str) -> RegistryValue | None:
        found = self.registry.get((key.lower(), name.lower()))
        return found[1] if found else None

    def write_value(self, key: str, name: str, value: RegistryValue) -> None:
        self.registry[(key.lower(), name.lower())] = (name, value)
        self.writes.append(("write", key, name, value))

    def delete_value(self, key: str, name: str) -> None:
        if self.registry.pop((key.lower(), name.lower()), None) is not None:
            self.writes.append(("delete", key, name, None))

    def values(self, key: str) -> dict[str, RegistryValue]:
        return {name: value for (k, _), (name, value) in self.registry.items() if k == key.lower()}

    def broadcast_environment(self) -> None:
        self.broadcasts += 1

    def refresh_internet_settings(self) -> None:
        self.refreshes += 1

    # --- schtasks and certutil ---
    def run(self, argv: Sequence[str]) -> Completed:
        args = list(argv)
        self.commands.append(args)
        tool, rest = args[0], args[1:]
        if tool == "schtasks":
            return self._schtasks(rest)
        if tool == "certutil":
            return self._certutil(rest)
        return Completed(127, "", f"{tool}: not found")

    def _schtasks(self, args: list[str]) -> Completed:
        verb = args[0]
        name = args[args.index("/TN") + 1]
        if verb == "/Create":
            xml = Path(args[args.index("/XML") + 1]).read_bytes()
            assert xml[:2] == b"\xff\xfe", "task XML must be UTF-16 LE with a BOM"
            text = xml[2:].decode("utf-16-le")
            ET.fromstring(text.split("?>", 1)[1])  # well-formed, or schtasks would refuse it
            self.tasks[name] = text
            return Completed(
                0, f'SUCCESS: The scheduled task "{name}" has successfully been created.'
            )
        if name not in self.tasks:
            return Completed(1, "", "ERROR: The system cannot find the file specified.")
        if verb == "/Query":
            return Completed(0, f"{name}  Ready")
        if verb == "/Run":
            running = self.processes.get(name)
            if running is None or running.poll() is not None:  # IgnoreNew
                root = ET.fromstring(self.tasks[name].split("?>", 1)[1])
                command = root.findtext("t:Actions/t:Exec/t:Command", namespaces=TASK_NS)
                arguments = root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=TASK_NS)
                cwd = root.findtext("t:Actions/t:Exec/t:WorkingDirectory", namespaces=TASK_NS)
                assert command is not None and os.path.isabs(command), command
                argv = [command, *shlex.split(arguments or "")]
                self.processes[name] = _spawn(argv, _clean_env(), None, cwd)
            return Completed(0, "SUCCESS: Attempted to run the scheduled task.")
        if verb == "/End":
            _end(self.processes.pop(name, None), signal.SIGKILL)  # TerminateProcess
            return Completed(0, "SUCCESS: The scheduled task was terminated.")
        if verb == "/Delete":
            del self.tasks[name]  # a running instance keeps running
            return Completed(0, "SUCCESS: The scheduled task was successfully deleted.")
        return Completed(1, "", f"unknown verb {verb}")

    def _certutil(self, args: list[str]) -> Completed:
        assert args[:1] == ["-user"], "only the current user's store: no admin"
        verb, store, what = args[1], args[2], args[3]
        assert store == "Root"
        if verb == "-store":
            found = what in self.root_store
            return Completed(0 if found else 0x80092004 & 0xFF, "", "" if found else "Not found")
        if verb == "-addstore":
            if self.refuse_trust:
                return Completed(
                    0x800704C7 & 0xFF, "", "CertUtil: The operation was canceled by the user."
                )
            self.root_store.add(sha1_of(Path(what)))
            return Completed(0, "Certificate added to store.")
        if verb == "-delstore":
            self.root_store.discard(what)
            return Completed(0, "Deleting Certificate")
        return Completed(1, "", f"unknown verb {verb}")

    def stop_all(self) -> None:
        for name in list(self.processes):
            _end(self.processes.pop(name), signal.SIGKILL)


@dataclass
class FakeMac(Recorder):
    """launchd's gui/<uid> domain (loaded jobs, their processes, the user environment) and
    the login keychain's trust settings."""

    user_id: int = 501
    home: Path = Path("/nonexistent")
    loaded: dict[str, dict[str, object]] = field(default_factory=dict)  # label -> plist
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    trusted: set[str] = field(default_factory=set)

    def uid(self) -> int:
        return self.user_id

    def run(self, argv: Sequence[str]) -> Completed:
        args = list(argv)
        self.commands.append(args)
        if args[0] == "launchctl":
            return self._launchctl(args[1:])
        if args[0] == "security":
            return self._security(args[1:])
        return Completed(127, "", f"{args[0]}: not found")

    def _label(self, target: str) -> str:
        domain, _, label = target.rpartition("/")
        assert domain == f"gui/{self.user_id}", target
        return label

    def _start(self, label: str) -> None:
        job = self.loaded[label]
        running = self.processes.get(label)
        if running is not None and running.poll() is None:
            return
        argv = [str(a) for a in job["ProgramArguments"]]  # type: ignore[attr-defined]
        assert os.path.isabs(argv[0]), argv
        base = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(self.home)}
        env = {**base, **job.get("EnvironmentVariables", {})}  # type: ignore[dict-item]
        for name in ("HALTON_METER_SUPERVISOR",):
            env.pop(name, None)
        log = job.get("StandardErrorPath")
        cwd = job.get("WorkingDirectory")
        self.processes[label] = _spawn(
            argv, env, str(log) if log else None, str(cwd) if cwd else None
        )

    def _launchctl(self, args: list[str]) -> Completed:
        verb = args[0]
        if verb == "bootstrap":
            assert args[1] == f"gui/{self.user_id}"
            job = plistlib.loads(Path(args[2]).read_bytes())
            label = job["Label"]
            if label in self.loaded:
                return Completed(5, "", "Bootstrap failed: 5: Input/output error")
            self.loaded[label] = job
            if job.get("RunAtLoad") or job.get("KeepAlive"):
                self._start(label)
            return Completed(0)
        if verb == "print":
            label = self._label(args[1])
            return (
                Completed(0, f"{label} = {{...}}")
                if label in self.loaded
                else Completed(
                    113,
                    "",
                    f'Could not find service "{label}" in domain for user gui: {self.user_id}',
                )
            )
        if verb == "kickstart":
            kill = "-k" in args
            label = self._label(args[-1])
            if label not in self.loaded:
                return Completed(113, "", "Could not find service")
            if kill:
                _end(self.processes.pop(label, None), signal.SIGTERM)
            self._start(label)
            return Completed(0)
        if verb == "bootout":
            label = self._label(args[1])
            if label not in self.loaded:
                return Completed(3, "", "Boot-out failed: 3: No such process")
            del self.loaded[label]
            _end(self.processes.pop(label, None), signal.SIGTERM)
            return Completed(0)
        if verb == "getenv":
            return Completed(0, self.environment.get(args[1], "") + "\n")
        if verb == "setenv":
            self.environment[args[1]] = args[2]
            return Completed(0)
        if verb == "unsetenv":
            self.environment.pop(args[1], None)
            return Completed(0)
        return Completed(1, "", f"unknown verb {verb}")

    def _security(self, args: list[str]) -> Completed:
        verb = args[0]
        if verb == "verify-cert":
            cert = Path(args[args.index("-c") + 1])
            ok = sha1_of(cert) in self.trusted
            return (
                Completed(0, "...certificate verification successful.")
                if ok
                else Completed(1, "", "Cert Verify Result: CSSMERR_TP_NOT_TRUSTED")
            )
        if verb == "add-trusted-cert":
            assert args[1:3] == ["-r", "trustRoot"] and args[3] == "-k"
            assert args[4].endswith("login.keychain-db"), "the user's login keychain, no sudo"
            self.trusted.add(sha1_of(Path(args[5])))
            return Completed(0)
        if verb == "remove-trusted-cert":
            self.trusted.discard(sha1_of(Path(args[1])))
            return Completed(0)
        if verb == "delete-certificate":
            return Completed(0)
        return Completed(1, "", f"unknown verb {verb}")

    def stop_all(self) -> None:
        for label in list(self.processes):
            _end(self.processes.pop(label), signal.SIGKILL)
