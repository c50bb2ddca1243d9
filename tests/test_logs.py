"""Process logs: JSON lines, one file per process, rotated, never a key."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from halton_meter import logs
from tests.conftest import FakeUpstream, start_meter
from tests.test_clients import curl_json

GEMINI_KEY = "AIzaSyD-not-a-real-key-0123456789"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (
            f"POST https://generativelanguage.googleapis.com/v1beta/models/m:gen?key={GEMINI_KEY}&alt=sse",
            GEMINI_KEY[6:],
            "&alt=sse",
        ),
        ("headers: Authorization: Bearer sk-live-abcdefghijklmnop", "abcdefghijklmnop", "headers"),
        ('{"x-api-key": "sk-ant-api03-secretsecret"}', "secretsecret", "x-api-key"),
        ("proxy-authorization=Basic cHJvajptZXRlcg==", "cHJvajptZXRlcg", "proxy-authorization"),
        ("Decoded (b'x-goog-api-key', b'AIzaSyD-secret-part')", "secret-part", "Decoded"),
        ("upstream said: invalid key sk-proj-ABCDEFGHIJKLMNOP", "IJKLMNOP", "upstream said"),
    ],
)
def test_redact_hides_keys_and_keeps_the_rest(text: str, secret: str, kept: str) -> None:
    redacted = logs.redact(text)
    assert secret not in redacted
    assert kept in redacted and "***" in redacted


def test_formatter_writes_one_json_object_per_record(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "daemon.jsonl"
    logger = logging.getLogger("halton_meter.test_formatter")
    logger.propagate = False
    for handler in logs.process_handlers("daemon", path, console=False):
        logger.addHandler(handler)
    try:
        logger.warning("upstream failed for %s", f"https://x.test/v1?key={GEMINI_KEY}")
        logger.warning("switch", extra={"event": "switch", "fields": {"mode": "passthrough"}})
        try:
            raise ValueError(f"Authorization: Bearer {GEMINI_KEY}")
        except ValueError:
            logger.exception("crashed")
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    text = path.read_text()
    assert GEMINI_KEY not in text
    first, second, third = map(json.loads, text.splitlines())
    assert first["process"] == "daemon" and first["level"] == "warning"
    assert first["message"].startswith("upstream failed for https://x.test/v1?key=***")
    assert second["event"] == "switch" and second["mode"] == "passthrough"
    assert "ValueError" in third["exception"]


def test_supervisor_output_is_moved_aside_when_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "OUTPUT_ROTATE_BYTES", 1000)
    out = tmp_path / "daemon.out.log"
    out.write_bytes(b"x" * 999)
    logs.rotate_output(out)
    assert out.exists() and not out.with_name("daemon.out.log.1").exists()
    out.write_bytes(b"y" * 1001)
    logs.rotate_output(out)
    assert not out.exists() and out.with_name("daemon.out.log.1").read_bytes() == b"y" * 1001


def test_daemon_logs_json_lines_to_its_own_file(
    fake_upstream: FakeUpstream, tmp_path: Path, project: str
) -> None:
    """A real daemon at debug level: its file holds only JSON lines, and no key a client sent."""
    meter = start_meter(tmp_path, fake_upstream, daemon_extra='log_level = "debug"')
    try:
        url = (
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
            f":generateContent?key={GEMINI_KEY}"
        )
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        done = curl_json(meter, project, url, body)
        assert done.returncode == 0, done.stderr
        meter.wait_rows(project, 1)
    finally:
        assert meter.stop() == 0
    log_file = tmp_path / "logs" / "daemon.jsonl"
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert len(records) > 3  # start, mitmproxy's debug lines, stop
    assert {r["process"] for r in records} == {"daemon"}
    assert any("metering on 127.0.0.1" in r.get("message", "") for r in records)
    for file in (tmp_path / "logs").iterdir():
        text = file.read_text(errors="replace")
        assert GEMINI_KEY not in text and "sk-test-secret-0004" not in text, file
