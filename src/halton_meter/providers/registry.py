"""Every wire format by name: the one place a new wire format is listed.

`providers/hosts.py` points hosts at these objects; config validates `[[endpoints]] wire`
against `DECLARABLE`; pricing reads a row's billing rule from `wire_format(row.wire)`. A lookup
is one dict access, so it is fine in a mitmproxy hook.
"""

from __future__ import annotations

from . import anthropic, azure, bedrock, gemini, openai, selftest, vertex
from .wireformat import WireFormat

# Adding a wire format: its module, and one entry here (then its hosts in hosts.py).
_ALL: tuple[WireFormat, ...] = (
    anthropic.MESSAGES,
    openai.CHAT,
    openai.COMPLETIONS,
    openai.RESPONSES,
    openai.EMBEDDINGS,
    openai.CHATGPT_CODEX,
    gemini.GEMINI,
    gemini.CODE_ASSIST,
    bedrock.BEDROCK,
    vertex.VERTEX,
    azure.AZURE,
    selftest.SELF_TEST,
)

WIRES: dict[str, WireFormat] = {wire.name: wire for wire in _ALL}
assert len(WIRES) == len(_ALL), "two wire formats share a name"

# What a user's `[[endpoints]] wire = "…"` may name.
DECLARABLE: tuple[str, ...] = tuple(wire.name for wire in _ALL if wire.declarable)


def wire_format(name: str | None) -> WireFormat | None:
    """The wire format of that name; None for no name or one this release does not know (a
    row written by a newer release)."""
    return WIRES.get(name) if name is not None else None


# --- rows written before the ledger had a `wire` column ---------------------------------------
#
# Migration 5 of the local ledger, the team server's migration 3, and the server's ingest of a
# row from an older machine all derive `wire` from the row's host and api with this one rule,
# first match wins (None: any). Rows of a user endpoint declared with Code Assist's wire cannot
# be told from the Developer API's by host and api, so they become "gemini"; such an endpoint's
# token counts may become "anthropic-messages" (both free). Frozen: rows written since carry
# their wire, so a new wire format never needs a line here.
_BACKFILL: tuple[tuple[str | None, str | None, str], ...] = (
    (selftest.SELF_TEST_HOST, None, "self-test"),
    (None, "self-test", "self-test"),
    ("cloudcode-pa.googleapis.com", None, "gemini-code-assist"),
    ("generativelanguage.googleapis.com", "count_tokens", "gemini"),
    (None, "messages", "anthropic-messages"),
    (None, "count_tokens", "anthropic-messages"),
    (None, "chat", "openai-chat"),
    (None, "completions", "openai-completions"),
    (None, "responses", "openai-responses"),
    (None, "embeddings", "openai-embeddings"),
    (None, "generate_content", "gemini"),
    (None, "stream_generate_content", "gemini"),
    (None, "embed_content", "gemini"),
    (None, "batch_embed_contents", "gemini"),
)


def backfill_wire(host: str | None, api: str | None) -> str | None:
    """The wire format of a row recorded without one (None when the rule does not say)."""
    for rule_host, rule_api, wire in _BACKFILL:
        if (rule_host is None or rule_host == host) and (rule_api is None or rule_api == api):
            return wire
    return None


def row_wire(wire: str | None, host: str | None, api: str | None) -> str | None:
    """A stored row's wire format: its own, or the backfill rule's for an older row."""
    return wire if wire else backfill_wire(host, api)


def backfill_wire_sql(host: str = "host", api: str = "api") -> str:
    """`backfill_wire` as an SQL CASE over two columns (SQLite and PostgreSQL alike)."""

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    branches = []
    for rule_host, rule_api, wire in _BACKFILL:
        tests = [
            f"{column} = {literal(value)}"
            for column, value in ((host, rule_host), (api, rule_api))
            if value is not None
        ]
        branches.append(f"WHEN {' AND '.join(tests)} THEN {literal(wire)}")
    return f"CASE {' '.join(branches)} ELSE NULL END"
