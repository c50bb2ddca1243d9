"""The `halton-meter` executable's entry point.

`halton-meter edge` goes straight to the edge, without click and the command table: a guard
respawning a killed edge (guard.py) has a second to bring it back, and the CLI's imports cost a
third of that. `halton-meter statusline` too: it has 50 ms (statusline.py). Everything else is
the CLI (halton_meter.cli).
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["edge"]:
        from halton_meter.edge.listener import main as edge_main

        edge_main()
        return
    if sys.argv[1:2] == ["statusline"]:  # an agent's status bar waits on it: no click, no config
        from halton_meter.statusline import main as statusline_main

        sys.exit(statusline_main(sys.argv[2:]))
    from halton_meter.cli import main as cli_main

    cli_main()
