"""Helpers for the API tests: a meter with the API on, a plain HTTP client, seeded rows."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from halton_meter.ledger.row import LedgerRow, new_request_id
from halton_meter.ledger.writer import LedgerWriter
from halton_meter.timewindow import ledger_timestamp
from tests.conftest import Meter, wait_for
from tests.test_clients import chat_body, metered
from tests.test_ledger import Ready, sample_row

OPENAI_CHAT = "https://api.openai.com/v1/chat/completions"


@dataclass
class Api:
    """Talks to the daemon's API directly (never through a proxy from the environment)."""

    meter: Meter
    port: int

    @classmethod
    def of(cls, meter: Meter) -> Api:
        config = (meter.home / "config.toml").read_text()
        found = re.search(r"api_port = (\d+)", config)
        assert found
        api = cls(meter, int(found.group(1)))
        wait_for(lambda: api.answers(), 15, "the API to answer")
        return api

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.meter.home / "api-token").read_text().strip()

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        return session

    def answers(self) -> bool:
        try:
            return self.session().get(self.base + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def get(self, path: str, **headers: str) -> requests.Response:
        return self.session().get(self.base + path, headers=headers, timeout=30)

    def json(self, path: str) -> Any:
        answer = self.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def post(self, path: str, body: Any, **headers: str) -> requests.Response:
        headers = {"Content-Type": "application/json", **headers}
        return self.session().post(
            self.base + path, data=json.dumps(body), headers=headers, timeout=60
        )


def openai_call(meter: Meter, project: str, model: str, out: Path) -> None:
    """One non-streaming gpt call through the meter with curl (the fake echoes the model)."""
    done = metered(
        meter,
        project,
        "curl",
        "-sS",
        "-o",
        str(out),
        OPENAI_CHAT,
        "-H",
        "content-type: application/json",
        "-H",
        "authorization: Bearer sk-test",
        "--data",
        json.dumps(chat_body(model, stream=False)),
    )
    assert done.returncode == 0, done.stderr


def seed_rows(ledger: Path, specs: list[dict[str, Any]]) -> list[LedgerRow]:
    """Rows with the given fields (`at`: a datetime) written by a real ledger writer."""
    rows = []
    for spec in specs:
        fields = dict(spec)
        moment: datetime = fields.pop("at")
        rows.append(
            replace(
                sample_row(),
                id=new_request_id(int(moment.timestamp() * 1000)),
                requested_at=ledger_timestamp(moment),
                **fields,
            )
        )
    writer = LedgerWriter(ledger)
    writer.start()
    for row in rows:
        writer.submit(Ready(row))
    assert writer.close()
    return rows


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)
