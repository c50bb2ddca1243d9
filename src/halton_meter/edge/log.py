"""The edge's event log: `logs/edge.jsonl`, through the shared JSON-lines handlers.

The edge logs a few structured events (start, stop, each switch between metering and
passthrough, failures). Only hosts, ports and reasons are logged, never headers: a
Proxy-Authorization names a project, an Authorization a key.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from halton_meter.logs import process_handlers

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_instances = itertools.count()


class JsonLog:
    """Structured events to the edge's rotating file; to stderr too when a person watches
    (`stderr=None`) or when asked (`stderr=True`)."""

    def __init__(
        self,
        path: Path | None,
        level: str = "info",
        *,
        stderr: bool | None = None,
        process: str = "edge",
    ):
        # A logger of its own (not the root): tests run several edges in one process.
        self._logger = logging.getLogger(f"halton_meter.edge.events.{next(_instances)}")
        self._logger.propagate = False
        self._logger.setLevel(LEVELS.get(level, logging.INFO))
        self._handlers = process_handlers(process, path, console=stderr)
        for handler in self._handlers:
            self._logger.addHandler(handler)

    def _write(self, level: int, event: str, fields: dict[str, Any]) -> None:
        self._logger.log(level, event, extra={"event": event, "fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._write(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._write(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write(logging.ERROR, event, fields)

    def close(self) -> None:
        for handler in self._handlers:
            self._logger.removeHandler(handler)
            handler.close()
        self._handlers = []
