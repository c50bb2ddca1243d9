"""macOS: LaunchAgents in ~/Library/LaunchAgents, the login keychain, launchctl's user env.

- `com.haltonmeter.edge` (RunAtLoad + KeepAlive: always on, back after a crash or a login)
  and `com.haltonmeter.daemon` (neither: any KeepAlive implies RunAtLoad, and the daemon is
  started by `init` and `start`). `ProgramArguments[0]` is the absolute path of the running
  `halton-meter`, so an `init` after an upgrade rewrites the plist and reloads the agent.
- Only the modern verbs, in the GUI domain `gui/<uid>`: `launchctl bootstrap` (load),
  `kickstart` (start), `bootout` (stop and unload), `print` (is it loaded?).
- The CA is trusted with `security add-trusted-cert -r trustRoot -k login.keychain-db` (one
  password prompt) only when `security verify-cert` says it is not trusted yet.
- `--apps`: `launchctl setenv` for GUI apps started from now on, a one-shot login agent that
  sets them again at each login (launchctl's environment lasts one session), and the marked
  block in ~/.zshrc (the default shell) and the other shell files.
"""

from __future__ import annotations

import plistlib
import shlex
from functools import partial
from pathlib import Path
from typing import Any

from halton_meter.config import Config
from halton_meter.lifecycle import shell
from halton_meter.lifecycle.boundary import MacSystem
from halton_meter.lifecycle.ca import thumbprint
from halton_meter.lifecycle.environment import (
    CA_VARIABLES,
    PROXY_VARIABLES,
    meter_environment,
    without_credentials,
)
from halton_meter.lifecycle.native import WORDING, NativePlatform
from halton_meter.lifecycle.platforms import Write
from halton_meter.lifecycle.ports import Ports
from halton_meter.lifecycle.supervisor import COMPONENTS, DAEMON, EDGE, Component, SupervisorError
from halton_meter.paths import HOME_ENV, Paths
from halton_meter.runstate import STOP_TIMEOUT

KIND = "launchd"
LABELS = {EDGE: "com.haltonmeter.edge", DAEMON: "com.haltonmeter.daemon"}
ENVIRONMENT_LABEL = "com.haltonmeter.environment"
ENV_NAMES = (*PROXY_VARIABLES, "NO_PROXY", "no_proxy", *CA_VARIABLES, "NODE_USE_ENV_PROXY")
EDGE_THROTTLE = 2  # seconds between respawns of a crashed edge (launchd's default is 10)


class MacSetupError(RuntimeError):
    """A macOS step failed; the message says which command and why."""


def agent_dir(user_home: Path) -> Path:
    return user_home / "Library" / "LaunchAgents"


def login_keychain(user_home: Path) -> Path:
    return user_home / "Library" / "Keychains" / "login.keychain-db"


def plist_path(user_home: Path, label: str) -> Path:
    return agent_dir(user_home) / f"{label}.plist"


def agent(component: Component, launch: list[str], paths: Paths) -> dict[str, Any]:
    log = str(component.output_file(paths))
    job: dict[str, Any] = {
        "Label": LABELS[component],
        "ProgramArguments": [*launch, *component.args],
        "WorkingDirectory": str(paths.home),
        "StandardOutPath": log,
        "StandardErrorPath": log,
        # SIGKILL after this, not launchd's default 20 s: a draining daemon finishes its calls.
        "ExitTimeOut": int(STOP_TIMEOUT),
    }
    if component is EDGE:
        job |= {"RunAtLoad": True, "KeepAlive": True, "ThrottleInterval": EDGE_THROTTLE}
    if paths.home_overridden:
        job["EnvironmentVariables"] = {HOME_ENV: str(paths.home)}
    return job


def environment_agent(env: dict[str, str]) -> dict[str, Any]:
    """Runs once at each login: `launchctl setenv` for each published variable."""
    script = "; ".join(
        shlex.join(["/bin/launchctl", "setenv", name, env[name]]) for name in ENV_NAMES
    )
    return {
        "Label": ENVIRONMENT_LABEL,
        "ProgramArguments": ["/bin/sh", "-c", script],
        "RunAtLoad": True,
    }


def shell_files(user_home: Path) -> list[Path]:
    """zsh is the default shell and does not read ~/.profile: ~/.zshrc always."""
    files = shell.shell_files(user_home)
    zshrc = user_home / ".zshrc"
    return files if zshrc in files else [zshrc, *files]


class MacPlatform(NativePlatform):
    """The macOS Platform: what `init`, `uninstall`, `start`/`stop` and `doctor` do differently
    here, above the boundary."""

    os_name = "macos"
    kind = KIND
    wording = WORDING._replace(check_prefix=KIND)
    untrusted = "the CA's trust in the login keychain"

    def __init__(self, system: MacSystem, user_home: Path) -> None:
        self.system = system
        self.user_home = user_home
        self.domain = f"gui/{system.uid()}"
        super().__init__()

    def _target(self, label: str) -> str:
        return f"{self.domain}/{label}"

    def _launchctl(self, *args: str, check: bool = True) -> str:
        done = self.system.run(["launchctl", *args])
        if check and not done.ok:
            raise MacSetupError(
                f"`launchctl {' '.join(args)}` failed: {(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def loaded(self, label: str) -> bool:
        return self.system.run(["launchctl", "print", self._target(label)]).ok

    def getenv(self, name: str) -> str | None:
        done = self.system.run(["launchctl", "getenv", name])
        value = done.stdout.rstrip("\n")
        return value if done.ok and value else None

    # --- the state before the first init --------------------------------------------------

    def snapshot(self, state: dict[str, Any], config: Config, paths: Paths) -> dict[str, Any]:
        """Also ~/.zshrc, which the block goes into even when it does not exist yet."""
        files = {
            str(path): {"existed": path.exists(), "had_block": False}
            for path in shell_files(self.user_home)
        }
        state = state | {"shell_files": files | state.get("shell_files", {})}
        return super().snapshot(state, config, paths)

    def capture_state(self, cert: Path, paths: Paths) -> dict[str, Any]:
        environment = {}
        secret = []
        for name in ENV_NAMES:
            value = self.getenv(name)
            environment[name] = without_credentials(value)
            if environment[name] != value:
                secret.append(name)  # restored by unsetenv: never written to disk
        return {
            "launchctl_environment": environment,
            "credentials_not_kept": secret,
            "ca_trusted": self.trusted(cert),
            "agents": {
                label: plist_path(self.user_home, label).exists()
                for label in (*LABELS.values(), ENVIRONMENT_LABEL)
            },
        }

    # --- the CA ---------------------------------------------------------------------------

    def trusted(self, cert: Path) -> bool:
        return self.system.run(["security", "verify-cert", "-c", str(cert)]).ok

    def add_trust(self, cert: Path) -> None:
        """One password prompt."""
        keychain = str(login_keychain(self.user_home))
        done = self.system.run(
            ["security", "add-trusted-cert", "-r", "trustRoot", "-k", keychain, str(cert)]
        )
        if not done.ok:
            raise MacSetupError(
                f"`security add-trusted-cert -r trustRoot -k {keychain} {cert}` failed "
                f"(from SSH the password prompt cannot appear): {done.stderr.strip()}"
            )

    def untrust(self, cert: Path) -> None:
        self.system.run(["security", "remove-trusted-cert", str(cert)])
        keychain = str(login_keychain(self.user_home))
        self.system.run(["security", "delete-certificate", "-Z", thumbprint(cert), keychain])

    # --- published variables --------------------------------------------------------------

    def wanted_environment(self, ports: Ports, bundle: Path) -> dict[str, str]:
        current = self.getenv("NO_PROXY")
        env = meter_environment({"NO_PROXY": current} if current else {}, ports.proxy_port, bundle)
        return {name: env[name] for name in ENV_NAMES}

    def is_published(self, paths: Paths) -> bool:
        """A previous `init --apps` left its block in a shell file."""
        return any(
            path.exists() and shell.has_block(path.read_text(errors="replace"))
            for path in shell_files(self.user_home)
        )

    def publish(self, ports: Ports, bundle: Path, paths: Paths, write: Write) -> list[str]:
        wanted = self.wanted_environment(ports, bundle)
        changed = []
        for name, value in wanted.items():
            before = self.getenv(name)
            if before == value:
                continue
            self._launchctl("setenv", name, value)
            self.undo_later(partial(self._putenv, name, before))
            changed.append(f"launchctl {name}")
        login = plist_path(self.user_home, ENVIRONMENT_LABEL)
        if write(login, plistlib.dumps(environment_agent(wanted))):
            changed.append(login.name)
        changed += shell.write_blocks(shell_files(self.user_home), ports.proxy_port, bundle, write)
        return changed

    def _putenv(self, name: str, value: str | None) -> None:
        if value is None:
            self._launchctl("unsetenv", name, check=False)
        else:
            self._launchctl("setenv", name, value, check=False)

    # --- agents ---------------------------------------------------------------------------

    def definitions(self, launch: list[str], paths: Paths) -> dict[Component, tuple[Path, bytes]]:
        return {
            component: (
                plist_path(self.user_home, LABELS[component]),
                plistlib.dumps(agent(component, launch, paths)),
            )
            for component in COMPONENTS
        }

    def register_one(self, component: Component, path: Path, changed: bool) -> bool:
        """(Re)load the agent when its plist changed or it is not loaded: launchd reads a
        plist only at bootstrap. True when it did (the edge starts then: RunAtLoad)."""
        label = LABELS[component]
        was_loaded = self.loaded(label)
        if was_loaded and not changed:
            return False
        if was_loaded:
            self._launchctl("bootout", self._target(label), check=False)
        self._launchctl("bootstrap", self.domain, str(path))

        def undo() -> None:  # after the file itself was put back
            self._launchctl("bootout", self._target(label), check=False)
            if path.exists() and was_loaded:
                self._launchctl("bootstrap", self.domain, str(path), check=False)

        self.undo_later(undo)
        return True

    # --- supervision ----------------------------------------------------------------------

    def start(self, component: Component) -> None:
        label = LABELS[component]
        path = plist_path(self.user_home, label)
        try:
            if not self.loaded(label):
                if not path.exists():
                    raise MacSetupError(f"{path} is missing")
                self._launchctl("bootstrap", self.domain, str(path))
            self._launchctl("kickstart", self._target(label))
        except MacSetupError as error:
            raise SupervisorError(f"{error}. Run `halton-meter init`.") from error

    def stop(self, component: Component) -> None:
        """bootout: SIGTERM (the daemon writes its pending rows), then unload."""
        self._launchctl("bootout", self._target(LABELS[component]), check=False)

    # --- uninstall ------------------------------------------------------------------------

    def remove(self, paths: Paths, snapshot: dict[str, Any], graceful: bool) -> list[str]:
        removed = []
        for component in COMPONENTS:
            label = LABELS[component]
            # Graceful: the edge stays loaded (and tunnelling) until logout; its plist goes,
            # so it does not come back at the next login.
            if not (graceful and component is EDGE) and self.loaded(label):
                self.stop(component)
                removed.append(f"agent {label}")
        for label in (*LABELS.values(), ENVIRONMENT_LABEL):
            path = plist_path(self.user_home, label)
            if path.exists():
                path.unlink()
                removed.append(str(path))
        before: dict[str, Any] = snapshot.get("macos", {})
        if before:
            secret = set(before.get("credentials_not_kept", []))
            for name, value in before.get("launchctl_environment", {}).items():
                original = None if name in secret else value
                if self.getenv(name) != original:
                    self._putenv(name, original)
                    removed.append(f"launchctl {name} (restored)")
        return removed

    # --- doctor ---------------------------------------------------------------------------

    def definition_problem(self, component: Component) -> str | None:
        label = LABELS[component]
        return None if self.loaded(label) else f"agent {label} is not loaded in {self.domain}"

    def published_drift(self, ports: Ports, bundle: Path) -> list[str]:
        return [
            f"launchctl {name}"
            for name, value in self.wanted_environment(ports, bundle).items()
            if self.getenv(name) != value
        ]

    def command_of(self, content: bytes) -> str | None:
        try:
            arguments = plistlib.loads(content).get("ProgramArguments")
        except (ValueError, plistlib.InvalidFileException):
            return None
        return str(arguments[0]) if isinstance(arguments, list) and arguments else None
