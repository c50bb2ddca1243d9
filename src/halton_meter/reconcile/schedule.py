"""`[reconcile] enabled = true`: the daemon reconciles once per `interval_hours` (default daily).

Only providers whose admin key is in the daemon's environment take part (never the keychain:
a background service must not prompt, and a key in the environment is the user's explicit
choice). The result goes to reconcile.json, which `status`, the dashboard and /metrics read.
A thread, not the event loop: the fetch is blocking HTTPS and must never slow the proxy.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halton_meter.config import ReconcileSettings, UpstreamSettings
from halton_meter.reconcile import reports, run
from halton_meter.reconcile.fetch import FetchError, KeyRefused

log = logging.getLogger("halton_meter.reconcile")
FIRST_DELAY_SECONDS = 5.0  # let the daemon settle before the first fetch


class ReconcileLoop:
    def __init__(
        self, home: Path, ledger: Path, settings: ReconcileSettings, upstream: UpstreamSettings
    ) -> None:
        self.home, self.ledger = home, ledger
        self.settings, self.upstream = settings, upstream
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconcile", daemon=True)

    def providers(self) -> list[str]:
        """Configured providers with a key in the environment."""
        return [
            name for name in self.settings.providers if os.environ.get(reports.KEY_ENV[name], "")
        ]

    def start(self) -> None:
        if not self.settings.enabled:
            return
        if not self.providers():
            names = ", ".join(reports.KEY_ENV[p] for p in self.settings.providers)
            log.info("[reconcile] is enabled but no admin key is set (%s): not scheduled", names)
            return
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _due_in(self) -> float:
        """Seconds until the next run: none sooner than interval after the last one."""
        interval = self.settings.interval_hours * 3600
        state = run.load(self.home) or {}
        checked = state.get("checked_at")
        if not isinstance(checked, str):
            return FIRST_DELAY_SECONDS
        try:
            last = datetime.fromisoformat(checked.replace("Z", "+00:00"))
        except ValueError:
            return FIRST_DELAY_SECONDS
        elapsed = (datetime.now(UTC) - last).total_seconds()
        return max(FIRST_DELAY_SECONDS, interval - elapsed)

    def run_once(self) -> dict[str, Any]:
        window = run.window_for(self.settings.days)
        summaries: dict[str, dict[str, Any]] = {}
        for name in self.providers():
            try:
                scope = run.scope_of(name, self.settings)
                result = run.reconcile(name, self.ledger, self.upstream, window, None, scope)
            except (
                reports.ScopeError,
                run.NoKey,
                KeyRefused,
                FetchError,
                sqlite3.Error,
                OSError,
            ) as error:
                summaries[name] = run.error_summary(name, error)
                log.warning("reconcile: %s", summaries[name]["message"])
                continue
            summary = result.summary(self.settings.alert_above_usd)
            summaries[name] = summary
            log.info("reconcile %s: %s", name, "matches" if result.matches else summary["verdicts"])
        self.runs += 1
        return run.save(self.home, summaries)

    def _run(self) -> None:
        while not self._stop.wait(self._due_in()):
            try:
                self.run_once()
            except Exception:  # never take the daemon down; try again next interval
                log.exception("reconcile failed")
                if self._stop.wait(self.settings.interval_hours * 3600):
                    return
