"""The machine's side of pairing: ask for a code, wait for an admin's approval, keep the token.

The machine identifies itself with the ledger's `machine_uid`, so pairing again (after a
revoke, or a lost credentials file) is the same machine on the server and its rows stay
deduplicated."""

from __future__ import annotations

import getpass
import socket
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from halton_meter.cloud.credentials import Credentials, save_credentials
from halton_meter.cloud.http import request_json
from halton_meter.cloud.sync import read_state, set_target
from halton_meter.paths import Paths


class PairingFailed(Exception):
    """The server refused, the code expired, or nobody approved it in time."""


def normalise_server_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise PairingFailed(f"{url!r} is not a server URL like https://meter.example.com")
    return url


def request_code(
    server_url: str, con: sqlite3.Connection, workspace: str, name: str | None
) -> dict[str, Any]:
    body = {
        "machine_uid": read_state(con).machine_uid,
        "machine_name": name or socket.gethostname(),
        "user": getpass.getuser(),
        "workspace": workspace,
    }
    status, answer = request_json("POST", f"{server_url}/v1/pairing", body)
    if status != 200:
        raise PairingFailed(f"the server refused pairing: HTTP {status}: {answer.get('error')}")
    return answer


def wait_for_approval(
    server_url: str,
    code: str,
    poll_secret: str,
    *,
    timeout: float = 600.0,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, answer = request_json(
            "POST", f"{server_url}/v1/pairing/{code}/poll", {"poll_secret": poll_secret}
        )
        if status != 200:
            raise PairingFailed(f"HTTP {status}: {answer.get('error')}")
        if answer["status"] == "approved":
            return answer
        if answer["status"] in ("expired", "claimed"):
            raise PairingFailed(f"code {code} {answer['status']}; run `cloud connect` again")
        sleep(interval)
    raise PairingFailed(f"code {code} was not approved within {timeout:.0f} s")


def finish(
    paths: Paths, con: sqlite3.Connection, server_url: str, answer: dict[str, Any]
) -> Credentials:
    """Keep the token (0600) and point the sync at this server and workspace. An answer
    without a workspace is refused rather than kept: such a token could never sync."""
    if not answer.get("workspace_id") or not answer.get("workspace"):
        raise PairingFailed("the server approved the code but named no workspace; pair again")
    credentials = Credentials(
        server_url=server_url,
        token=answer["token"],
        workspace_id=answer["workspace_id"],
        workspace=answer["workspace"],
        machine_id=answer["machine_id"],
        machine_name=answer["machine_name"],
        user=answer["user"],
        paired_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_credentials(paths, credentials)
    set_target(con, credentials.sync_target)
    return credentials
