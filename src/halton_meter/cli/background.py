"""`halton-meterw`: the entry point Task Scheduler starts (`[project.gui-scripts]`).

A GUI-subsystem executable opens no console window at logon. It has no stdout or stderr
either (under pythonw both are None), so this entry point sends them to `logs/<command>.out.log`
(what a supervisor captures on Linux and macOS: a crash before logging starts) and runs the
ordinary CLI; the process's own log is its rotated `logs/<command>.jsonl` (halton_meter.logs).
A task cannot carry environment variables, so a home folder chosen with HALTON_METER_HOME
reaches the process as a leading `--home DIR`.

    halton-meterw [--home DIR] edge | daemon --behind-edge
"""

from __future__ import annotations

import os
import sys

from halton_meter.logs import output_path, rotate_output
from halton_meter.paths import HOME_ENV, resolve_paths


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--home":
        os.environ[HOME_ENV] = args[1]
        args = args[2:]
    name = args[0] if args and args[0].isidentifier() else "halton-meter"
    out = output_path(resolve_paths().logs, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    rotate_output(out)
    sys.stdout = sys.stderr = out.open("a", encoding="utf-8", buffering=1)
    sys.argv = [sys.argv[0], *args]
    from halton_meter.cli import main as cli_main

    cli_main()
