"""Reconciliation: the ledger against the providers' own usage and cost reports (issue 23).

reports.py (the providers' admin APIs, one shape) ──> fetch.py (direct HTTPS, no proxy)
compare.py (ledger per day and model, verdicts, the override to add)
run.py (the key, one run, reconcile.json) <── cli/reconcile_cmd.py, capture/daemon.py
"""
