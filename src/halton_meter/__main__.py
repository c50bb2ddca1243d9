"""`python -m halton_meter`: the same entry point as the `halton-meter` executable (launch.py),
so a service or a guard's standby started this way behaves the same."""

from halton_meter.launch import main

main()
