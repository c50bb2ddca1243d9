"""The loopback HTTP API and the built-in dashboard, served inside the daemon (docs/api.md)."""
