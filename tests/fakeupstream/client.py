"""Test-side helpers: run the fake upstream as a subprocess and drive its control endpoints.

A subprocess (not a thread) keeps the fake's event loop off the test's GIL, so timing-sensitive
proxy tests are not skewed by the fake, and a crash in either side stays visible.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from .certs import TestPKI, make_test_pki

REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeUpstreamControl:
    """Client for `/__fake/*` (any Host works) plus the TLS settings a direct client needs."""

    def __init__(self, port: int, pki: TestPKI, host: str = "127.0.0.1") -> None:
        self.port = port
        self.pki = pki
        self.host = host

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts only the test CA (verification of 127.0.0.1 works: it is in the SANs)."""
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.ssl_context(), timeout=10
        )
        try:
            data = b"" if body is None else json.dumps(body).encode()
            headers = {"content-length": str(len(data))} if method == "POST" else {}
            conn.request(method, path, body=data or None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status} {payload!r}")
            return json.loads(payload)
        finally:
            conn.close()

    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests: seq, method, host, path (with query), headers (lower-case names),
        body (text), json (parsed body or None), sni, provider, scenario."""
        return list(self._call("GET", "/__fake/requests"))

    def set_admin_reports(self, dataset: dict[str, Any]) -> int:
        """What the providers' organisation usage and cost reports contain (admin_wire.py):
        `{"keys": {"anthropic": [...], "openai": [...]}, "anthropic": {"usage": [...], "cost":
        [...], "page_size": N}, "openai": {...}}`, each row with its `day` (YYYY-MM-DD)."""
        return int(self._call("POST", "/__fake/admin-reports", dataset)["usage_rows"])

    def reset(self) -> int:
        return int(self._call("POST", "/__fake/reset")["cleared"])

    def release(self) -> int:
        """Resume streams held by `x-fake-hold-first: 1`; returns how many were waiting."""
        return int(self._call("POST", "/__fake/release")["released"])

    def held(self) -> int:
        return int(self._call("GET", "/__fake/held")["held"])

    def wait_held(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until `count` streams are parked after their first event."""
        deadline = time.monotonic() + timeout
        while self.held() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} held streams after {timeout} s")
            time.sleep(0.01)


class FakeUpstreamProcess(FakeUpstreamControl):
    """`python -m tests.fakeupstream` as a child process; use as a context manager or call
    `stop()`. SIGTERM makes the child exit cleanly."""

    def __init__(self, pki_dir: Path, *, timeout: float = 15.0) -> None:
        pki_dir = Path(pki_dir)
        pki = make_test_pki(pki_dir)  # generated here once; the child only reuses it
        ready = pki_dir / f".ready-{uuid.uuid4().hex}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fakeupstream",
                "--port",
                "0",
                "--pki",
                str(pki_dir),
                "--ready-file",
                str(ready),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            port = _wait_for_port(ready, self.proc, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            ready.unlink(missing_ok=True)
        super().__init__(port, pki)

    def stop(self) -> int | None:
        """Terminate (then kill if it lingers); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> FakeUpstreamProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_for_port(ready: Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return int(ready.read_text().strip())
        if proc.poll() is not None:
            raise RuntimeError(f"fake upstream exited early with code {proc.returncode}")
        time.sleep(0.01)
    raise TimeoutError(f"fake upstream not ready after {timeout} s")
