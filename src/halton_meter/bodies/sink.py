"""On the ledger writer thread: decide, decode, assemble, redact, cap and store one body.

The stored document (JSON, then compressed):

    {"request": "<the request body as sent, redacted>",
     "response": "<a whole response body as received, redacted>" | null,
     "message": {"model", "stop_reason", "parts": [{"type": "text"|"thinking"|"tool_call", …}]},
     "raw_events": "<the stream as received, redacted>" | null   ([body_capture] raw_events),
     "truncated": {"request": n, "response": n, "stream": n}      (bytes cut by the caps)}

Headers are never part of it. Redaction runs on every string before it is compressed, so no
secret reaches the disk; a cap cuts after redaction (a cut secret could escape a pattern).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from halton_meter.bodies.assemble import assemble_body, assemble_socket, assemble_stream
from halton_meter.bodies.material import BodyMaterial
from halton_meter.bodies.policy import CapturePolicy, haltonrc_says
from halton_meter.bodies.redact import Redactor
from halton_meter.bodies.store import BodyStore
from halton_meter.decoding import decode_body
from halton_meter.ledger.build import CallFacts
from halton_meter.ledger.row import LedgerRow

log = logging.getLogger(__name__)

# Redaction looks this far past the cap, so a secret straddling it is still recognised.
_REDACT_MARGIN = 16 * 1024


def truncation_marker(cut: int) -> str:
    return f"\n…[truncated by Halton Meter: {cut} more bytes]"


class BodySink:
    def __init__(self, policy: CapturePolicy, store: BodyStore) -> None:
        self.policy = policy
        self.store = store
        self.redactor = Redactor(policy.settings.redact)
        self.stored = 0

    def row_built(self, row: LedgerRow, facts: CallFacts) -> None:
        """Called for every row; returns at once unless the row's project captures."""
        material = facts.body
        if not isinstance(material, BodyMaterial):
            return
        haltonrc = haltonrc_says(facts.lookup)
        if not self.policy.captures(row.project, row.model, row.provider, haltonrc):
            return
        try:
            self._store(row, material)
        except Exception:  # never lose a ledger row over a body
            log.exception("body of %s not stored", row.id)

    def _store(self, row: LedgerRow, material: BodyMaterial) -> None:
        settings = self.policy.settings
        cap = settings.max_call_bytes
        found: Counter[str] = Counter()
        cut: dict[str, int] = {}
        request = decode_body(material.request, material.request_encoding) or b""
        original = len(request)
        document: dict[str, Any] = {
            "request": self._text(request, "request", cap, found, cut),
            "response": None,
            "message": None,
            "raw_events": None,
        }
        if material.stream is not None:
            stream = material.stream.data()
            original += len(stream) + material.stream.dropped
            if material.stream.dropped:
                cut["stream"] = material.stream.dropped
            document["message"] = assemble_stream(stream, material.content_type)
            if settings.raw_events:
                document["raw_events"] = self._text(stream, "raw_events", cap, found, cut)
        elif material.socket_messages:
            original += sum(len(m) for m in material.socket_messages)
            document["message"] = assemble_socket(material.socket_messages)
        elif material.response is not None:
            body = decode_body(material.response, material.response_encoding) or b""
            original += len(body)
            document["response"] = self._text(body, "response", cap, found, cut)
            document["message"] = assemble_body(body)
        if document["message"] is not None:
            document["message"] = self._redact_tree(document["message"], cap, found, cut)
        document["truncated"] = cut
        self.store.put(
            id=row.id,
            project=row.project,
            requested_at=row.requested_at,
            provider=row.provider,
            model=row.model,
            document=document,
            original_bytes=original,
            truncated=bool(cut),
            redactions=dict(found),
            max_project_bytes=settings.max_project_bytes,
        )
        self.stored += 1

    def _text(
        self, data: bytes, name: str, cap: int, found: Counter[str], cut: dict[str, int]
    ) -> str:
        text = data[: cap + _REDACT_MARGIN].decode("utf-8", "replace")
        text, kinds = self.redactor.redact(text)
        found.update(kinds)
        encoded = text.encode()
        over = len(encoded) - cap + max(0, len(data) - cap - _REDACT_MARGIN)
        if len(encoded) > cap:
            text = encoded[:cap].decode("utf-8", "ignore")
        if over > 0:
            cut[name] = cut.get(name, 0) + over
            text += truncation_marker(over)
        return text

    def _redact_tree(self, value: Any, cap: int, found: Counter[str], cut: dict[str, int]) -> Any:
        if isinstance(value, str):
            return self._text(value.encode(), "message", cap, found, cut)
        if isinstance(value, list):
            return [self._redact_tree(v, cap, found, cut) for v in value]
        if isinstance(value, dict):
            return {k: self._redact_tree(v, cap, found, cut) for k, v in value.items()}
        return value
