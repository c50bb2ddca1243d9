"""The OpenAI Python SDK's Responses WebSocket (`client.responses.connect()`, on the
`websockets` package), as a test runs it through the meter.

Usage: python -m tests.clients.ws_client BASE_URL SCENARIO [CA_FILE]

Sends a warm-up `response.create` (`generate: false`), one made with the SDK's typed
`response.create`, and one chained with `previous_response_id`, each as exact text; prints
JSON: for each request, the text sent and every message received, byte for byte, so a test
can compare them with what the fake server recorded. SCENARIO `cut` asks the server to drop
the connection in the middle of the second response; `tunnel` trusts only CA_FILE (the fake's
test CA), which works only if the meter did not decrypt the connection. With
CHATGPT_ACCOUNT_ID set, the upgrade names that account (`chatgpt-account-id`), as Codex
logged in with ChatGPT does. With WS_CLIENT_WAIT_FOR set, the client waits (≤ 60 s) for that
file to exist before the chained request, on the same socket.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import uuid
from typing import Any

import openai

TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}
MODEL = "gpt-4.1"


def _until_terminal(connection: Any) -> list[str]:
    received = []
    while True:
        raw = connection.recv_bytes()
        text = raw.decode() if isinstance(raw, bytes) else raw
        received.append(text)
        if json.loads(text).get("type") in TERMINAL:
            return received


def _wait_for_file(path: str | None) -> None:
    deadline = time.monotonic() + 60
    while path and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    base_url, scenario = sys.argv[1], sys.argv[2]
    # permessage-deflate, as Codex offers it (the SDK turns it off by default).
    options: dict[str, Any] = {"compression": "deflate"}
    if scenario == "tunnel":
        options["ssl"] = ssl.create_default_context(cafile=sys.argv[3])
    client = openai.OpenAI(api_key="sk-fake-ws-client-secret", base_url=base_url)
    exchanges: list[dict[str, Any]] = []
    outcome = "ok"
    account = os.environ.get("CHATGPT_ACCOUNT_ID")
    headers = {"chatgpt-account-id": account} if account else {}
    with client.responses.connect(
        websocket_connection_options=options, extra_headers=headers
    ) as connection:
        warmup = {
            "type": "response.create",
            "model": MODEL,
            "input": [{"type": "message", "role": "user", "content": "warm up"}],
            "store": False,
            "generate": False,
        }
        text = json.dumps(warmup)
        connection.send_raw(text)
        exchanges.append({"sent": text, "received": _until_terminal(connection)})
        first = {
            "type": "response.create",
            "model": MODEL,
            "input": f"Say hello ({uuid.uuid4()})",
            "store": False,
            "metadata": {"x-fake-scenario": "cut" if scenario == "cut" else "ok"},
        }
        text = json.dumps(first)
        connection.send_raw(text)
        try:
            received = _until_terminal(connection)
        except Exception as error:  # the cut: the socket ends before the terminal event
            exchanges.append({"sent": text, "received": [], "error": type(error).__name__})
            outcome = "cut"
        else:
            exchanges.append({"sent": text, "received": received})
            previous = json.loads(received[-1])["response"]["id"]
            _wait_for_file(os.environ.get("WS_CLIENT_WAIT_FOR"))
            # The SDK's own typed request, chained to the previous response.
            connection.response.create(
                model=MODEL, input="And again", previous_response_id=previous, store=False
            )
            events = []
            error = None
            for event in connection:
                events.append(event.type)
                if event.type == "error":
                    error = event.to_dict()
                if event.type in TERMINAL:
                    break
            exchanges.append({"sent": None, "events": events, "error": error})
    print(json.dumps({"outcome": outcome, "exchanges": exchanges}))


if __name__ == "__main__":
    main()
