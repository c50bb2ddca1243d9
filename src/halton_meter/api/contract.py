"""The shapes of the dashboard contract (docs/api.md) that both the local API and the team
server answer with: one amount of money, one request, the requests CSV's columns.

Plain data over plain dicts and nothing that reads a database, so the team server (PostgreSQL)
shares them without importing the local ledger's SQLite side.
"""

from __future__ import annotations

from typing import Any

from halton_meter.money import minor_units, usd_string


def money(nanousd: int | None, prefix: str = "") -> dict[str, Any]:
    """`<prefix>cost_usd_minor_units`, `<prefix>cost_usd` (exact string) and
    `<prefix>cost_nanousd` for one amount; all null when unpriced, never 0."""
    return {
        f"{prefix}cost_usd_minor_units": minor_units(nanousd),
        f"{prefix}cost_usd": usd_string(nanousd),
        f"{prefix}cost_nanousd": nanousd,
    }


def subscription_value(requests: int, nanousd: int) -> dict[str, Any]:
    """What a subscription's calls would have cost at API prices: apart from money spent
    (`cost_*` counts only calls not billed by a subscription), never added to it."""
    return {
        "subscription_requests": requests,
        "subscription_value_usd_minor_units": minor_units(nanousd),
        "subscription_value_usd": usd_string(nanousd),
        "subscription_value_nanousd": nanousd,
    }


def request_item(row: dict[str, Any]) -> dict[str, Any]:
    """One stored request (its ledger columns by name) as the contract's request item."""
    reasoning = row["reasoning_tokens"] or 0
    return {
        "id": row["id"],
        "requested_at": row["requested_at"],
        "project": row["project"],
        "provider": row["provider"],
        "api": row["api"],
        "model": row["model"] or row["model_requested"] or "(unknown)",
        "mode": "thinking" if reasoning > 0 else "standard",
        "input_tokens": row["input_tokens"] or 0,
        "output_tokens": row["output_tokens"] or 0,
        "thinking_tokens": reasoning,
        "cache_read_tokens": row["cache_read_tokens"] or 0,
        "cache_write_tokens": row["cache_write_tokens"] or 0,
        **money(row["cost_nanousd"]),
        "unpriced": row["cost_nanousd"] is None,
        "price_source": row["price_source"],
        "latency_ms": row["latency_ms"],
        "ttft_ms": row["ttft_ms"],
        "tokens_complete": bool(row["tokens_complete"]),
        "status": "success" if row["status"] == "ok" else "error",
        "error_class": row["error_class"],
        "http_status": row["http_status"],
        "stream": bool(row["stream"]),
        # api | subscription | unknown: a subscription call's cost is its API-equivalent value.
        "billing": row.get("billing") or "unknown",
    }


# The columns of /v1/projects/{slug}/requests.csv, taken from each request item.
CSV_FIELDS = (
    "id",
    "requested_at",
    "project",
    "provider",
    "api",
    "model",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "thinking_tokens",
    "cost_usd",
    "cost_usd_minor_units",
    "cost_nanousd",
    "unpriced",
    "price_source",
    "latency_ms",
    "status",
    "error_class",
    "tokens_complete",
    "billing",
)


def csv_attachment(slug: str) -> dict[str, str]:
    """The Content-Disposition of a project's requests CSV. Header values are Latin-1:
    anything but ASCII letters, digits, "-" and "_" in the slug becomes "_"."""
    filename = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in slug)
    return {"Content-Disposition": f'attachment; filename="{filename}-requests.csv"'}
