"""One JSON-lines log per process under the home's `logs/`, rotated, secrets redacted.

Each long-running process (edge, daemon) writes `logs/<process>.jsonl`: one JSON object a line,
`{"ts", "level", "process", "event" or "message", ...}`, so support can grep or `jq` them. Files
rotate at 100 MiB and five old ones are kept. A copy goes to the console only when a person is
looking (stderr is a terminal); under a supervisor, stderr is the crash file `<process>.out.log`.

Nothing the meter logs carries a body or a header, but libraries may log URLs: Gemini takes its
key as `?key=`, so every message is passed through `redact` before it is written.

A full disk is the ledger's problem first: while the logs' file system has less than
`LOG_MIN_FREE_BYTES` free, log lines are not written (counted, and the count is logged once
there is room again), so the logs never take the space the ledger needs to catch up.

Standard library only: the edge imports this at start-up.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROTATE_BYTES = 100 * 1024 * 1024
KEEP_FILES = 5
# The supervisor's capture of stdout/stderr (tracebacks before logging starts): kept small.
OUTPUT_ROTATE_BYTES = 10 * 1024 * 1024
# Below this much free space where the logs live, log lines are skipped (and counted).
LOG_MIN_FREE_BYTES = 64 * 1024 * 1024
SPACE_CHECK_SECONDS = 5.0  # free space is looked up at most this often

_SECRET_QUERY = re.compile(r"(?i)([?&](?:key|api[_-]?key|access_token|token)=)[^&\s\"']+")
_SECRET_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|x-goog-api-key|api-key)(['\"]?\s*[:=,]\s*(?:b?['\"])?)"
    r"(?:(?:bearer|basic)\s+)?[^\s\",']+"
)
_KEY_SHAPES = re.compile(
    r"\b(sk-[A-Za-z0-9_\-]{8})[A-Za-z0-9_\-]+|\b(AIza[0-9A-Za-z_\-]{4})[0-9A-Za-z_\-]+"
)


def redact(text: str) -> str:
    """Hide API keys in query strings, auth headers and key-shaped words."""
    text = _SECRET_QUERY.sub(r"\1***", text)
    text = _SECRET_HEADER.sub(r"\1\2***", text)
    return _KEY_SHAPES.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


def log_path(logs: Path, process: str) -> Path:
    return logs / f"{process}.jsonl"


def output_path(logs: Path, process: str) -> Path:
    """Where a supervisor sends the process's stdout and stderr."""
    return logs / f"{process}.out.log"


class JsonLinesFormatter(logging.Formatter):
    """A record becomes one line. Records logged with `extra={"event": ..., "fields": {...}}`
    keep their structure; plain messages go under `message`."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "process": self.process,
        }
        event = getattr(record, "event", None)
        if event is not None:
            entry["event"] = event
            for key, value in getattr(record, "fields", {}).items():
                entry[key] = redact(value) if isinstance(value, str) else value
        else:
            entry["logger"] = record.name
            entry["message"] = redact(record.getMessage())
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, separators=(",", ":"), default=str)


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        if event is None:
            return redact(super().format(record))
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        return redact(f"{self.formatTime(record)} {record.levelname} {event} {fields}".rstrip())


class SpaceAwareFileHandler(logging.handlers.RotatingFileHandler):
    """The rotating JSON-lines file, silent while its disk is nearly full (see the module
    docstring): a skipped or failed line is counted in `skipped`, never printed to stderr
    (which a supervisor sends to a file on the same disk)."""

    def __init__(self, filename: Path, *, max_bytes: int, backup_count: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self.skipped = 0
        self._low = False
        self._checked_at = float("-inf")

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if now - self._checked_at >= SPACE_CHECK_SECONDS:
            self._checked_at = now
            self._low = _free_bytes(Path(self.baseFilename).parent) < LOG_MIN_FREE_BYTES
            if not self._low and self.skipped:
                skipped, self.skipped = self.skipped, 0
                super().emit(_skipped_record(record, skipped))
        if self._low:
            self.skipped += 1
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.skipped += 1


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return LOG_MIN_FREE_BYTES  # cannot tell: keep logging


def _skipped_record(after: logging.LogRecord, count: int) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "halton_meter.logs",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "created": after.created,
            "event": "log_lines_skipped",
            "fields": {
                "count": count,
                "reason": f"less than {LOG_MIN_FREE_BYTES // (1024 * 1024)} MiB free on "
                "the disk of the logs (or a write failed)",
            },
            "msg": f"{count} log lines skipped: the disk was nearly full",
        }
    )


def process_handlers(
    process: str, log_file: Path | None, *, console: bool | None = None
) -> list[logging.Handler]:
    """The rotating JSON-lines file (when it can be opened) and, for a person, the console."""
    handlers: list[logging.Handler] = []
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler = SpaceAwareFileHandler(
                log_file, max_bytes=ROTATE_BYTES, backup_count=KEEP_FILES
            )
        except OSError as error:  # a read-only home must not stop the process
            print(f"halton-meter: cannot write {log_file}: {error}", file=sys.stderr)
        else:
            file_handler.setFormatter(JsonLinesFormatter(process))
            handlers.append(file_handler)
    if console is None:
        console = _stderr_is_terminal()
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(_ConsoleFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(stream)
    return handlers


def setup_process_logging(
    process: str, log_file: Path | None, level: str, *, console: bool | None = None
) -> None:
    """Route the process's root logger to its JSON-lines file (and the console for a person)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in process_handlers(process, log_file, console=console):
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    if level != "debug":
        # mitmproxy logs every connection at INFO: noise for users, and work on the hot path.
        logging.getLogger("mitmproxy").setLevel(logging.WARNING)
    # The HTTP/2 libraries log every header they decode, keys included, even at debug.
    for name in ("hpack", "h2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def rotate_output(path: Path) -> None:
    """Keep a supervisor's output file small: move it aside once it is large (one old copy)."""
    try:
        if path.stat().st_size > OUTPUT_ROTATE_BYTES:
            path.replace(path.with_name(path.name + ".1"))
    except OSError:
        pass


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
