"""`[reconcile] enabled = true`: the daemon reconciles once per `interval_hours` (default daily).

Only providers whose admin key is in the daemon's environment take part (never the keychain:
a background service must not prompt, and a key in the environment is the user's explicit
choice). The result goes to reconcile.json, which `status`, the dashboard and /metrics read.
A thread, not the event loop: the fetch is blocking HTTPS and must never slow the proxy.

A cost difference above `alert_above_usd` is an alert: a log line, and through `on_alert` (the
daemon hands in the budgets' `AlertDispatcher.submit`: desktop notification, webhook) once per
provider and UTC day, remembered in reconcile.json so a restart or a second run that day does
not repeat it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halton_meter.config import ReconcileSettings, UpstreamSettings
from halton_meter.reconcile import reports, run
from halton_meter.reconcile.fetch import FetchError, KeyRefused

log = logging.getLogger("halton_meter.reconcile")
FIRST_DELAY_SECONDS = 5.0  # let the daemon settle before the first fetch


@dataclass(frozen=True, slots=True)
class DifferenceAlert:
    """The provider billed more or less than the ledger by more than `alert_above_usd`: an
    alert the budgets' channels deliver (it has the shape of budgets/alerts.py `Alert`)."""

    provider: str
    day: str  # the UTC day of the run: one alert per provider and day
    summary: dict[str, Any] = field(default_factory=dict)
    title: str = "Halton Meter reconcile"
    event: str = "reconcile.difference"

    @property
    def key(self) -> str:
        return f"reconcile|{self.provider}|{self.day}"

    def message(self) -> str:
        summary = self.summary
        scope = run.scope_text(summary)
        counted = run.verdicts_text(summary)
        return (
            f"Reconcile: {self.provider}{scope} differs from the provider's report by "
            f"${summary.get('cost_difference_usd')} (provider minus ledger) over the last "
            f"{summary.get('days')} days, above ${summary.get('alert_above_usd')} ({counted}). "
            "Run `halton-meter reconcile` for the days, models and next steps."
        )

    def to_json(self) -> dict[str, Any]:
        keep = ("from", "until", "days", "verdicts", "cost_difference_usd", "alert_above_usd")
        return {
            "provider": self.provider,
            "day": self.day,
            "scope": self.summary.get("scope") or {},
            **{name: self.summary.get(name) for name in keep},
            "differences": (self.summary.get("differences") or [])[:5],
            "message": self.message(),
        }


class ReconcileLoop:
    def __init__(
        self,
        home: Path,
        ledger: Path,
        settings: ReconcileSettings,
        upstream: UpstreamSettings,
        on_alert: Callable[[DifferenceAlert], None] | None = None,
    ) -> None:
        self.home, self.ledger = home, ledger
        self.settings, self.upstream = settings, upstream
        self.on_alert = on_alert
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
        alerts = self._alerts(summaries)
        state = run.save(self.home, summaries, {a.provider: a.day for a in alerts})
        for alert in alerts:  # recorded first: a failure below never makes it repeat
            log.warning("%s", alert.message())
            if self.on_alert is not None:
                try:
                    self.on_alert(alert)
                except Exception:
                    log.exception("reconcile: the alert could not be handed over")
        return state

    def _alerts(self, summaries: dict[str, dict[str, Any]]) -> list[DifferenceAlert]:
        """Providers whose difference is above the threshold and not yet alerted today."""
        today = datetime.now(UTC).date().isoformat()
        alerted = (run.load(self.home) or {}).get("alerted")
        done = alerted if isinstance(alerted, dict) else {}
        return [
            DifferenceAlert(name, today, summary)
            for name, summary in sorted(summaries.items())
            if summary.get("alert") and done.get(name) != today
        ]

    def _run(self) -> None:
        while not self._stop.wait(self._due_in()):
            try:
                self.run_once()
            except Exception:  # never take the daemon down; try again next interval
                log.exception("reconcile failed")
                if self._stop.wait(self.settings.interval_hours * 3600):
                    return
