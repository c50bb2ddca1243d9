"""The OpenTelemetry export: a local OTLP receiver (HTTP and gRPC, decoded with the official
protobuf definitions of opentelemetry-proto) gets GenAI-convention metrics whose values equal
the ledger's; a collector that is down costs the writer nothing and the losses are counted."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from halton_meter.config import OtlpSettings
from halton_meter.export.otlp import OtlpExport
from halton_meter.ledger.row import LedgerRow, new_request_id
from halton_meter.ledger.writer import LedgerWriter
from tests.apihelpers import Api, openai_call
from tests.conftest import FakeUpstream, free_port, start_meter, wait_for
from tests.test_ledger import Ready, sample_row


@dataclass
class Received:
    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Received]]:
    got = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.path == "/v1/metrics":
                got.metrics.append(metrics_service_pb2.ExportMetricsServiceRequest.FromString(body))
                answer = metrics_service_pb2.ExportMetricsServiceResponse()
            else:
                got.traces.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                answer = trace_service_pb2.ExportTraceServiceResponse()
            data = answer.SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", got
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    got = Received()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            got.metrics.append(request)
            got.headers.append(dict(context.invocation_metadata()))
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", got
    server.stop(0)


def _rows() -> list[LedgerRow]:
    """Calls of two projects, two models, both billings, a failure and a provider's own price."""
    base = sample_row(
        project="acme",
        input_tokens=1_000,
        cache_read_tokens=2_000,
        cache_write_tokens=400,
        output_tokens=300,
        reasoning_tokens=50,
        cost_nanousd=9_600_000,
        price_source="genai-prices 0.0.30",
        billing="api",
        client_process="claude",
    )
    rows = []
    for index in range(40):
        rows.append(
            replace(
                base,
                id=new_request_id(),
                project=("acme", "beta")[index % 2],
                model=("claude-sonnet-4-5-20250929", "claude-haiku-4-5")[index % 3 == 0],
                input_tokens=1_000 + index,
                output_tokens=300 + 7 * index,
                latency_ms=100.0 + 13.5 * index,
                cost_nanousd=9_600_000 + 1_234 * index,
                billing=("api", "subscription")[index % 5 == 0],
            )
        )
    rows.append(
        replace(
            base,
            id=new_request_id(),
            status="error",
            error_class="rate_limit",
            http_status=429,
            input_tokens=None,
            cache_read_tokens=None,
            cache_write_tokens=None,
            output_tokens=None,
            reasoning_tokens=None,
            cost_nanousd=0,
        )
    )
    rows.append(
        replace(base, id=new_request_id(), cost_nanousd=5_000, price_source="provider-reported")
    )
    rows.append(replace(base, id=new_request_id(), cost_nanousd=None, price_source=None))
    return rows


def _write(ledger: Path, export: OtlpExport, rows: list[LedgerRow]) -> float:
    """Through a real writer whose commits feed the export; the slowest `offer` in seconds."""
    slowest = 0.0

    def on_commit(batch: list[LedgerRow]) -> None:
        nonlocal slowest
        started = time.perf_counter()
        export.offer(batch)
        slowest = max(slowest, time.perf_counter() - started)

    writer = LedgerWriter(ledger, on_commit=on_commit)
    writer.start()
    for row in rows:
        writer.submit(Ready(row))
    assert writer.close()
    return slowest


def _attributes(point: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def _points(request: Any, name: str) -> list[Any]:
    found = []
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    kind = metric.WhichOneof("data")
                    found += list(getattr(metric, kind).data_points)
    return found


def _latest(got: Received, name: str) -> list[Any]:
    """The last export that carried `name` (metrics are cumulative: it holds every call)."""
    for request in reversed(got.metrics):
        if points := _points(request, name):
            return points
    raise AssertionError(f"no {name} received")


def _check_against_ledger(got: Received, ledger: Path) -> None:
    con = sqlite3.connect(ledger)
    (calls, prompt, output, cache_read, cache_write, reasoning, latency, timed) = con.execute(
        "SELECT COUNT(*), SUM(COALESCE(input_tokens, 0) + COALESCE(cache_read_tokens, 0) "
        "+ COALESCE(cache_write_tokens, 0)), SUM(COALESCE(output_tokens, 0)), "
        "SUM(COALESCE(cache_read_tokens, 0)), SUM(COALESCE(cache_write_tokens, 0)), "
        "SUM(COALESCE(reasoning_tokens, 0)), SUM(latency_ms), COUNT(latency_ms) FROM requests"
    ).fetchone()
    cost_by = dict(
        ((project, billing, source), nano)
        for project, billing, source, nano in con.execute(
            "SELECT project, billing, CASE WHEN price_source LIKE 'provider%' THEN 'provider' "
            "ELSE 'local' END, SUM(cost_nanousd) FROM requests WHERE cost_nanousd IS NOT NULL "
            "GROUP BY 1, 2, 3"
        )
    )
    con.close()
    assert calls == 43

    usage = _latest(got, "gen_ai.client.token.usage")
    by_type: dict[str, tuple[int, int]] = {}
    for point in usage:
        kind = _attributes(point)["gen_ai.token.type"]
        total, count = by_type.get(kind, (0, 0))
        by_type[kind] = (total + int(point.sum), count + point.count)
        assert list(point.explicit_bounds)[:3] == [1, 4, 16]  # the conventions' buckets
    assert by_type == {
        "input": (prompt, calls),
        "output": (output, calls),
        "cache_read": (cache_read, calls),
        "cache_creation": (cache_write, calls),
        "reasoning": (reasoning, calls),
    }
    counters = {
        "gen_ai.client.inference.usage.input_tokens": prompt,
        "gen_ai.client.inference.usage.output_tokens": output,
        "gen_ai.client.inference.usage.cache_read.input_tokens": cache_read,
        "gen_ai.client.inference.usage.cache_write.input_tokens": cache_write,
        "gen_ai.client.inference.usage.reasoning.output_tokens": reasoning,
    }
    for name, expected in counters.items():
        points = _latest(got, name)
        assert sum(p.as_int or int(p.as_double) for p in points) == expected, name
        assert {_attributes(p)["gen_ai.token.modality"] for p in points} == {"unknown"}

    duration = _latest(got, "gen_ai.client.operation.duration")
    assert sum(p.count for p in duration) == timed
    assert sum(p.sum for p in duration) == pytest.approx(latency / 1000, abs=1e-9)
    errors = [p for p in duration if "error.type" in _attributes(p)]
    assert [_attributes(p)["error.type"] for p in errors] == ["rate_limit"]

    cost: dict[tuple[str, str, str], int] = {}
    for point in _latest(got, "gen_ai.client.usage.cost"):
        seen = _attributes(point)
        assert seen["gen_ai.usage.cost.currency"] == "USD"
        key = (seen["halton.project"], seen["halton.billing"], seen["gen_ai.usage.cost.source"])
        cost[key] = cost.get(key, 0) + round(point.as_double * 1e9)
    assert cost == cost_by

    seen = _attributes(usage[0])
    assert seen["gen_ai.provider.name"] == "anthropic"
    assert seen["gen_ai.operation.name"] == "chat"
    assert seen["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert seen["gen_ai.response.model"] in ("claude-sonnet-4-5-20250929", "claude-haiku-4-5")
    assert seen["server.address"] == "api.anthropic.com"
    assert seen["halton.client"] == "claude"
    resource = {
        kv.key: kv.value.string_value
        for kv in got.metrics[-1].resource_metrics[0].resource.attributes
    }
    assert resource["service.name"] == "halton-meter"


def test_http_receiver_gets_convention_metrics_and_spans(
    tmp_path: Path, http_receiver: tuple[str, Received]
) -> None:
    endpoint, got = http_receiver
    settings = OtlpSettings(
        enabled=True,
        endpoint=endpoint,
        headers=(("authorization", "Bearer collector-token"),),
        interval_seconds=3600,  # exports only when flushed: the test decides when
        spans=True,
    )
    export = OtlpExport(settings)
    rows = _rows()
    _write(tmp_path / "db.sqlite", export, rows)
    assert export.flush()
    _check_against_ledger(got, tmp_path / "db.sqlite")
    assert all(h.get("authorization") == "Bearer collector-token" for h in got.headers)
    spans = [
        span
        for request in got.traces
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert len(spans) == len(rows)
    names = {span.name for span in spans}
    assert names == {"chat claude-sonnet-4-5"}
    keys = {kv.key for span in spans for kv in span.attributes}
    assert {"gen_ai.usage.input_tokens", "gen_ai.usage.cost.amount", "halton.project"} <= keys
    assert not any("content" in key or "prompt" in key or "message" in key for key in keys)
    export.close()
    assert export.stats.rows_dropped == 0 and export.stats.metric_export_failures == 0


def test_grpc_receiver_gets_the_same(tmp_path: Path, grpc_receiver: tuple[str, Received]) -> None:
    endpoint, got = grpc_receiver
    settings = OtlpSettings(
        enabled=True,
        endpoint=endpoint,
        protocol="grpc",
        headers=(("x-team", "blue"),),
        interval_seconds=3600,
    )
    export = OtlpExport(settings)
    _write(tmp_path / "db.sqlite", export, _rows())
    assert export.flush()
    _check_against_ledger(got, tmp_path / "db.sqlite")
    assert got.headers[-1].get("x-team") == "blue"
    export.close()


def test_collector_down_costs_the_writer_nothing_and_losses_are_counted(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = OtlpSettings(
        enabled=True, endpoint=down, interval_seconds=0.2, timeout_seconds=1, spans=True
    )
    export = OtlpExport(settings)
    rows = _rows() * 20
    rows = [replace(row, id=new_request_id()) for row in rows]
    started = time.perf_counter()
    slowest = _write(tmp_path / "db.sqlite", export, rows)
    elapsed = time.perf_counter() - started
    print(f"{len(rows)} rows written in {elapsed:.2f} s; slowest offer {slowest * 1e6:.0f} us")
    assert slowest < 0.05  # an O(1) put, whatever the collector does
    export.flush(timeout=3)  # the SDK says True either way; the counts tell
    deadline = time.monotonic() + 10
    while export.stats.metric_export_failures == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert export.stats.metric_export_failures >= 1
    assert export.stats.spans_dropped >= 1
    assert export.stats.rows_measured == len(rows)
    started = time.perf_counter()
    export.close(timeout=3)
    assert time.perf_counter() - started < 8  # a dead collector does not hold the stop


def test_a_full_queue_drops_rows_and_counts_them() -> None:
    settings = OtlpSettings(enabled=True, endpoint=f"http://127.0.0.1:{free_port()}")
    export = OtlpExport(settings, queue_size=2, start=False)  # nothing drains the queue
    row = sample_row()
    for _ in range(5):
        export.offer([row, row])
    assert (export.stats.rows_offered, export.stats.rows_dropped) == (10, 6)
    export.close(timeout=1)


def test_a_full_span_queue_drops_spans_and_counts_every_one(monkeypatch: Any) -> None:
    """The SDK's span queue drops quietly when full (a dead collector under load, seen with
    bench/run.py --otlp-down): spans past it are not made, and every one is counted."""
    from halton_meter.export import otlp

    monkeypatch.setattr(otlp, "SPAN_QUEUE_SIZE", 8)
    down = f"http://127.0.0.1:{free_port()}"
    settings = OtlpSettings(
        enabled=True, endpoint=down, interval_seconds=3600, timeout_seconds=1, spans=True
    )
    export = OtlpExport(settings)
    rows = [replace(sample_row(), id=new_request_id()) for _ in range(50)]
    export.offer(rows)
    export.flush(timeout=3)
    stats = export.stats
    assert stats.rows_measured == 50
    not_made = stats.spans_dropped - stats.spans_failed
    assert stats.spans_offered + not_made == 50  # each span made, or counted as not made
    assert not_made > 0 and stats.spans_in_flight() <= 8
    export.close(timeout=5)
    assert stats.spans_exported == 0
    assert stats.spans_failed == stats.spans_offered  # what was queued failed at the stop
    assert stats.spans_dropped == 50


def test_after_a_failed_span_export_spans_pause_and_come_back(monkeypatch: Any) -> None:
    """A dead collector: after a failed span export, calls make no span for a while (each
    counted as dropped), then spans are tried again, with a longer pause after each failure."""
    from halton_meter.export import otlp

    monkeypatch.setattr(otlp, "SPAN_PAUSE_SECONDS", (1.0, 60.0))
    down = f"http://127.0.0.1:{free_port()}"
    settings = OtlpSettings(
        enabled=True, endpoint=down, interval_seconds=3600, timeout_seconds=1, spans=True
    )
    export = OtlpExport(settings)
    stats = export.stats

    def rows(count: int) -> list[Any]:
        return [replace(sample_row(), id=new_request_id()) for _ in range(count)]

    export.offer(rows(3))
    export.flush(timeout=3)
    assert (stats.spans_offered, stats.spans_failed, stats.spans_dropped) == (3, 3, 3)
    export.offer(rows(20))  # within the pause: no span made, each counted
    export.flush(timeout=3)
    assert (stats.spans_offered, stats.spans_dropped) == (3, 23)
    time.sleep(1.1)  # the pause is over: the next call's span is made (and fails again)
    export.offer(rows(1))
    export.flush(timeout=3)
    assert (stats.spans_offered, stats.spans_failed, stats.spans_dropped) == (4, 4, 24)
    time.sleep(1.1)  # the second pause is twice as long (2 s): still paused
    export.offer(rows(1))
    export.flush(timeout=3)
    assert (stats.spans_offered, stats.spans_dropped) == (4, 25)
    assert stats.rows_measured == 25  # the metrics took every call all along
    export.close(timeout=3)


def test_the_daemon_exports_its_calls_and_a_dead_collector_costs_nothing(
    tmp_path: Path, fake_upstream: FakeUpstream, http_receiver: tuple[str, Received]
) -> None:
    """A real daemon with `[export.otlp]`: its calls reach the receiver; pointed at nothing,
    its calls still succeed and /metrics counts the failed exports."""
    endpoint, got = http_receiver
    live = start_meter(
        tmp_path / "live",
        fake_upstream,
        f'[export.otlp]\nendpoint = "{endpoint}"\ninterval_seconds = 0.3\nspans = true\n',
    )
    try:
        openai_call(live, "otel-live", "gpt-4.1", tmp_path / "a")
        (row,) = live.wait_rows("otel-live", 1)

        def exported() -> bool:
            return any(
                _attributes(p).get("halton.project") == "otel-live"
                for request in got.metrics
                for p in _points(request, "gen_ai.client.usage.cost")
            )

        wait_for(exported, 15, "the call's metrics at the receiver")
        (point,) = [
            p
            for p in _latest(got, "gen_ai.client.usage.cost")
            if _attributes(p)["halton.project"] == "otel-live"
        ]
        assert round(point.as_double * 1e9) == row["cost_nanousd"] == 13_730_000
        assert _attributes(point)["gen_ai.provider.name"] == "openai"
    finally:
        live.stop()

    dead = start_meter(
        tmp_path / "dead",
        fake_upstream,
        f'[export.otlp]\nendpoint = "http://127.0.0.1:{free_port()}"\n'
        "interval_seconds = 0.2\ntimeout_seconds = 1\n",
    )
    try:
        for index in range(3):
            openai_call(dead, "otel-dead", "gpt-4.1", tmp_path / f"b{index}")
        dead.wait_rows("otel-dead", 3)
        api = Api.of(dead)

        def failures() -> int:
            text = api.get("/metrics").text
            line = next(
                (
                    x
                    for x in text.splitlines()
                    if x.startswith("halton_meter_otlp_metric_export_failures_total ")
                ),
                "x 0",
            )
            return int(line.split()[1])

        wait_for(lambda: failures() >= 1, 20, "a failed export counted in /metrics")
    finally:
        assert dead.stop() == 0


def test_export_otlp_config() -> None:
    from halton_meter.config import ConfigError, parse_config

    source = Path("config.toml")
    assert parse_config("", source).otlp.enabled is False  # off by default
    found = parse_config(
        '[export.otlp]\nendpoint = "https://otel.example.com:4318/"\nprotocol = "grpc"\n'
        'interval_seconds = 15\nspans = true\nheaders = { Authorization = "Bearer t" }\n',
        source,
    ).otlp
    assert found == OtlpSettings(
        enabled=True,
        endpoint="https://otel.example.com:4318",
        headers=(("authorization", "Bearer t"),),
        protocol="grpc",
        interval_seconds=15.0,
        spans=True,
    )
    for bad, key in (
        ("[export.otlp]\nprotocol = 'grpc'\n", "export.otlp"),  # no endpoint
        ("[export.otlp]\nendpoint = 'otel:4317'\n", "export.otlp.endpoint"),
        ("[export.otlp]\nendpoint = 'http://x'\nprotocol = 'thrift'\n", "export.otlp.protocol"),
        ("[export.otlp]\nendpoint = 'http://x'\nsecret = 1\n", "export.otlp.secret"),
        ("[export.zipkin]\n", "export"),
    ):
        with pytest.raises(ConfigError) as error:
            parse_config(bad, source)
        assert error.value.key == key, (bad, str(error.value))
