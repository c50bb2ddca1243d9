"""The machine's side of a team server: pairing, credentials, and the sync loop that pushes
ledger metadata in order. Standard library only (urllib), so the daemon needs no extra package;
the local ledger is the queue, so nothing is lost while offline.
"""
