"""systemd --user unit files for the edge and the daemon.

`ExecStart` is the absolute path of the running `halton-meter` (a unit must not depend on the
current directory or PATH), stamped with the version in the description, so an `init` after
an upgrade or a move sees the difference and rewrites the file; an unchanged unit is never
rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path

from halton_meter import __version__
from halton_meter.lifecycle.supervisor import COMPONENTS, EDGE, Component
from halton_meter.paths import HOME_ENV, Paths


def unit_dir() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "systemd" / "user"


def _quote(word: str) -> str:
    """One ExecStart word: specifiers and variables escaped, quoted when it has spaces or
    quotes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if any(c.isspace() or c in "\"'\\;" for c in word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def unit_text(component: Component, command: list[str], paths: Paths) -> str:
    exec_start = " ".join(_quote(word) for word in [*command, *component.args])
    log = str(component.output_file(paths)).replace("%", "%%")
    lines = [
        "# Written by `halton-meter init`; `halton-meter uninstall` removes it.",
        "[Unit]",
        f"Description={component.description} {__version__}",
        # The edge is what clients connect to: never give up restarting it. The daemon may
        # stop being restarted after 10 failures in 5 minutes (the edge then tunnels).
        *(
            ["StartLimitIntervalSec=0"]
            if component is EDGE
            else ["StartLimitIntervalSec=300", "StartLimitBurst=10"]
        ),
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start}",
    ]
    if paths.home_overridden:
        lines.append(f'Environment="{HOME_ENV}={_escape_env(str(paths.home))}"')
    lines += [
        "Restart=always" if component is EDGE else "Restart=on-failure",
        "RestartSec=1" if component is EDGE else "RestartSec=3",
        "TimeoutStopSec=20",
        f"StandardOutput=append:{log}",
        f"StandardError=append:{log}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def _escape_env(value: str) -> str:
    return value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')


def unit_files() -> dict[Component, Path]:
    folder = unit_dir()
    return {component: folder / component.unit for component in COMPONENTS}
