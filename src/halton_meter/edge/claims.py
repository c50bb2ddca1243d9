"""Which hosts the edge hands to the daemon: its own table, plus what the daemon says it
decrypts (`runstate.CLAIMED_HOSTS_FILE`, written at the daemon's start).

The daemon adds hosts the edge cannot know without importing the price catalogue (providers
the catalogue lists, PR item 5); the file is checked for a change at most once a second, so a
daemon restarted after an upgrade is followed without restarting the edge. A missing or damaged
file leaves the edge with its own table: those hosts are still metered, and any other host is
tunnelled (fail-open, never a broken connection).
"""

from __future__ import annotations

import time
from pathlib import Path

from halton_meter.providers.claimed import ClaimedHosts

RECHECK_SECONDS = 1.0


class ClaimsWatch:
    __slots__ = ("_base", "_current", "_next_check", "_path", "_stamp")

    def __init__(self, base: ClaimedHosts, path: Path | None) -> None:
        self._base = base
        self._current = base
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._next_check = 0.0

    @property
    def current(self) -> ClaimedHosts:
        return self._current

    def claims(self, host: str, port: int) -> bool:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + RECHECK_SECONDS
            self._reload()
        return self._current.claims(host, port)

    def _reload(self) -> None:
        if self._path is None:
            return
        try:
            stat = self._path.stat()
        except OSError:
            self._stamp, self._current = None, self._base
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            said = ClaimedHosts.from_json(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, UnicodeDecodeError):
            self._current = self._base
            return
        self._current = self._base.merged(said)
