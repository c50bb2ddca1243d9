"""`halton-meterw`: the entry point Task Scheduler starts (`[project.gui-scripts]`).

A GUI-subsystem executable opens no console window at logon. It has no stdout or stderr
either, so this entry point sends both to `logs/<command>.log` (rotated, lifecycle/logfile.py)
before running the ordinary CLI. A task cannot carry environment variables, so a home folder
chosen with HALTON_METER_HOME reaches the process as a leading `--home DIR`.

    halton-meterw [--home DIR] edge | daemon --behind-edge
"""

from __future__ import annotations

import os
import sys

from halton_meter.lifecycle.logfile import RotatingLog
from halton_meter.paths import HOME_ENV, resolve_paths


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--home":
        os.environ[HOME_ENV] = args[1]
        args = args[2:]
    name = args[0] if args and args[0].isidentifier() else "halton-meter"
    log = RotatingLog(resolve_paths().logs / f"{name}.log")
    sys.stdout = sys.stderr = log
    sys.argv = [sys.argv[0], *args]
    from halton_meter.cli import main as cli_main

    cli_main()
