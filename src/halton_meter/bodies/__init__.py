"""Opt-in body capture: what a call asked and answered, for the projects that ask for it.

Off unless a project's `.haltonrc` says `body_capture = on` or a `[[capture]]` entry in
config.toml names it. Bodies are redacted before anything is written, capped, compressed and
kept in their own file (`bodies.sqlite`), never in the ledger (docs/body-capture.md).
"""
