"""Alert delivery: recorded before it is delivered, webhook forms and signature, retries and
failures kept (never silent), desktop notifications through the OS boundary (faked)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from halton_meter.budget_model import Budget, Scope, window_at
from halton_meter.budgets.alerts import AlertDispatcher, CommandNotifier, webhook_request
from halton_meter.budgets.tracker import ALERTS_FILE, Crossing, read_alert_failures, read_fired
from halton_meter.lifecycle.boundary import LINUX, MACOS, WINDOWS


def crossing(threshold: int = 80) -> Crossing:
    budget = Budget("acme", 50.0, "month", scope=Scope(project=("acme",)), timezone="UTC")
    from zoneinfo import ZoneInfo

    window = window_at("month", 0, ZoneInfo("UTC"), 1_796_889_600.0)
    return Crossing(budget, threshold, 40 * 10**9, window, f"acme|2026-12-01|{threshold}")


class _Flaky(BaseHTTPRequestHandler):
    answers: list[int] = []
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        type(self).bodies.append(self.rfile.read(int(self.headers["content-length"])))
        status = type(self).answers.pop(0) if type(self).answers else 204
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve(answers: list[int]) -> HTTPServer:
    _Flaky.answers, _Flaky.bodies = list(answers), []
    server = HTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_chat_form_suits_slack_teams_and_discord() -> None:
    request = webhook_request("http://x/", "chat", None, crossing())
    body = json.loads(request.data)  # type: ignore[arg-type]
    assert body["text"] == body["content"] and "'acme' at 80%" in body["text"]
    assert "$40.00 of $50.00" in body["text"]


def test_webhook_retried_until_delivered(tmp_path: Path) -> None:
    server = serve([500, 503])
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    dispatcher = AlertDispatcher(tmp_path, url, "chat", None, None, retry_seconds=(0.05,) * 3)
    dispatcher.start()
    dispatcher.submit(crossing())
    dispatcher.stop(10)
    assert len(_Flaky.bodies) == 3  # two refusals, then delivered
    assert read_alert_failures(tmp_path) == []
    assert "acme|2026-12-01|80" in read_fired(tmp_path)
    server.shutdown()


def test_a_webhook_that_never_answers_is_recorded_not_lost(tmp_path: Path) -> None:
    server = serve([500] * 10)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    dispatcher = AlertDispatcher(tmp_path, url, "chat", None, None, retry_seconds=(0.01,) * 2)
    dispatcher.start()
    dispatcher.submit(crossing(100))
    dispatcher.stop(10)
    (failure,) = read_alert_failures(tmp_path)
    assert failure["channel"] == "webhook" and "500" in failure["problem"]
    # Recorded as fired all the same: a restart does not send it again.
    assert json.loads((tmp_path / ALERTS_FILE).read_text())["fired"]
    server.shutdown()


class _Recorder:
    def __init__(self, returncode: int = 0) -> None:
        self.commands: list[list[str]] = []
        self.returncode = returncode

    def __call__(self, command: list[str], **_: Any) -> Any:
        self.commands.append(command)

        class Done:
            returncode = self.returncode
            stderr = "no notification daemon"

        return Done()


def test_desktop_notifications_per_os(tmp_path: Path) -> None:
    for system, program in ((MACOS, "osascript"), (WINDOWS, "powershell"), (LINUX, None)):
        run = _Recorder()
        CommandNotifier(system, run).notify("Halton Meter budget", "acme at 80%")
        (command,) = run.commands
        if program:
            assert command[0] == program
        else:
            assert command[0] in ("notify-send", "gdbus")
        assert any("acme at 80%" in part for part in command)
    failing = _Recorder(returncode=1)
    dispatcher = AlertDispatcher(tmp_path, notifier=CommandNotifier(LINUX, failing))
    dispatcher.start()
    dispatcher.submit(crossing(50))
    dispatcher.stop(10)
    (failure,) = read_alert_failures(tmp_path)
    assert failure["channel"] == "desktop" and "no notification daemon" in failure["problem"]
