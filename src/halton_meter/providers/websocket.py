"""WebSocket messages of the JSON-typed protocols (Responses over a WebSocket): which kind a
message is, decided in a mitmproxy hook without decoding it.

Each message of these protocols is one JSON object whose top-level ``type`` names it
(``response.create`` from the client; ``response.created`` … ``response.completed`` from the
server, the same events as the SSE stream's). OpenAI, Codex and the fake server all write
``type`` first, so a look at the first bytes answers in O(1). A message that puts it elsewhere
is decoded when small (a delta is a few hundred bytes) and otherwise treated as an event of no
interest: a terminal event is never guessed from text that merely quotes its name (a model
writing about this protocol), since that would close the call early.
"""

from __future__ import annotations

import re

from ._common import get_str, loads

# The client's request to generate one response; one ledger row each.
CREATE = "response.create"
# Server events that end a response: its usage is in `response.usage`.
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
CREATED = "response.created"
# A wrapped HTTP error (`status` = what a POST would have returned), or a bare stream error:
# either ends the request in flight.
ERROR = "error"

_HEAD = re.compile(rb'\A\s*\{\s*"type"\s*:\s*"([A-Za-z0-9_.\-]{1,100})"')
_HEAD_BYTES = 160
SMALL_MESSAGE = 64 * 1024  # decoded to find a `type` that is not written first


def message_type(data: bytes) -> str | None:
    """The message's top-level ``type``, or None (binary junk, no type, a large message that
    does not start with it). Never raises."""
    try:
        found = _HEAD.match(data[:_HEAD_BYTES])
        if found is not None:
            return found.group(1).decode("ascii")
        if len(data) > SMALL_MESSAGE:
            return None
        return get_str(loads(data), "type")
    except Exception:
        return None
