"""The `halton-meter` executable's entry point.

`halton-meter edge` goes straight to the edge, without click and the command table: a guard
respawning a killed edge (guard.py) has a second to bring it back, and the CLI's imports cost a
third of that. `halton-meter statusline` too: it has 50 ms (statusline.py). Everything else is
the CLI (halton_meter.cli).

A standby (`HALTON_METER_STANDBY_FD` set, by the guard only) does the imports of its command
first, then waits on the guard's Unix socket; on the word it runs the command as usual (reading
the configuration only then, so it is current), with the listening socket the guard passed
along for an edge. Start-up is mostly imports (the daemon's ~1 s of CPU, the edge's ~0.2 s),
and on a loaded machine they take several times that: a standby is back in milliseconds.
"""

from __future__ import annotations

import os
import sys

# What each command a guard keeps a standby for imports on its way to running.
STANDBY_IMPORTS = {
    "edge": ("halton_meter.edge.listener", "halton_meter.config", "halton_meter.lifecycle.ports"),
    "daemon": (
        "halton_meter.cli",
        "halton_meter.cli.daemon_cmd",
        "halton_meter.capture.daemon",
        "halton_meter.api.app",
        "halton_meter.api.thread",
    ),
}


def main() -> None:
    waiting = os.environ.pop("HALTON_METER_STANDBY_FD", None)  # runstate.STANDBY_ENV
    if waiting is not None:
        stand_by(int(waiting), sys.argv[1:2])
    if sys.argv[1:] == ["edge"]:
        from halton_meter.edge.listener import main as edge_main

        edge_main()
        return
    if sys.argv[1:2] == ["statusline"]:  # an agent's status bar waits on it: no click, no config
        from halton_meter.statusline import main as statusline_main

        sys.exit(statusline_main(sys.argv[2:]))
    from halton_meter.cli import main as cli_main

    cli_main()


def stand_by(fileno: int, command: list[str]) -> None:
    """Import what `command` needs, say "ready", then wait for the guard's word; exit when the
    guard is gone (end of stream) or sends anything but the word. A listening socket sent along
    with the word is for the edge (runstate.EDGE_LISTEN_FD_ENV)."""
    import importlib
    import socket

    from halton_meter.runstate import EDGE_LISTEN_FD_ENV

    for name in STANDBY_IMPORTS.get(command[0] if command else "", ()):
        importlib.import_module(name)
    with socket.socket(fileno=fileno) as channel:
        try:
            channel.sendall(b"ready")
            word, fds, _, _ = socket.recv_fds(channel, 16, 4)
        except OSError:
            word, fds = b"", []
        if word != b"run":
            os._exit(0)  # the guard stopped or no longer wants a standby: nothing to clean
        for extra in fds[1:]:
            os.close(extra)
        if fds:
            os.environ[EDGE_LISTEN_FD_ENV] = str(fds[0])
