"""JSON-lines log of the edge: one object a line, to stderr and to `logs/edge.jsonl`.

Written by hand rather than through `logging`: the edge logs a few events (start, stop, each
switch between metering and passthrough, failures) and must start fast. Only hosts, ports and
reasons are logged, never headers: a Proxy-Authorization names a project, an Authorization a key.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
ROTATE_BYTES = 5 * 1024 * 1024
KEEP_FILES = 3


class JsonLog:
    def __init__(self, path: Path | None, level: str = "info", *, stderr: bool = True) -> None:
        self._path = path
        self._threshold = LEVELS.get(level, 20)
        self._stderr = stderr
        self._file: IO[str] | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("a", encoding="utf-8")
            except OSError as error:  # a read-only home must not stop the edge
                self._path = None
                self.warning("log_unavailable", path=str(path), error=str(error))

    def _write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if LEVELS[level] < self._threshold:
            return
        record = {"ts": round(time.time(), 3), "level": level, "process": "edge", "event": event}
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        if self._stderr:
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):  # no console (pythonw), closed pipe
                pass
        if self._file is not None:
            try:
                self._file.write(line)
                self._file.flush()
                if self._file.tell() > ROTATE_BYTES:
                    self._rotate()
            except OSError:
                pass

    def _rotate(self) -> None:
        assert self._path is not None and self._file is not None
        self._file.close()
        for index in range(KEEP_FILES - 1, 0, -1):
            older = self._path.with_name(f"{self._path.name}.{index}")
            if older.exists():
                os.replace(older, self._path.with_name(f"{self._path.name}.{index + 1}"))
        os.replace(self._path, self._path.with_name(f"{self._path.name}.1"))
        self._file = self._path.open("a", encoding="utf-8")

    def debug(self, event: str, **fields: Any) -> None:
        self._write("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write("error", event, fields)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
