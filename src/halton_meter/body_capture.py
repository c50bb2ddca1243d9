"""`[[capture]]` entries and `[body_capture]` limits from config.toml (checked in config.py).

[[capture]]
project = "acme-*"        # a glob over project names (required)
model = "claude-opus-*"   # optional: only these models
provider = "anthropic"    # optional: only this provider

[body_capture]
max_call_kb = 1024        # per call, request and response each (truncated with a marker)
max_project_mb = 200      # per project; the oldest bodies go first
retention_days = 30
raw_events = false        # also keep the raw stream events
redact = ["ACME-[0-9]{8}"]  # extra patterns, replaced by [REDACTED:custom]
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

MAX_CALL_BYTES = 1024 * 1024
MAX_PROJECT_BYTES = 200 * 1024 * 1024
RETENTION_DAYS = 30


@dataclass(frozen=True, slots=True)
class CaptureRule:
    project: str
    model: str | None = None
    provider: str | None = None

    def matches(self, project: str, model: str | None, provider: str | None) -> bool:
        if not fnmatchcase(project, self.project):
            return False
        if self.provider is not None and provider != self.provider:
            return False
        return self.model is None or (model is not None and fnmatchcase(model, self.model))

    def may_match(self, project: str) -> bool:
        """Before the model is known (the addon's early check)."""
        return fnmatchcase(project, self.project)


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    rules: tuple[CaptureRule, ...] = ()
    max_call_bytes: int = MAX_CALL_BYTES
    max_project_bytes: int = MAX_PROJECT_BYTES
    retention_days: float = RETENTION_DAYS
    raw_events: bool = False
    redact: tuple[str, ...] = ()
