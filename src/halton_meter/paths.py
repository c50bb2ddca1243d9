"""Where Halton Meter keeps its state: one home folder, overridable for tests and power users."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from halton_meter.runstate import DAEMON_STATE_FILE

HOME_ENV = "HALTON_METER_HOME"


@dataclass(frozen=True, slots=True)
class Paths:
    """Every file the meter reads or writes, derived from the home folder."""

    home: Path
    # True when HALTON_METER_HOME chose the home: the CA then lives inside it too, so a test or a
    # second install never touches the user's real ~/.mitmproxy.
    home_overridden: bool

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    @property
    def ledger(self) -> Path:
        return self.home / "db.sqlite"

    @property
    def bodies(self) -> Path:
        """Captured bodies of the projects that opted in (bodies/store.py); absent otherwise."""
        return self.home / "bodies.sqlite"

    @property
    def ca_bundle(self) -> Path:
        return self.home / "ca-bundle.pem"

    @property
    def daemon_state(self) -> Path:
        """Written by a running daemon: its pid and the ports it listens on (runstate.py)."""
        return self.home / DAEMON_STATE_FILE

    @property
    def api_token(self) -> Path:
        """The per-install secret that state-changing API calls must present (0600)."""
        return self.home / "api-token"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def default_ca_dir(self) -> Path:
        """mitmproxy's own folder, as the user's upgrade page promises; under the home when
        HALTON_METER_HOME is set."""
        if self.home_overridden:
            return self.home / "mitmproxy"
        return Path.home() / ".mitmproxy"


def resolve_paths() -> Paths:
    override = os.environ.get(HOME_ENV)
    if override:
        return Paths(home=Path(override).expanduser().absolute(), home_overridden=True)
    return Paths(home=Path.home() / ".halton-meter", home_overridden=False)


def ensure_home(paths: Paths) -> None:
    """Create the home folder (private: it holds the ledger) and its logs folder."""
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(exist_ok=True)
    if os.name != "nt":
        paths.home.chmod(0o700)
