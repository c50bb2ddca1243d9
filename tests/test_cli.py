"""The CLI as users run it: `run`, `requests`, `report`, exit codes, error messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from halton_meter.ledger.row import new_request_id
from halton_meter.ledger.writer import LedgerWriter
from halton_meter.timewindow import ledger_timestamp
from tests.conftest import METER, ROOT, Meter, free_port
from tests.test_ledger import Ready, sample_row


def cli(home: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HALTON_METER_HOME"] = str(home)
    env["COLUMNS"] = "100"
    return subprocess.run(
        [METER, *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, **kwargs
    )


def test_version() -> None:
    done = subprocess.run([METER, "--version"], capture_output=True, text=True, check=True)
    from halton_meter import __version__

    assert done.stdout.strip() == f"halton-meter, version {__version__}"


# --- run ----------------------------------------------------------------------------------


def test_run_sets_proxy_and_ca_variables_and_keeps_no_proxy(meter: Meter) -> None:
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    env = meter.run_env(NO_PROXY="internal.corp,.svc")
    done = subprocess.run(
        [METER, "run", "-p", "acme/web", "--", sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    url = f"http://acme%2Fweb:meter@127.0.0.1:{meter.port}"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        assert seen[name] == url
    for name in (
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
        "AWS_CA_BUNDLE",
        "CODEX_CA_CERTIFICATE",
    ):
        assert seen[name] == str(meter.bundle)
    assert seen["NODE_USE_ENV_PROXY"] == "1"
    assert seen["NO_PROXY"] == seen["no_proxy"] == "internal.corp,.svc,localhost,127.0.0.1,::1"
    # The bundle holds the public roots and the meter's CA.
    bundle = meter.bundle.read_text()
    ca = (meter.home / "mitmproxy" / "mitmproxy-ca-cert.pem").read_text().strip()
    assert ca in bundle and bundle.count("BEGIN CERTIFICATE") > 50


def test_run_project_reaches_the_ledger(meter: Meter, project: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            METER,
            "run",
            "--project",
            project,
            "--",
            "curl",
            "-sS",
            "-o",
            str(tmp_path / "o"),
            "https://api.openai.com/v1/embeddings",
            "--data",
            '{"model":"m","input":"x"}',
        ],
        env=meter.run_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    (row,) = meter.wait_rows(project, 1)
    assert row["project"] == project


def test_run_passes_the_exit_code_on(meter: Meter) -> None:
    done = subprocess.run(
        [METER, "run", "--", sys.executable, "-c", "raise SystemExit(7)"],
        env=meter.run_env(),
        timeout=30,
    )
    assert done.returncode == 7


def test_run_passes_signals_to_the_command(meter: Meter, tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    code = (
        "import signal, sys, time, pathlib\n"
        f"def on_term(*_): pathlib.Path({str(marker)!r}).write_text('x'); sys.exit(5)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    process = subprocess.Popen(
        [METER, "run", "--", sys.executable, "-c", code],
        env=meter.run_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 5
    assert marker.exists()


def test_run_refuses_when_the_meter_is_down(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "config.toml").write_text(f"[daemon]\nproxy_port = {port}\n")
    refused = cli(tmp_path, "run", "--", sys.executable, "-c", "print('ran')")
    assert refused.returncode == 4
    assert "not running" in refused.stderr and "halton-meter daemon" in refused.stderr
    assert "ran" not in refused.stdout
    allowed = cli(
        tmp_path,
        "run",
        "--allow-unmetered",
        "--",
        sys.executable,
        "-c",
        "import os; print('ran', os.environ.get('HTTPS_PROXY'))",
    )
    assert allowed.returncode == 0
    assert allowed.stdout.strip() == "ran None"


def test_run_rejects_a_bad_project_slug(tmp_path: Path) -> None:
    done = cli(tmp_path, "run", "--project", "Acme Corp", "--", "true")
    assert done.returncode == 2
    assert "--project" in done.stderr


def test_invalid_config_exits_3_naming_key_and_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[daemon]\n# comment\nproxy_prot = 1\n")
    done = cli(tmp_path, "requests")
    assert done.returncode == 3
    assert "line 3" in done.stderr and "daemon.proxy_prot" in done.stderr


# --- requests and report --------------------------------------------------------------------

NOW = datetime.now(UTC)


def seed(home: Path) -> list[Any]:
    """Rows with known values: two models, two projects, one unpriced, one old."""
    rows = []
    specs = [
        # (minutes ago, project, model, input, output, cost nano-USD, latency)
        (5, "acme", "claude-sonnet-4-5", 100, 10, 1_500_000, 100.0),
        (10, "acme", "claude-sonnet-4-5", 200, 20, 3_000_001, 300.0),
        (15, "beta", "gpt-4.1", 300, 30, 123_456_789_012, 200.0),
        (20, "beta", "mystery-model", 400, 40, None, 400.0),
        (60 * 24 * 10, "acme", "claude-sonnet-4-5", 5000, 500, 9_000_000, 50.0),  # 10 days ago
    ]
    for minutes, project, model, tokens_in, tokens_out, cost, latency in specs:
        moment = NOW - timedelta(minutes=minutes)
        rows.append(
            replace(
                sample_row(),
                id=new_request_id(int(moment.timestamp() * 1000)),
                requested_at=ledger_timestamp(moment),
                project=project,
                model=model,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cache_read_tokens=0,
                cache_write_tokens=0,
                cost_nanousd=cost,
                latency_ms=latency,
            )
        )
    writer = LedgerWriter(home / "db.sqlite")
    writer.start()
    for row in rows:
        writer.submit(Ready(row))
    writer.close()
    return rows


def test_requests_json_is_newest_first_with_exact_cost(tmp_path: Path) -> None:
    rows = seed(tmp_path)
    done = cli(tmp_path, "requests", "--json", "--limit", "3")
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)
    assert [item["id"] for item in items] == [row.id for row in rows[:3]]
    assert items[2]["cost_usd"] == "123.456789012"
    assert items[0]["cost_nanousd"] == 1_500_000
    assert items[0]["stream"] is True and items[0]["tokens_complete"] is True
    assert "raw_usage" not in items[0]
    unpriced = json.loads(cli(tmp_path, "requests", "--json", "--project", "beta").stdout)
    assert [item["cost_usd"] for item in unpriced] == ["123.456789012", None]


def test_requests_since_filters(tmp_path: Path) -> None:
    seed(tmp_path)
    assert len(json.loads(cli(tmp_path, "requests", "--json", "--since", "1h").stdout)) == 4
    assert len(json.loads(cli(tmp_path, "requests", "--json", "--since", "12m").stdout)) == 2
    bad = cli(tmp_path, "requests", "--since", "last tuesday")
    assert bad.returncode == 2 and "cannot read" in bad.stderr


def test_report_json_totals_and_groups(tmp_path: Path) -> None:
    rows = seed(tmp_path)
    recent = rows[:4]  # the default window is 7 days
    done = cli(tmp_path, "report", "--json", "--by", "project", "--by", "model")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    totals = report["totals"]
    assert totals["requests"] == 4
    assert totals["input_tokens"] == sum(row.input_tokens for row in recent)
    priced = [row.cost_nanousd for row in recent if row.cost_nanousd is not None]
    assert totals["cost_nanousd"] == sum(priced)
    assert Decimal(totals["cost_usd"]) == sum(Decimal(c) / 10**9 for c in priced)
    assert totals["unpriced_requests"] == 1
    assert totals["avg_latency_ms"] == 250.0
    assert totals["p95_latency_ms"] == 400.0
    keys = [group["key"] for group in report["groups"]]
    assert keys == [
        {"project": "acme", "model": "claude-sonnet-4-5"},
        {"project": "beta", "model": "gpt-4.1"},
        {"project": "beta", "model": "mystery-model"},
    ]
    assert report["groups"][0]["requests"] == 2
    assert report["unpriced"] == [
        {
            "provider": "anthropic",
            "model": "mystery-model",
            "requests": 1,
            "prompt_tokens": 400,
            "output_tokens": 40,
        }
    ]


def test_report_windows(tmp_path: Path) -> None:
    seed(tmp_path)
    everything = json.loads(cli(tmp_path, "report", "--json", "--since", "30d").stdout)
    assert everything["totals"]["requests"] == 5
    day = (NOW - timedelta(days=10)).date().isoformat()
    one_day = json.loads(cli(tmp_path, "report", "--json", "--from", day, "--to", day).stdout)
    assert one_day["totals"]["requests"] == 1
    project = json.loads(cli(tmp_path, "report", "--json", "--since", "30d", "-p", "beta").stdout)
    assert project["totals"]["requests"] == 2
    clash = cli(tmp_path, "report", "--today", "--since", "1h")
    assert clash.returncode == 2


def test_report_csv_and_table(tmp_path: Path) -> None:
    seed(tmp_path)
    csv_text = cli(tmp_path, "report", "--csv", "--by", "project").stdout.splitlines()
    assert csv_text[0].startswith("project,requests,errors,input_tokens")
    assert csv_text[1].startswith("acme,2,0,300,")
    table = cli(tmp_path, "report", "--by", "model")
    assert table.returncode == 0
    assert "mystery-model" in table.stdout and "Unpriced" in table.stdout
    assert "$123.46" in table.stdout  # 2 decimals above $1
    assert "$0.004500" in table.stdout  # 6 decimals under $1
    assert max(len(line) for line in table.stdout.splitlines()) <= 100


def test_report_works_on_an_empty_home(tmp_path: Path) -> None:
    done = cli(tmp_path, "report", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["totals"]["requests"] == 0
    assert cli(tmp_path, "requests").stdout.startswith("No metered calls yet")
