"""`/metrics` with the GenAI semantic conventions' names, read back with the Prometheus text
parser: values equal the ledger's, and project/model labels are capped (the rest `other`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from halton_meter.api import metrics
from halton_meter.ledger.db import connect
from halton_meter.ledger.row import INSERT_SQL, new_request_id
from tests.test_ledger import sample_row

# Sonnet 4.5's published prices (USD per million tokens): input $3, cache read $0.30,
# 5-minute cache write $3.75, output $15.
IN, READ, WRITE, OUT = 3_000, 300, 3_750, 15_000  # nano-USD per token


def _parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def test_genai_names_values_and_caps(tmp_path: Path, monkeypatch: object) -> None:
    con = connect(tmp_path / "db.sqlite")
    # Two calls in project acme: 1,000 in, 2,000 cache read, 400 cache write, 300 out (50 of
    # them reasoning), 1.5 s and 0.5 s.
    cost = (
        1_000 * IN + 2_000 * READ + 400 * WRITE + 300 * OUT
    )  # = 3,000,000 + 600,000 + 1,500,000 + 4,500,000 = 9,600,000 nano-USD
    base = sample_row(
        project="acme",
        input_tokens=1_000,
        cache_read_tokens=2_000,
        cache_write_tokens=400,
        cache_write_1h_tokens=0,
        output_tokens=300,
        reasoning_tokens=50,
        cost_nanousd=cost,
        billing="api",
    )
    rows = [
        replace(base, id=new_request_id(), latency_ms=1500.0),
        replace(base, id=new_request_id(), latency_ms=500.0),
        # A subscription call: its value is not money spent.
        replace(base, id=new_request_id(), project="a-plan", billing="subscription"),
    ]
    # Thirty more projects, one call each, with their own model: past the caps.
    for index in range(30):
        rows.append(
            replace(
                base,
                id=new_request_id(),
                project=f"p{index:02d}",
                model=f"m{index:02d}",
                cost_nanousd=1_000,
            )
        )
    with con:
        con.executemany(INSERT_SQL, [row.values() for row in rows])
    text = metrics.render(con, None, None, lambda: None)
    found = _parse(text)

    def one(name: str, **labels: str) -> float:
        values = [v for got, v in found[name] if all(got.get(k) == x for k, x in labels.items())]
        assert len(values) == 1, (name, labels, found.get(name))
        return values[0]

    acme = {
        "halton_project": "acme",
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "anthropic",
        "gen_ai_response_model": "claude-sonnet-4-5-20250929",
    }
    # input = every prompt token (1,000 + 2,000 + 400) per call, two calls.
    assert one("gen_ai_client_token_usage_sum", **acme, gen_ai_token_type="input") == 6_800
    assert one("gen_ai_client_token_usage_count", **acme, gen_ai_token_type="input") == 2
    assert one("gen_ai_client_token_usage_sum", **acme, gen_ai_token_type="output") == 600
    assert one("gen_ai_client_token_usage_sum", **acme, gen_ai_token_type="cache_read") == 4_000
    assert one("gen_ai_client_token_usage_sum", **acme, gen_ai_token_type="cache_creation") == 800
    assert one("gen_ai_client_token_usage_sum", **acme, gen_ai_token_type="reasoning") == 100
    assert (
        one("gen_ai_client_token_usage_bucket", **acme, gen_ai_token_type="input", le="+Inf") == 2
    )
    assert one("gen_ai_client_operation_duration_seconds_sum", **acme) == 2.0
    assert one("gen_ai_client_operation_duration_seconds_count", **acme) == 2
    assert one("gen_ai_client_inference_usage_input_tokens_total", **acme) == 6_800
    assert one("gen_ai_client_inference_usage_cache_read_input_tokens_total", **acme) == 4_000
    assert one("gen_ai_client_inference_usage_reasoning_output_tokens_total", **acme) == 100
    # $0.0096 a call, two calls: exact.
    spent = one("gen_ai_client_usage_cost_total", **acme, halton_billing="api")
    assert spent == 0.0192
    assert "gen_ai_client_usage_cost_total{" in text and "0.019200000" in text
    plan = {**acme, "halton_project": "a-plan"}
    assert one("gen_ai_client_usage_cost_total", **plan, halton_billing="subscription") == 0.0096
    assert one("gen_ai_client_usage_cost_total", **plan, halton_billing="api") == 0.0

    # Caps: 25 project labels and 25 model labels at most, the rest folded into "other",
    # with nothing lost: the totals over every series equal the ledger's.
    projects = {got["halton_project"] for got, _ in found["gen_ai_client_token_usage_count"]}
    models = {got["gen_ai_response_model"] for got, _ in found["gen_ai_client_token_usage_count"]}
    assert len(projects - {"other"}) == metrics.MAX_PROJECT_LABELS and "other" in projects
    assert len(models - {"other"}) <= metrics.MAX_MODEL_LABELS and "other" in models
    calls = sum(
        v
        for got, v in found["gen_ai_client_token_usage_count"]
        if got["gen_ai_token_type"] == "input"
    )
    assert calls == len(rows)
    total = sum(v for got, v in found["gen_ai_client_usage_cost_total"])
    assert round(total * 1e9) == 2 * cost + cost + 30 * 1_000
    # Today's series are all still there.
    assert one("halton_meter_requests_total", project="acme", provider="anthropic",
               model="claude-sonnet-4-5-20250929") == 2  # fmt: skip
    con.close()
