"""Body capture end to end, through the real daemon: off by default (no body byte anywhere in
the home), on for one project (stored, redacted, assembled, shown, served only with the
token), purged by command and at expiry."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from halton_meter.bodies.assemble import assemble_stream
from halton_meter.bodies.store import BodyStore
from tests.conftest import METER, ROOT, FakeUpstream, start_meter, wait_for
from tests.test_bodies_redact import SECRETS

ANTHROPIC = "https://api.anthropic.com/v1/messages"
MARK = "ZEBRA-PROMPT-7731"  # a plain word of the prompt: must never be on disk when off


def prompt() -> str:
    return MARK + " " + " ".join(text for _, text, _ in SECRETS)


def call(meter_home: Path, port_env: dict[str, str], project: str, stream: bool) -> str:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "system": "Be brief <script>alert(1)</script>",
        "messages": [{"role": "user", "content": prompt()}],
    }
    done = subprocess.run(
        [
            METER,
            "run",
            "--project",
            project,
            "--",
            "curl",
            "-sS",
            "-N",
            ANTHROPIC,
            "-H",
            "content-type: application/json",
            "-H",
            "x-api-key: sk-ant-api03-" + "k" * 40,
            "-H",
            "anthropic-version: 2023-06-01",
            "--data",
            json.dumps(body),
        ],
        env=port_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def grep_home(home: Path, needle: bytes) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_off_by_default_nothing_on_disk(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    meter = start_meter(tmp_path / "home", fake_upstream)
    try:
        for n in range(10):
            call(meter.home, meter.run_env(), f"plain-{n}", stream=n % 2 == 0)
        wait_for(lambda: sum(len(meter.rows(f"plain-{n}")) for n in range(10)) == 10, 20, "rows")
    finally:
        meter.stop()
    assert not (meter.home / "bodies.sqlite").exists()
    assert grep_home(meter.home, MARK.encode()) == []
    for _, _, secret in SECRETS:
        assert grep_home(meter.home, secret.encode()) == [], secret


def test_on_for_one_project(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    extra = '[[capture]]\nproject = "keep-*"\n\n[body_capture]\nmax_call_kb = 64\n'
    meter = start_meter(tmp_path / "home", fake_upstream, extra_config=extra)
    try:
        received = call(meter.home, meter.run_env(), "keep-this", stream=True)
        call(meter.home, meter.run_env(), "keep-this", stream=False)
        call(meter.home, meter.run_env(), "other", stream=True)
        wait_for(lambda: len(meter.rows("keep-this")) == 2 and meter.rows("other"), 20, "rows")
        store = BodyStore(meter.home / "bodies.sqlite")
        wait_for(lambda: len(list(store.ids())) == 2, 20, "bodies")
        rows = {r["id"]: r for r in meter.rows("keep-this")}
        assert set(store.ids()) == set(rows)  # the other project kept nothing
        for call_id in rows:
            stored = store.get(call_id)
            assert stored is not None and stored.project == "keep-this"
            text = json.dumps(stored.document, ensure_ascii=False)
            assert MARK in text
            for kind, _, secret in SECRETS:
                assert secret not in text, kind
                assert f"[REDACTED:{kind}]" in text
        streamed = next(i for i in rows if rows[i]["stream"])
        parts = store.get(streamed).document["message"]["parts"]  # type: ignore[union-attr]
        # What the client received, put together independently of the meter's copy.
        assert parts and parts == assemble_stream(received.encode(), "text/event-stream")["parts"]
        # No secret anywhere in the home, the bodies file and WAL/journal files included.
        for _, _, secret in SECRETS:
            assert grep_home(meter.home, secret.encode()) == [], secret

        # `show --body --json` and the API: the body only with the token, never cross-origin.
        env = meter.run_env()
        shown = subprocess.run(
            [METER, "show", streamed, "--body", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        view = json.loads(shown.stdout)
        assert view["body"]["conversation"][0]["text"].startswith("Be brief <script>")
        state = json.loads((meter.home / "daemon.json").read_text())
        base = f"http://127.0.0.1:{state['api_port']}"
        token = (meter.home / "api-token").read_text().strip()
        wait_for(lambda: _up(base), 30, "the API")
        assert requests.get(f"{base}/v1/requests/{streamed}", timeout=10).json()["body_captured"]
        assert requests.get(f"{base}/v1/requests/{streamed}/body", timeout=10).status_code == 401
        crossed = requests.get(
            f"{base}/v1/requests/{streamed}/body",
            timeout=10,
            headers={"X-Halton-Token": token, "Origin": "http://evil.example"},
        )
        assert crossed.status_code == 403
        ok = requests.get(
            f"{base}/v1/requests/{streamed}/body", timeout=10, headers={"X-Halton-Token": token}
        )
        assert ok.status_code == 200 and ok.json()["body"]["message"]["parts"]
    finally:
        meter.stop()

    # Purge: by date (nothing before yesterday), by project, and expiry.
    env = meter.run_env()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    purged = subprocess.run(
        [METER, "capture", "purge", "--before", yesterday],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "purged 0 bodies" in purged.stdout
    status = subprocess.run(
        [METER, "capture", "status", "--json"], env=env, capture_output=True, text=True, timeout=30
    )
    assert json.loads(status.stdout)["stored"][0]["bodies"] == 2
    store = BodyStore(meter.home / "bodies.sqlite")
    assert store.expire(30) == 0
    assert store.expire(30, now=datetime.now(UTC) + timedelta(days=31)) == 2
    store.close()
    assert list(BodyStore(meter.home / "bodies.sqlite").ids()) == []


def _up(base: str) -> bool:
    try:
        return requests.get(base + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False
