"""Budgets: limits on API spend per scope and period, alerts, forecasts and opt-in blocking.

`model` reads `[[budgets]]` and works out period boundaries in the user's time zone; `tracker`
keeps the daemon's running totals in memory (seeded from the ledger, updated by the writer
thread) and answers the addon's O(1) question "is this call blocked?"; `refusal` shapes the
answer as each provider's own error; `alerts` delivers threshold crossings once per period;
`editing` changes config.toml without losing its comments.
"""
