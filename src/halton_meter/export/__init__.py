"""Spend where users already look: the GenAI semantic conventions' names (genai.py), shared by
`/metrics` (api/metrics.py) and the OpenTelemetry export (otlp.py)."""
