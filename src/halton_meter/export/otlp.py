"""OpenTelemetry export (`[export.otlp]`): every recorded call as GenAI-convention metrics (and,
optionally, one span), sent to the user's collector with the official SDK's OTLP exporters.

Off the hot path twice over: the ledger writer hands each committed batch to `offer`, which
only puts rows on a bounded queue (a full queue drops the row and counts it, never waits); a
thread of ours turns rows into measurements, and the SDK's own reader thread exports them every
`interval_seconds`. A collector that is down costs the proxy nothing: exports fail on that
thread (counted in `stats`), metrics are cumulative so the next export that gets through
carries every call, and spans that could not be sent are counted as dropped. The SDK's span
queue drops quietly when full (a slow or dead collector under load), so spans are not made past
its capacity: every span is exported, or counted as dropped (bench/run.py --otlp-down).

What is sent (names in export/genai.py, which says which conventions version): no prompt or
response content, no credential, no user agent; the project, client process and billing kind
as `halton.*` attributes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from halton_meter import __version__
from halton_meter.config import OtlpSettings
from halton_meter.export import genai
from halton_meter.ledger.row import LedgerRow

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000  # committed batches waiting; past this a batch is dropped (counted)
SHUTDOWN_SECONDS = 5.0
# The batch span processor's queue; spans handed over and not yet exported or failed never
# exceed it, so its own silent drop (and a log line per span) never happens.
SPAN_QUEUE_SIZE = 2048
COST = "cost"  # the cost counter's key in a batch's sums (the token counters use their kind)
# After a failed span export no span is made (each is counted as dropped) for this long, doubled
# after each further failure up to the cap: a dead collector would otherwise cost the daemon
# ~0.1 ms of CPU per call to build, encode and retry spans that are lost anyway
# (bench/README.md, --otlp-down).
SPAN_PAUSE_SECONDS = (1.0, 60.0)


class RowLike(Protocol):
    """What the export reads of a ledger row."""

    requested_at: str
    provider: str
    api: str
    host: str
    model: str | None
    model_requested: str | None
    input_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    status: str
    error_class: str | None
    latency_ms: float | None
    response_id: str | None
    project: str
    cost_nanousd: int | None
    price_source: str | None
    client_process: str | None
    billing: str


@dataclass
class ExportStats:
    """What `/metrics` and `status` can show about the export."""

    rows_offered: int = 0
    rows_dropped: int = 0  # the queue was full
    rows_measured: int = 0
    metric_exports: int = 0
    metric_export_failures: int = 0
    spans_offered: int = 0  # handed to the batch span processor
    spans_exported: int = 0  # the collector took them
    spans_failed: int = 0  # a failed export lost them
    spans_dropped: int = 0  # lost: spans_failed, plus those not made (span queue full)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def spans_in_flight(self) -> int:
        """Spans in the processor's queue or in an export under way."""
        with self.lock:
            return self.spans_offered - self.spans_exported - self.spans_failed


class _CountedMetrics(MetricExporter):
    """The OTLP metric exporter, counting exports and failures."""

    def __init__(self, inner: MetricExporter, stats: ExportStats) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner, self._stats = inner, stats

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:  # an exporter bug must not stop the reader thread
            log.exception("OTLP metric export failed")
            result = MetricExportResult.FAILURE
        failed = int(result is not MetricExportResult.SUCCESS)
        self._stats.add(metric_exports=1, metric_export_failures=failed)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class _CountedSpans(SpanExporter):
    """The OTLP span exporter, counting what it sent and lost, and pausing span making after
    a failure (`paused`)."""

    def __init__(self, inner: SpanExporter, stats: ExportStats) -> None:
        self._inner, self._stats = inner, stats
        self._pause = 0.0
        self._paused_until = 0.0

    def paused(self) -> bool:
        return time.monotonic() < self._paused_until

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            log.exception("OTLP span export failed")
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._stats.add(spans_exported=len(spans))
            self._pause = 0.0
        else:
            self._stats.add(spans_failed=len(spans), spans_dropped=len(spans))
            shortest, longest = SPAN_PAUSE_SECONDS
            self._pause = min(longest, max(shortest, self._pause * 2))
            self._paused_until = time.monotonic() + self._pause
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _exporters(settings: OtlpSettings) -> tuple[MetricExporter, SpanExporter]:
    headers = dict(settings.headers)
    timeout = settings.timeout_seconds
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetrics,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpans,
        )

        target = settings.endpoint.split("://", 1)[1]
        insecure = settings.endpoint.startswith("http://")
        return (
            GrpcMetrics(endpoint=target, insecure=insecure, headers=headers, timeout=timeout),
            GrpcSpans(endpoint=target, insecure=insecure, headers=headers, timeout=timeout),
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetrics,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpans,
    )

    base = settings.endpoint
    return (
        HttpMetrics(endpoint=f"{base}/v1/metrics", headers=headers, timeout=timeout),
        HttpSpans(endpoint=f"{base}/v1/traces", headers=headers, timeout=timeout),
    )


def _epoch_ns(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)


def attributes(row: RowLike) -> dict[str, str]:
    """The attributes every measurement of a call carries."""
    found = {
        "gen_ai.operation.name": genai.operation_name(row.api),
        "gen_ai.provider.name": genai.provider_name(row.provider),
        "server.address": row.host,
        "halton.project": row.project,
        "halton.client": row.client_process or "(unknown)",
        "halton.billing": row.billing,
    }
    requested = row.model_requested or row.model
    if requested:
        found["gen_ai.request.model"] = requested
    if row.model:
        found["gen_ai.response.model"] = row.model
    return found


class OtlpExport:
    """One per daemon. `offer` from the ledger writer thread; `close` at shutdown."""

    def __init__(
        self,
        settings: OtlpSettings,
        resource: Mapping[str, str] | None = None,
        queue_size: int = QUEUE_SIZE,
        start: bool = True,
    ) -> None:
        self.settings = settings
        self.stats = ExportStats()
        self._queue: queue.Queue[Sequence[RowLike] | None] = queue.Queue(queue_size)
        metrics, spans = _exporters(settings)
        described = Resource.create(
            {"service.name": "halton-meter", "service.version": __version__, **(resource or {})}
        )
        reader = PeriodicExportingMetricReader(
            _CountedMetrics(metrics, self.stats),
            export_interval_millis=settings.interval_seconds * 1000,
            export_timeout_millis=settings.timeout_seconds * 1000,
        )
        views = [
            View(
                instrument_name=genai.TOKEN_USAGE,
                aggregation=ExplicitBucketHistogramAggregation(genai.TOKEN_BUCKETS),
            ),
            View(
                instrument_name=genai.OPERATION_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(genai.DURATION_BUCKETS),
            ),
        ]
        self._meters = MeterProvider(resource=described, metric_readers=[reader], views=views)
        meter = self._meters.get_meter("halton_meter", __version__)
        self._usage = meter.create_histogram(
            genai.TOKEN_USAGE, unit="{token}", description="Number of input and output tokens."
        )
        self._duration = meter.create_histogram(
            genai.OPERATION_DURATION, unit="s", description="GenAI operation duration."
        )
        self._counters = {
            kind: meter.create_counter(name, unit="{token}", description=f"{kind} tokens used.")
            for kind, name in genai.USAGE_COUNTERS.items()
        }
        self._cost = meter.create_counter(
            genai.COST, unit="{USD}", description="Cost of GenAI operations, in the currency."
        )
        self._tracer = None
        self._tracers: TracerProvider | None = None
        self._spans = _CountedSpans(spans, self.stats)
        if settings.spans:
            self._tracers = TracerProvider(resource=described)
            processor = BatchSpanProcessor(
                self._spans,
                max_queue_size=SPAN_QUEUE_SIZE,
                max_export_batch_size=min(512, SPAN_QUEUE_SIZE),  # the SDK's default, or less
            )
            self._tracers.add_span_processor(processor)
            self._tracer = self._tracers.get_tracer("halton_meter", __version__)
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        if start:
            self._thread.start()

    # --- on the ledger writer thread ----------------------------------------------------------

    def offer(self, rows: Sequence[RowLike]) -> None:
        """A committed batch. Never blocks: a full queue drops the batch's rows, counted."""
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            self.stats.add(rows_offered=len(rows), rows_dropped=len(rows))
            return
        self.stats.add(rows_offered=len(rows))

    # --- our thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            rows = self._queue.get()
            if rows is None:
                return
            self.measure(rows)
            self.stats.add(rows_measured=len(rows))
            self._queue.task_done()

    def measure(self, rows: Sequence[RowLike]) -> None:
        """A committed batch. The counters get one `add` per attribute set per batch, not one
        per row: each SDK call costs tens of microseconds of the daemon's CPU, and a batch's
        calls mostly share their attributes. Histograms and spans still take every row."""
        sums: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        for row in rows:
            try:
                self.record(row, sums)
            except Exception:  # one odd row never stops the export
                log.exception("OTLP export: a row could not be measured")
        for (kind, key), amount in sums.items():
            if kind == COST:
                self._cost.add(amount / 1e9, dict(key))  # nano-USD summed exactly, then USD
            else:
                self._counters[kind].add(amount, dict(key))

    def record(
        self, row: RowLike, sums: dict[tuple[str, tuple[tuple[str, str], ...]], int] | None = None
    ) -> None:
        """One row's measurements; counter amounts go to `sums` when given (`measure`)."""
        common = attributes(row)
        counted = sums if sums is not None else {}
        for kind, read in genai.TOKEN_TYPES.items():
            count = read(row)
            self._usage.record(count, {**common, "gen_ai.token.type": kind})
            key = (kind, tuple(sorted({**common, "gen_ai.token.modality": "unknown"}.items())))
            counted[key] = counted.get(key, 0) + count
        failed = {} if row.status == "ok" else {"error.type": row.error_class or "_OTHER"}
        if row.latency_ms is not None:
            self._duration.record(row.latency_ms / 1000, {**common, **failed})
        cost = self._cost_attributes(row)
        if row.cost_nanousd is not None:
            key = (COST, tuple(sorted({**common, **cost}.items())))
            counted[key] = counted.get(key, 0) + row.cost_nanousd
        if sums is None:
            for (kind, attrs), amount in counted.items():
                if kind == COST:
                    self._cost.add(amount / 1e9, dict(attrs))
                else:
                    self._counters[kind].add(amount, dict(attrs))
        if self._tracer is not None:
            self._span(row, common, failed, cost)

    @staticmethod
    def _cost_attributes(row: RowLike) -> dict[str, str]:
        return {
            "gen_ai.usage.cost.currency": "USD",
            "gen_ai.usage.cost.source": genai.cost_source(row.price_source),
        }

    def _span(
        self, row: RowLike, common: dict[str, str], failed: dict[str, str], cost: dict[str, str]
    ) -> None:
        assert self._tracer is not None
        if self._spans.paused() or self.stats.spans_in_flight() >= SPAN_QUEUE_SIZE:
            # The collector failed just now, or the SDK's queue is full (it would drop the
            # span unseen): not made, counted.
            self.stats.add(spans_dropped=1)
            return
        start = _epoch_ns(row.requested_at)
        end = start + int((row.latency_ms or 0.0) * 1e6)
        values: dict[str, str | int | float] = {**common, **failed}
        usage = {
            "gen_ai.usage.input_tokens": genai.TOKEN_TYPES["input"](row),
            "gen_ai.usage.output_tokens": genai.TOKEN_TYPES["output"](row),
            "gen_ai.usage.cache_read.input_tokens": genai.TOKEN_TYPES["cache_read"](row),
            "gen_ai.usage.cache_creation.input_tokens": genai.TOKEN_TYPES["cache_creation"](row),
            "gen_ai.usage.reasoning.output_tokens": genai.TOKEN_TYPES["reasoning"](row),
        }
        values.update(usage)
        if row.response_id:
            values["gen_ai.response.id"] = row.response_id
        if row.cost_nanousd is not None:
            values["gen_ai.usage.cost.amount"] = row.cost_nanousd / 1e9
            values.update(cost)
        name = f"{common['gen_ai.operation.name']} {common.get('gen_ai.request.model', '')}"
        span = self._tracer.start_span(
            name.strip(), kind=SpanKind.CLIENT, attributes=values, start_time=start
        )
        if failed:
            span.set_status(Status(StatusCode.ERROR, failed["error.type"]))
        self.stats.add(spans_offered=1)  # before `end` hands it over: an export may follow at once
        span.end(end_time=end)

    # --- lifecycle ----------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Measure what is queued, then export now (tests, and `close`)."""
        if self._thread.is_alive():
            self._queue.join()
        done = self._meters.force_flush(timeout_millis=timeout * 1000)
        if self._tracers is not None:
            done = self._tracers.force_flush(timeout_millis=int(timeout * 1000)) and done
        return done

    def close(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Stop within `timeout` whatever the collector does (the daemon's stop waits)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

        def shutdown() -> None:
            try:
                self._meters.shutdown(timeout_millis=timeout * 1000)
                if self._tracers is not None:
                    self._tracers.shutdown()
            except Exception:
                log.exception("OTLP export: shutdown failed")

        stopper = threading.Thread(target=shutdown, name="otlp-shutdown", daemon=True)
        stopper.start()
        stopper.join(timeout)


def committed(export: OtlpExport) -> Any:
    """The writer's `on_commit` part for the export (a batch of LedgerRow)."""

    def on_commit(batch: list[LedgerRow]) -> None:
        export.offer(batch)

    return on_commit
