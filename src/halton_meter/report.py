"""The documented, stable shapes of `requests --json` and `report --json/--csv` (docs/cli.md)."""

from __future__ import annotations

import csv
import io
from typing import Any

from halton_meter.ledger.queries import Report, Totals
from halton_meter.money import usd_string

REQUEST_FIELDS_HIDDEN = ("raw_usage",)


def request_json(row: dict[str, Any]) -> dict[str, Any]:
    """One `requests --json` object: the ledger row's fields plus `cost_usd`."""
    item = {key: value for key, value in row.items() if key not in REQUEST_FIELDS_HIDDEN}
    item["cost_usd"] = usd_string(row["cost_nanousd"])
    return item


def totals_json(totals: Totals) -> dict[str, Any]:
    priced = totals.requests - totals.unpriced_requests
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "input_tokens": totals.input_tokens,
        "cache_read_tokens": totals.cache_read_tokens,
        "cache_write_tokens": totals.cache_write_tokens,
        "output_tokens": totals.output_tokens,
        "reasoning_tokens": totals.reasoning_tokens,
        "cost_nanousd": totals.cost_nanousd,
        "cost_usd": usd_string(totals.cost_nanousd),
        "priced_requests": priced,
        "unpriced_requests": totals.unpriced_requests,
        "avg_latency_ms": totals.avg_latency_ms,
        "p95_latency_ms": totals.p95_latency_ms,
        # `cost_*` is money spent; a subscription's calls are valued apart, never added to it.
        "subscription_requests": totals.subscription_requests,
        "subscription_value_nanousd": totals.subscription_value_nanousd,
        "subscription_value_usd": usd_string(totals.subscription_value_nanousd),
    }


def report_json(
    report: Report, group_by: list[str], window: dict[str, str | None]
) -> dict[str, Any]:
    return {
        "window": window,
        "group_by": group_by,
        "totals": totals_json(report.totals),
        "groups": [
            {"key": dict(zip(group_by, key, strict=True)), **totals_json(totals)}
            for key, totals in report.groups
        ],
        "unpriced": report.unpriced,
    }


def report_csv(report: Report, group_by: list[str]) -> str:
    """One line per group (or one totals line when not grouped)."""
    rows = report.groups or [((), report.totals)]
    out = io.StringIO()
    names = [*group_by, *totals_json(report.totals)]
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for key, totals in rows:
        writer.writerow({**dict(zip(group_by, key, strict=True)), **totals_json(totals)})
    return out.getvalue()
