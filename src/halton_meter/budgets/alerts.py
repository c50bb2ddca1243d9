"""Delivering threshold crossings: webhook, desktop notification, the alert state file.

Any `Alert` goes the same way: a budget's `Crossing`, or another part's (reconcile's cost
difference, handed in by the daemon), which names its own title and webhook event.

Crossings arrive from the ledger writer thread (`BudgetTracker`) and are queued here; one
thread records each in `budget-alerts.json` first (so a restart never repeats it), then
delivers. A failed webhook is retried with back-off (1, 4, 15, 60 s) and every failure stays
in the state file, shown by `budget list/show`, `status` and `/v1/budgets`: never silent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from halton_meter.budgets.tracker import ALERTS_FILE, Crossing
from halton_meter.lifecycle.boundary import LINUX, MACOS, WINDOWS, current_os
from halton_meter.runstate import write_atomic

log = logging.getLogger(__name__)

RETRY_SECONDS = (1.0, 4.0, 15.0, 60.0)
SIGNATURE_HEADER = "X-Halton-Signature"
MAX_FAILURES_KEPT = 50


class Alert(Protocol):
    """What the dispatcher delivers. `Crossing` is one; another alert may also carry `title`
    (the desktop notification's) and `event` (the plain webhook's), read with getattr."""

    @property
    def key(self) -> str: ...

    def message(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


def _title(alert: Alert) -> str:
    return str(getattr(alert, "title", "Halton Meter budget"))


def _event(alert: Alert) -> str:
    return str(getattr(alert, "event", "budget.threshold"))


class Notifier(Protocol):
    """The OS boundary for desktop notifications (faked in tests)."""

    def notify(self, title: str, body: str) -> None: ...


class CommandNotifier:
    """notify-send (the freedesktop notification service over D-Bus) on Linux, osascript on
    macOS, a PowerShell balloon on Windows. Raises when the OS refused."""

    def __init__(self, system: str | None = None, run: Callable[..., Any] = subprocess.run):
        self._system = system or current_os()
        self._run = run

    def command(self, title: str, body: str) -> list[str]:
        if self._system == MACOS:
            script = f"display notification {json.dumps(body)} with title {json.dumps(title)}"
            return ["osascript", "-e", script]
        if self._system == WINDOWS:
            script = (
                "Add-Type -AssemblyName System.Windows.Forms;"
                "$n=New-Object System.Windows.Forms.NotifyIcon;"
                "$n.Icon=[System.Drawing.SystemIcons]::Information;$n.Visible=$true;"
                f"$n.ShowBalloonTip(10000,{_ps(title)},{_ps(body)},'Warning');Start-Sleep 10"
            )
            return ["powershell", "-NoProfile", "-NonInteractive", "-Command", script]
        assert self._system == LINUX
        if shutil.which("notify-send"):
            return ["notify-send", "--app-name=Halton Meter", title, body]
        return [  # the same freedesktop call, through gdbus
            "gdbus", "call", "--session", "--dest", "org.freedesktop.Notifications",
            "--object-path", "/org/freedesktop/Notifications",
            "--method", "org.freedesktop.Notifications.Notify",
            "Halton Meter", "0", "", title, body, "[]", "{}", "-1",
        ]  # fmt: skip

    def notify(self, title: str, body: str) -> None:
        done = self._run(self.command(title, body), capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {done.stderr!r}"[:300])


def _ps(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_request(
    url: str, form: str, secret: str | None, crossing: Alert
) -> urllib.request.Request:
    """`chat`: {"text", "content"} which Slack, Teams and Discord incoming webhooks all take;
    `plain`: the crossing as JSON, signed with HMAC-SHA256 of the body in X-Halton-Signature."""
    if form == "plain":
        body = json.dumps({"event": _event(crossing), **crossing.to_json()}).encode()
    else:
        text = crossing.message()
        body = json.dumps({"text": text, "content": text}).encode()
    headers = {"content-type": "application/json", "user-agent": "halton-meter"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


class AlertDispatcher:
    def __init__(
        self,
        home: Path,
        webhook_url: str | None = None,
        webhook_format: str = "chat",
        webhook_secret: str | None = None,
        notifier: Notifier | None = None,
        retry_seconds: tuple[float, ...] = RETRY_SECONDS,
    ) -> None:
        self._path = home / ALERTS_FILE
        self._url = webhook_url
        self._form = webhook_format
        self._secret = webhook_secret
        self._notifier = notifier
        self._retry = retry_seconds
        self._queue: queue.SimpleQueue[Alert | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="budget-alerts", daemon=True)
        self._state = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data.setdefault("fired", {})
                data.setdefault("failures", [])
                return data
        except (OSError, ValueError):
            pass
        return {"fired": {}, "failures": []}

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(self, crossing: Alert) -> None:
        """From the writer thread: never blocks."""
        self._queue.put(crossing)

    def _run(self) -> None:
        while (crossing := self._queue.get()) is not None:
            try:
                self._deliver(crossing)
            except Exception:
                log.exception("budget alert delivery failed")

    def _save(self) -> None:
        self._state["failures"] = self._state["failures"][-MAX_FAILURES_KEPT:]
        try:
            write_atomic(self._path, json.dumps(self._state, indent=2))
        except OSError as error:
            log.error("budget alerts: %s not written (%s); alerts may repeat", self._path, error)

    def _deliver(self, crossing: Alert) -> None:
        self._state["fired"][crossing.key] = time.time()
        self._save()
        if self._notifier is not None:
            try:
                self._notifier.notify(_title(crossing), crossing.message())
            except Exception as error:
                self._failed(crossing, "desktop", str(error))
        if self._url:
            self._webhook(crossing)

    def _webhook(self, crossing: Alert) -> None:
        assert self._url is not None
        problem = ""
        for attempt, pause in enumerate((0.0, *self._retry)):
            time.sleep(pause)
            try:
                request = webhook_request(self._url, self._form, self._secret, crossing)
                with urllib.request.urlopen(request, timeout=10) as answer:
                    if 200 <= answer.status < 300:
                        if attempt:
                            log.info("budget alert webhook delivered after %d retries", attempt)
                        return
                    problem = f"HTTP {answer.status}"
            except Exception as error:
                problem = str(error)
            log.warning("budget alert webhook attempt %d failed: %s", attempt + 1, problem)
        self._failed(crossing, "webhook", problem)

    def _failed(self, crossing: Alert, channel: str, problem: str) -> None:
        what = (
            f"budget alert for {crossing.budget.name!r}"
            if isinstance(crossing, Crossing)
            else f"alert {crossing.key!r}"
        )
        log.error("%s not delivered by %s: %s", what, channel, problem)
        self._state["failures"].append(
            {"key": crossing.key, "channel": channel, "problem": problem, "at": time.time()}
        )
        self._save()
