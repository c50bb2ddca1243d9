"""The contract of what differs between Linux, Windows and macOS in `init`, `uninstall` and
`doctor`: one small object per OS, so that install.py's steps, rollback, `--clean`, restart
decisions and uninstall exist once.

linux.py (systemd --user units or background processes, shell blocks), windows.py (Task
Scheduler, the user Root store, HKCU) and macos.py (LaunchAgents, the login keychain,
launchctl env and shell blocks) implement `Platform`; the last two share native.py and reach
the system only through boundary.py. this_os.py picks the running OS's one (the only module
that imports them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from halton_meter.config import Config
from halton_meter.lifecycle.ports import Ports
from halton_meter.lifecycle.supervisor import Component, Supervisor
from halton_meter.paths import Paths

Write = Callable[[Path, bytes], bool]  # init's write: only when the content changes, undoable
Confirm = Callable[[str], bool]  # a yes/no question to the person running init


class Wording(NamedTuple):
    """How init's steps and doctor's checks name this OS's things."""

    published: str  # the shell step's detail, `{}` what changed
    current: str  # ... when nothing had to change
    skipped: str  # ... when variables are not published
    registered: str  # the units step's detail, `{}` the definitions written or registered
    check_prefix: str  # doctor's check of a definition is named `<prefix>:<name>`
    # Whether what `publish` reports also goes into init's `written` (registry and launchctl
    # values are not files, so the files' list alone would not show them).
    records_published: bool


class Platform(Protocol):
    kind: str  # the supervisor, as `status` and `init --json` show it
    wording: Wording

    @property
    def supervisor(self) -> Supervisor:
        """What starts and stops the components on this OS."""
        ...

    def snapshot(self, state: dict[str, Any], config: Config, paths: Paths) -> dict[str, Any]:
        """system_state.json's content: `state` (what every OS records) and this OS's part."""
        ...

    def trust_ca(self, cert: Path) -> bool | None:
        """Add the CA to the OS trust store if it lacks it: True when added, None when the
        OS's store is not ours to manage (Linux: the client bundle is the trust)."""
        ...

    def trusted(self, cert: Path) -> bool | None: ...

    def is_published(self, paths: Paths) -> bool:
        """A previous `init --apps` published the variables: a plain init keeps them current."""
        ...

    def publish(self, ports: Ports, bundle: Path, paths: Paths, write: Write) -> list[str]:
        """Publish the proxy and CA variables; what changed (for the step's detail)."""
        ...

    def published_drift(self, ports: Ports, bundle: Path) -> list[str]: ...

    def definitions(self, launch: list[str], paths: Paths) -> dict[Component, tuple[Path, bytes]]:
        """Each component's service definition (unit, task XML, plist): its file and content."""
        ...

    def definition_name(self, component: Component) -> str: ...

    def register(
        self, definitions: dict[Component, tuple[Path, bytes]], rewritten: dict[Component, bool]
    ) -> list[Component]:
        """Make the service manager see the definitions; the ones that changed."""
        ...

    def restart_for(
        self, component: Component, paths: Paths, command: list[str], changed: bool
    ) -> bool:
        """Whether a running component must restart (beyond its ports and version): its
        definition `changed`, or it runs another command."""
        ...

    def restart(self, component: Component, paths: Paths) -> None:
        """Restart a running component: stop, then start, or without a gap where the
        supervisor can (a background edge hands its listening socket to its successor)."""
        ...

    def started_by_registration(self, component: Component) -> None:
        """Registering started it: ask the service manager to start it all the same (a no-op
        for a running job), so what init runs does not depend on how fast it came up."""
        ...

    def supervision(self, confirm: Confirm | None) -> str:
        """How the processes are kept running, for the start step's detail."""
        ...

    def rollback(self, restored: list[str]) -> None:
        """Undo what this run did outside the files (`restored`: the files put back)."""
        ...

    def uninstall(self, paths: Paths, snapshot: dict[str, Any], graceful: bool) -> list[str]:
        """Stop and unregister the services (the edge stays up when `graceful`), remove the
        definitions, put back what the OS part of `snapshot` recorded; what it removed."""
        ...

    def command_of(self, content: bytes) -> str | None:
        """The executable a definition runs, when doctor should check it still exists."""
        ...

    def definition_problem(self, component: Component) -> str | None:
        """Doctor: why a current definition is not in effect (e.g. not registered)."""
        ...

    def rewrite(self, path: Path, content: bytes) -> Callable[[], None] | None:
        """Doctor --fix: rewriting a definition, when that alone repairs it."""
        ...
