"""The daemon's budget housekeeping thread: once a second it moves ended periods on, picks up
pauses, allowances and budgets added or edited in config.toml, and publishes the live view
(`budget-state.json`) for `status` and `budget list`. Nothing here runs on the event loop."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from halton_meter.budgets.tracker import BudgetTracker
from halton_meter.config import ConfigError, parse_config

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
STATE_REFRESH_SECONDS = 60.0


class BudgetKeeper:
    def __init__(self, tracker: BudgetTracker, config_path: Path) -> None:
        self._tracker = tracker
        self._config = config_path
        self._mtime = self._config_mtime()
        self._stop = threading.Event()
        self._last_view = ""
        self._written_at = 0.0
        self._thread = threading.Thread(target=self._run, name="budget-keeper", daemon=True)

    def _config_mtime(self) -> float | None:
        try:
            return self._config.stat().st_mtime
        except OSError:
            return None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.once()
            except Exception:
                log.exception("budgets: housekeeping failed")

    def once(self) -> None:
        mtime = self._config_mtime()
        if mtime != self._mtime:
            self._mtime = mtime
            self._reload()
        self._tracker.tick()
        # Rewritten when something a reader acts on changed (not for every forecast tick), and
        # at least once a minute so the forecasts in it stay fresh.
        view = json.dumps(
            [
                (
                    v["name"],
                    v["amount_usd"],
                    v["spent_usd"],
                    v["state"],
                    v["hold"],
                    v["blocked_calls"],
                    v.get("percent"),
                )
                for v in self._tracker.views()
            ]
            + [self._tracker.known]
        )
        now = time.monotonic()
        if view != self._last_view or now - self._written_at >= STATE_REFRESH_SECONDS:
            self._last_view, self._written_at = view, now
            self._tracker.write_state()

    def _reload(self) -> None:
        try:
            text = self._config.read_text(encoding="utf-8") if self._mtime else ""
            budgets = parse_config(text, self._config).budgets
        except (OSError, ConfigError) as error:
            log.error("budgets: config.toml not reloaded (%s); the budgets before stay", error)
            return
        log.info("budgets: config.toml changed; %d budgets", len(budgets))
        self._tracker.seed(budgets)
