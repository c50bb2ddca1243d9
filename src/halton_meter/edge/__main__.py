"""`python -m halton_meter.edge`: the edge in the foreground, without the CLI's imports."""

from halton_meter.edge.listener import main

main()
