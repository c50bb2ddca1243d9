"""One call as `show`, the API and the dashboard present it: the ledger row's numbers beside
the captured conversation (if its project captured it). Plain data; every renderer shows the
strings as text, never as markup."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from halton_meter.bodies.store import BodyStore
from halton_meter.money import usd_string

ROW_FIELDS = (
    "id",
    "requested_at",
    "project",
    "provider",
    "api",
    "model",
    "status",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "latency_ms",
)


def call_view(
    con: sqlite3.Connection, store: BodyStore, call_id: str, with_body: bool
) -> dict[str, Any] | None:
    """None when the ledger has no such row."""
    found = con.execute(
        f"SELECT {', '.join(ROW_FIELDS)} FROM requests WHERE id = ?", (call_id,)
    ).fetchone()
    if found is None:
        return None
    view: dict[str, Any] = dict(zip(ROW_FIELDS, found, strict=True))
    view["cost_usd"] = usd_string(view["cost_nanousd"])
    body = store.get(call_id)
    view["body_captured"] = body is not None
    if body is not None and with_body:
        document = body.document
        view["body"] = {
            "conversation": conversation(document.get("request") or ""),
            "request": document.get("request"),
            "response": document.get("response"),
            "message": document.get("message"),
            "raw_events": document.get("raw_events"),
            "truncated": document.get("truncated") or {},
            "redactions": body.redactions,
            "stored_bytes": body.stored_bytes,
            "original_bytes": body.original_bytes,
        }
    return view


def conversation(request: str) -> list[dict[str, str]]:
    """The request's turns, in order, as (role, text): system prompt, messages, tool results.
    A body that is not JSON (cut by the cap) is one turn holding the raw text."""
    try:
        obj = json.loads(request)
    except ValueError:
        return [{"role": "request", "text": request}] if request else []
    if not isinstance(obj, dict):
        return [{"role": "request", "text": request}]
    turns: list[dict[str, str]] = []
    for key in ("system", "instructions", "systemInstruction", "system_instruction"):
        if key in obj and (text := _text(obj[key])):
            turns.append({"role": "system", "text": text})
    items = obj.get("messages") or obj.get("contents") or obj.get("input") or obj.get("prompt")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        role = str(item.get("role") or item.get("type") or "user")
        text = _text(item.get("content", item.get("parts", item.get("output", item))))
        if text:
            turns.append({"role": role, "text": text})
    return turns


def _text(value: Any) -> str:
    """Every text in a content value: a string, a list of parts, or a part."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (_text(v) for v in value) if t)
    if isinstance(value, dict):
        for key in ("text", "thinking", "content", "parts", "output", "result"):
            if key in value and (text := _text(value[key])):
                return text
        for key in ("input", "args", "arguments", "functionCall", "toolUse", "functionResponse"):
            if key in value:
                name = value.get("name") or ""
                return f"{name} {json.dumps(value[key], ensure_ascii=False)}".strip()
    return ""
