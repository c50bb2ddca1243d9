"""Is the daemon there? A cached answer, so no client waits on a dead daemon.

The answer is a TCP connect to the daemon's interception listener, kept 1000 ms while healthy
and 200 ms while not. On the hot path the handoff's own connect is the check: a handoff that
succeeds refreshes "healthy", one that is refused marks the daemon down at once, and while it
is down (and the answer is fresh) claimed connections are tunnelled without trying. So the
daemon is probed at most once per 200 ms while down, and never with connections of its own
while traffic flows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

HEALTHY_TTL = 1.0
UNHEALTHY_TTL = 0.2
# A daemon that took a connection but never answered (stopped, blocked, still starting) costs
# its client the whole answer timeout, so it is left alone longer than a refused one.
HUNG_TTL = 5.0
PROBE_TIMEOUT = 0.5

# (previous answer or None for the first, new answer, reason)
SwitchHook = Callable[[bool | None, bool, str], None]


class DaemonHealth:
    def __init__(self, port: int, on_switch: SwitchHook, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._on_switch = on_switch
        self.healthy: bool | None = None  # None until the first answer
        self._checked_at = -1e9
        self._down_ttl = UNHEALTHY_TTL
        self.reason = "not checked yet"

    def _fresh(self) -> bool:
        ttl = HEALTHY_TTL if self.healthy else self._down_ttl
        return time.monotonic() - self._checked_at < ttl

    def worth_trying(self) -> bool:
        """Whether to hand a claimed connection to the daemon: yes unless it was found down
        less than 200 ms ago."""
        return self.healthy is not False or not self._fresh()

    def mark(self, healthy: bool, reason: str, *, hung: bool = False) -> None:
        """Record an answer; a change from the previous one is a switch. `hung`: the daemon
        took the connection but did not answer in time."""
        self._checked_at = time.monotonic()
        self._down_ttl = HUNG_TTL if hung else UNHEALTHY_TTL
        previous, self.healthy, self.reason = self.healthy, healthy, reason
        if previous is not healthy:
            self._on_switch(previous, healthy, reason)

    async def check(self) -> bool:
        """The cached answer, refreshed by a TCP connect when stale."""
        if self.healthy is not None and self._fresh():
            return self.healthy
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), PROBE_TIMEOUT
            )
        except (OSError, TimeoutError) as error:
            self.mark(False, describe(error, self.host, self.port))
            return False
        writer.close()
        self.mark(True, f"{self.host}:{self.port} accepts connections")
        return True


def describe(error: BaseException, host: str, port: int) -> str:
    """A short reason for a failed connection, for logs and status."""
    if isinstance(error, TimeoutError):
        return f"no answer from {host}:{port}"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused on {host}:{port}"
    return f"{host}:{port}: {error.strerror or error}" if isinstance(error, OSError) else str(error)
