"""`GET /metrics` in the Prometheus text format (version 0.0.4).

Counters come from the ledger's daily rollup (so they survive restarts and count every writer),
the writer's lag and backlog from the daemon itself, and the passthrough counts from the edge's
`GET /status`, since the edge, not the daemon, sees the traffic it tunnels unmetered.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from halton_meter.export import genai
from halton_meter.ledger import spans
from halton_meter.ledger.quota import quota_view
from halton_meter.ledger.rollup import Span, aggregate


class WriterLike(Protocol):
    rows_written: int
    rows_dropped: int

    def pending(self) -> int: ...

    def health(self) -> dict[str, object]: ...


class CommittedRow(Protocol):
    requested_at: str
    latency_ms: float | None


class ExportStatsLike(Protocol):
    rows_offered: int
    rows_dropped: int
    rows_measured: int
    metric_exports: int
    metric_export_failures: int
    spans_offered: int
    spans_exported: int
    spans_dropped: int


@dataclass
class LedgerLag:
    """Fed by the writer thread after each commit: how long rows waited to be written."""

    last_lag_seconds: float = 0.0
    max_lag_seconds: float = 0.0
    commits: int = 0
    last_commit_at: float | None = None
    # The OpenTelemetry export's counts when `[export.otlp]` is on (export/otlp.py).
    export_stats: ExportStatsLike | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def on_commit(self, batch: Sequence[CommittedRow]) -> None:
        """The lag of a batch: its oldest call's end (start + latency) to the commit."""
        now = time.time()
        ends = []
        for row in batch:
            try:
                started = datetime.fromisoformat(row.requested_at.replace("Z", "+00:00"))
            except ValueError:
                continue
            ends.append(started.timestamp() + (row.latency_ms or 0.0) / 1000)
        lag = max(0.0, now - min(ends)) if ends else 0.0
        with self._lock:
            self.commits += 1
            self.last_commit_at = now
            self.last_lag_seconds = lag
            self.max_lag_seconds = max(self.max_lag_seconds, lag)


def _labels(**values: str) -> str:
    escaped = (
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in values.items()
    )
    return "{" + ",".join(escaped).replace("\n", "\\n") + "}"


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self.name = name

    def add(self, value: float | int | str, **labels: str) -> None:
        rendered = _labels(**labels) if labels else ""
        self.lines.append(f"{self.name}{rendered} {value}")


TOKEN_KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")


def render(
    con: sqlite3.Connection,
    writer: WriterLike | None,
    lag: LedgerLag | None,
    edge_status: Callable[[], dict[str, Any] | None],
    quota_warn_at: float = 0.8,
    reconcile_state: dict[str, Any] | None = None,
) -> str:
    groups = aggregate(con, Span(), ["project", "provider", "model"])
    requests = _Family("halton_meter_requests_total", "counter", "LLM calls recorded.")
    errors = _Family("halton_meter_errors_total", "counter", "Recorded calls that failed.")
    unpriced = _Family(
        "halton_meter_unpriced_requests_total", "counter", "Calls whose model has no price."
    )
    tokens = _Family("halton_meter_tokens_total", "counter", "Tokens by kind.")
    cost = _Family(
        "halton_meter_cost_usd_total",
        "counter",
        "Money spent in USD: priced calls not billed by a subscription.",
    )
    value = _Family(
        "halton_meter_subscription_value_usd_total",
        "counter",
        "API-equivalent value in USD of calls billed by a subscription (not money spent).",
    )
    for row in groups:
        key = {"project": row["project"], "provider": row["provider"], "model": row["model"]}
        requests.add(row["requests"], **key)
        errors.add(row["errors"], **key)
        unpriced.add(row["unpriced_requests"], **key)
        for kind in TOKEN_KINDS:
            tokens.add(row[f"{kind}_tokens"], **key, kind=kind)
        # Exact decimal text: a float would lose nano-dollars on large totals.
        cost.add(_decimal_usd(int(row["cost_nanousd"])), **key)
        if row["subscription_requests"]:
            value.add(_decimal_usd(int(row["subscription_value_nanousd"])), **key)
    families: list[_Family] = [requests, errors, unpriced, tokens, cost, value]
    families += genai_families(con)
    families += _quota_families(con, quota_warn_at)
    families += _unmetered_families(con)
    families += _reconcile_families(reconcile_state)
    if writer is not None:
        families += _writer_families(writer, lag)
    families += _edge_families(edge_status())
    return "".join(line + "\n" for family in families for line in family.lines)


# Label values kept as they are; later ones (by first day seen, so a series never moves) are
# folded into "other". Bounds the series count whatever the ledger holds (docs/api.md).
MAX_PROJECT_LABELS = 25
MAX_MODEL_LABELS = 25


class _Histogram:
    """A histogram from the rollup's sums: only the +Inf bucket, `_sum` and `_count` (per-call
    buckets are in the OTLP export, where each call is seen)."""

    def __init__(self, name: str, help_text: str) -> None:
        self.lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        self.name = name

    def add(self, total: float | int | str, count: int, **labels: str) -> None:
        self.lines.append(f"{self.name}_bucket{_labels(**labels, le='+Inf')} {count}")
        self.lines.append(f"{self.name}_sum{_labels(**labels)} {total}")
        self.lines.append(f"{self.name}_count{_labels(**labels)} {count}")


def _first_seen(con: sqlite3.Connection, column: str) -> list[str]:
    order = con.execute(
        f"SELECT {column} FROM daily_rollup GROUP BY {column} ORDER BY MIN(day), {column}"
    ).fetchall()
    return [str(row[0]) for row in order]


def genai_families(con: sqlite3.Connection) -> list[Any]:
    """The GenAI semantic conventions' names as Prometheus renders OTel metrics (dots become
    underscores, `s` becomes `_seconds`, counters end in `_total`), from the daily rollup."""
    projects = genai.capped(_first_seen(con, "project"), MAX_PROJECT_LABELS)
    models = genai.capped(_first_seen(con, "model"), MAX_MODEL_LABELS)
    sums: dict[tuple[str, ...], dict[str, int | float]] = {}
    for row in aggregate(con, Span(), ["project", "provider", "api", "model"]):
        key = (
            genai.operation_name(row["api"]),
            genai.provider_name(row["provider"]),
            models.get(row["model"], "other"),
            projects.get(row["project"], "other"),
        )
        into = sums.setdefault(key, {})
        for name in (*TOKEN_COLUMNS, "requests", "latency_count", "cost_nanousd"):
            into[name] = into.get(name, 0) + int(row[name])
        into["subscription_value_nanousd"] = into.get("subscription_value_nanousd", 0) + int(
            row["subscription_value_nanousd"]
        )
        into["latency_ms_sum"] = into.get("latency_ms_sum", 0.0) + float(row["latency_ms_sum"])
    usage = _Histogram(genai.TOKEN_USAGE.replace(".", "_"), "Number of input and output tokens.")
    duration = _Histogram(
        genai.OPERATION_DURATION.replace(".", "_") + "_seconds", "GenAI operation duration."
    )
    counters = {
        kind: _Family(
            name.replace(".", "_") + "_total", "counter", f"Tokens used ({kind}), a counter."
        )
        for kind, name in genai.USAGE_COUNTERS.items()
    }
    cost = _Family(
        genai.COST.replace(".", "_") + "_total",
        "counter",
        "Cost of calls; halton_billing=subscription is the API-equivalent value of calls a "
        "subscription paid for (not money spent).",
    )
    for (operation, provider, model, project), total in sorted(sums.items()):
        labels = {
            "gen_ai_operation_name": operation,
            "gen_ai_provider_name": provider,
            "gen_ai_response_model": model,
            "halton_project": project,
        }
        counts = _TokenSums(total)
        for kind, count in ((k, read(counts)) for k, read in genai.TOKEN_TYPES.items()):
            usage.add(count, int(total["requests"]), **labels, gen_ai_token_type=kind)
            counters[kind].add(count, **labels, gen_ai_token_modality="unknown")
        seconds = f"{float(total['latency_ms_sum']) / 1000:.6f}"
        duration.add(seconds, int(total["latency_count"]), **labels)
        currency = {"gen_ai_usage_cost_currency": "USD"}
        cost.add(
            _decimal_usd(int(total["cost_nanousd"])), **labels, **currency, halton_billing="api"
        )
        if total["subscription_value_nanousd"]:
            value = _decimal_usd(int(total["subscription_value_nanousd"]))
            cost.add(value, **labels, **currency, halton_billing="subscription")
    return [usage, duration, *counters.values(), cost]


class _TokenSums:
    """A rollup group's token sums, shaped like a row for `genai.TOKEN_TYPES`."""

    def __init__(self, total: dict[str, int | float]) -> None:
        self.input_tokens = int(total["input_tokens"])
        self.cache_read_tokens = int(total["cache_read_tokens"])
        self.cache_write_tokens = int(total["cache_write_tokens"])
        self.output_tokens = int(total["output_tokens"])
        self.reasoning_tokens = int(total["reasoning_tokens"])


TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _quota_families(con: sqlite3.Connection, warn_at: float) -> Iterable[_Family]:
    """Each current quota window's utilisation and reset, per opaque account label."""
    used = _Family(
        "halton_meter_quota_utilisation",
        "gauge",
        "Latest utilisation (1 = full) of a provider quota window, per account.",
    )
    resets = _Family(
        "halton_meter_quota_reset_timestamp_seconds", "gauge", "When a quota window resets."
    )
    warning = _Family(
        "halton_meter_quota_warning",
        "gauge",
        "1 when a quota window is at or past [quota] warn_at (or flagged by the provider).",
    )
    threshold = _Family("halton_meter_quota_warn_at", "gauge", "The [quota] warn_at threshold.")
    threshold.add(warn_at)
    for account in quota_view(con, warn_at=warn_at):
        for window in account.windows:
            if window.expired:
                continue
            key = {"account": account.account, "provider": account.provider, "window": window.name}
            used.add(window.utilisation, **key)
            warning.add(int(window.warning), **key)
            if window.resets_at is not None:
                moment = datetime.fromisoformat(window.resets_at.replace("Z", "+00:00"))
                resets.add(f"{moment.timestamp():.3f}", **key)
    return [used, resets, warning, threshold]


def _unmetered_families(con: sqlite3.Connection) -> Iterable[_Family]:
    """The ledger's unmetered spans: LLM traffic passed through while the daemon was away."""
    connections = _Family(
        "halton_meter_unmetered_connections_total",
        "counter",
        "LLM connections the edge passed through unmetered (daemon away), from the ledger.",
    )
    sent = _Family(
        "halton_meter_unmetered_bytes_total", "counter", "Bytes on those connections, each way."
    )
    for hole in spans.holes(con, None, None):
        connections.add(hole.connections, host=hole.target)
        sent.add(hole.bytes_up, host=hole.target, direction="up")
        sent.add(hole.bytes_down, host=hole.target, direction="down")
    yield from (connections, sent)


def _reconcile_families(state: dict[str, Any] | None) -> Iterable[_Family]:
    """The last comparison with each provider's own report (reconcile.json)."""
    matches = _Family(
        "halton_meter_reconcile_matches",
        "gauge",
        "1 when the ledger matched the provider's usage and cost report at the last check.",
    )
    difference = _Family(
        "halton_meter_reconcile_cost_difference_usd",
        "gauge",
        "Provider's cost minus the ledger's over the reconciled window (USD).",
    )
    checked = _Family(
        "halton_meter_reconcile_checked_timestamp_seconds", "gauge", "When it was checked."
    )
    providers = (state or {}).get("providers")
    for name, summary in (providers if isinstance(providers, dict) else {}).items():
        if not isinstance(summary, dict):
            continue
        if summary.get("error"):
            matches.add(0, provider=name, error=str(summary["error"]))
        else:
            matches.add(int(bool(summary.get("matches"))), provider=name)
            if summary.get("cost_difference_usd") is not None:  # None: a key scope, no cost
                difference.add(str(summary["cost_difference_usd"]), provider=name)
        stamp = summary.get("checked_at")
        if isinstance(stamp, str):
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                checked.add(f"{moment.timestamp():.0f}", provider=name)
    return [matches, difference, checked]


def _decimal_usd(nanousd: int) -> str:
    sign = "-" if nanousd < 0 else ""
    whole, fraction = divmod(abs(nanousd), 10**9)
    return f"{sign}{whole}.{fraction:09d}"


def _writer_families(writer: WriterLike, lag: LedgerLag | None) -> Iterable[_Family]:
    written = _Family("halton_meter_ledger_rows_written_total", "counter", "Rows committed.")
    written.add(writer.rows_written)
    dropped = _Family(
        "halton_meter_ledger_rows_dropped_total", "counter", "Rows lost (ledger unwritable)."
    )
    dropped.add(writer.rows_dropped)
    pending = _Family("halton_meter_ledger_pending_rows", "gauge", "Rows waiting to be written.")
    pending.add(writer.pending())
    yield from (written, dropped, pending)
    if lag is not None:
        last = _Family(
            "halton_meter_ledger_write_lag_seconds",
            "gauge",
            "From the end of the oldest call in the last batch to its commit.",
        )
        last.add(round(lag.last_lag_seconds, 6))
        worst = _Family(
            "halton_meter_ledger_write_lag_max_seconds", "gauge", "Largest lag since start."
        )
        worst.add(round(lag.max_lag_seconds, 6))
        yield from (last, worst)
        if lag.export_stats is not None:
            yield from _export_families(lag.export_stats)


EXPORT_COUNTERS = {
    "rows_offered": "Rows handed to the OpenTelemetry export.",
    "rows_dropped": "Rows the OpenTelemetry export dropped (its queue was full).",
    "metric_exports": "OTLP metric exports attempted.",
    "metric_export_failures": "OTLP metric exports that failed (collector down or refusing).",
    "spans_offered": "Spans handed to the OTLP span exporter's queue.",
    "spans_exported": "Spans the collector took.",
    "spans_dropped": "Spans lost: failed OTLP exports, or the span queue full (collector slow).",
}


def _export_families(stats: ExportStatsLike) -> Iterable[_Family]:
    for name, help_text in EXPORT_COUNTERS.items():
        family = _Family(f"halton_meter_otlp_{name}_total", "counter", help_text)
        family.add(int(getattr(stats, name)))
        yield family


EDGE_COUNTERS = {
    "handed_off": "LLM connections handed to the daemon to meter.",
    "tunnelled": "Connections the edge relayed itself (not LLM hosts).",
    "fallbacks": "LLM connections passed through unmetered because the daemon was down.",
    "handoff_failures": "Hand-offs the daemon refused or did not answer.",
    "refused": "Requests refused because they targeted one of the meter's own ports.",
    "failed": "Targets the edge could not reach.",
    "switches": "Changes between metering and passthrough.",
}


def _edge_families(status: dict[str, Any] | None) -> Iterable[_Family]:
    up = _Family("halton_meter_edge_up", "gauge", "1 when the edge answered GET /status.")
    up.add(1 if status else 0)
    yield up
    if not status:
        return
    passthrough = _Family(
        "halton_meter_edge_passthrough", "gauge", "1 while the edge passes LLM traffic unmetered."
    )
    passthrough.add(1 if status.get("mode") == "passthrough" else 0)
    yield passthrough
    counters = status.get("counters", {})
    for name, help_text in EDGE_COUNTERS.items():
        if isinstance(counters.get(name), int):
            family = _Family(f"halton_meter_edge_{name}_total", "counter", help_text)
            family.add(counters[name])
            yield family
    unmetered = status.get("unmetered")
    if isinstance(unmetered, dict):
        open_now = _Family(
            "halton_meter_edge_unmetered_open", "gauge", "LLM connections open unmetered now."
        )
        open_now.add(int(unmetered.get("open", 0)))
        resumed = _Family(
            "halton_meter_edge_resumed_total",
            "counter",
            "Unmetered connections the edge closed at a quiet moment so metering resumes.",
        )
        resumed.add(int(unmetered.get("resumed", 0)))
        yield from (open_now, resumed)


def fetch_edge_status(port: int, timeout: float = 0.5) -> dict[str, Any] | None:
    """The edge's own `GET /status` (it answers requests addressed to itself)."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with direct.open(f"http://127.0.0.1:{port}/status", timeout=timeout) as answer:
            data = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("component") == "edge" else None
