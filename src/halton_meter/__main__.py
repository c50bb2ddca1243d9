from halton_meter.cli import main

main()
