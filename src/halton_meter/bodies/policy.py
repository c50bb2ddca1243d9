"""Which calls have their bodies kept: the one decision, made twice.

- In the addon (mitmproxy's loop, O(rules)): whether to keep a stream's bytes at all. It knows
  the exact tag, or the connection's lookup once it has finished (its project and what the
  nearest `.haltonrc` says); the model is not known yet. When it cannot tell (lookup still
  running), it keeps the stream, bounded by the per-call cap. So the memory held for capture is
  at most `max_call_bytes` per in-flight stream of a possibly capturing project, and nothing
  at all while no `[[capture]]` entry exists and no `.haltonrc` has switched capture on.
- On the writer thread, exactly: the row's project, model and provider against `[[capture]]`,
  and the connection's `.haltonrc` (`body_capture = on` captures; `off` never does, whatever
  config.toml says).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from halton_meter.body_capture import CaptureSettings

ON, OFF = "on", "off"


def haltonrc_says(lookup: Future[Any] | None) -> str | None:
    """`on`/`off` from the `.haltonrc` the connection's lookup found, once it has finished."""
    if lookup is None or not lookup.done() or lookup.cancelled() or lookup.exception():
        return None
    value = getattr(lookup.result(), "body_capture", None)
    return value if value in (ON, OFF) else None


class CapturePolicy:
    def __init__(self, settings: CaptureSettings, tagging_rules: bool = False) -> None:
        self.settings = settings
        # `[[tagging.rules]]` may give an untagged call another project than its lookup's.
        self.tagging_rules = tagging_rules
        # Set once any connection's `.haltonrc` said on: from then, unknown means maybe.
        self.haltonrc_seen = False

    @property
    def configured(self) -> bool:
        return bool(self.settings.rules) or self.haltonrc_seen

    def captures(
        self, project: str, model: str | None, provider: str | None, haltonrc: str | None
    ) -> bool:
        """The writer's decision for one row."""
        if haltonrc == OFF:
            return False
        if haltonrc == ON:
            self.haltonrc_seen = True
            return True
        return any(rule.matches(project, model, provider) for rule in self.settings.rules)

    def may_capture(self, tag: str | None, lookup: Future[Any] | None) -> bool:
        """The addon's early guess: False only when the call surely does not capture."""
        said = haltonrc_says(lookup)
        if said == ON:
            self.haltonrc_seen = True
            return True
        if said == OFF:
            return False
        if not self.configured:
            return False
        project = tag
        if project is None and lookup is not None and lookup.done() and said is None:
            try:
                project = lookup.result().decision.project
            except Exception:
                project = None
        if project is None:
            return True  # not known yet: keep, bounded, and let the writer decide
        if tag is None and (self.haltonrc_seen or self.tagging_rules):
            return True  # a rule or alias may still move it; the writer decides
        return any(rule.may_match(project) for rule in self.settings.rules)
