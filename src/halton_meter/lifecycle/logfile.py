"""A size-rotated log file that stands in for stdout and stderr.

Task Scheduler gives a process no output at all (and `pythonw` sets sys.stdout and sys.stderr
to None), so a supervised edge or daemon on Windows writes its own `logs/<name>.log`, rotated
at 100 MiB and keeping 5 older files (`<name>.log.1` … `.5`): a bounded 600 MiB at most.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

ROTATE_BYTES = 100 * 1024 * 1024
KEEP_FILES = 5


class RotatingLog(io.TextIOBase):
    """Text in, UTF-8 lines out; thread-safe (the daemon's writer thread logs too)."""

    def __init__(self, path: Path, max_bytes: int = ROTATE_BYTES, keep: int = KEEP_FILES) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._size = self._file.tell()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()
            self._size += len(data)
        return len(text)

    def _rotate(self) -> None:
        self._file.close()
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        oldest.unlink(missing_ok=True)
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("ab")
        self._size = 0

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
        super().close()
