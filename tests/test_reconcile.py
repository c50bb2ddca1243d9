"""`halton-meter reconcile` against the local fake's organisation usage and cost reports.

The CLI runs as a subprocess with a proxy in its environment that refuses every connection
(the admin API must never go through a proxy from the environment); it reaches the fake under
api.anthropic.com / api.openai.com through `[upstream] resolve` and trusts it through
`[upstream] ca_bundle`. Expected costs come from the published prices written here:

- claude-sonnet-4-20250514: $3 input, $15 output, $0.30 cache read, $3.75 cache write (5m)
  per million tokens; claude-3-5-haiku-20241022: $0.80 input, $4 output.
- gpt-4o-2024-08-06: $2.50 input, $1.25 cached input, $10 output per million tokens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from halton_meter.ledger.db import connect
from halton_meter.ledger.row import INSERT_SQL, LedgerRow, new_request_id
from halton_meter.lifecycle.keychain import keychain, use_keychain
from halton_meter.pricing import parse_overrides
from halton_meter.reconcile import run
from tests.conftest import METER, FakeUpstream, write_meter_config
from tests.fakeupstream import FakeUpstreamControl

ANTHROPIC_KEY = "sk-ant-admin01-reconcile-test-" + "Q" * 40
OPENAI_KEY = "sk-admin-reconcile-test-" + "Z" * 40
SONNET, HAIKU, GPT4O = "claude-sonnet-4-20250514", "claude-3-5-haiku-20241022", "gpt-4o-2024-08-06"

# USD per million tokens, from the providers' published price pages.
PRICES = {
    SONNET: {"input": "3", "output": "15", "cache_read": "0.30", "cache_write_5m": "3.75"},
    HAIKU: {"input": "0.80", "output": "4"},
    GPT4O: {"input": "2.50", "cache_read": "1.25", "output": "10"},
}
ANTHROPIC_TOKEN_TYPE = {
    "input": "uncached_input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_write_5m": "cache_creation.ephemeral_5m_input_tokens",
}
OPENAI_LINE = {"input": "input", "cache_read": "cached input", "output": "output"}


def days_ago(count: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=count)).isoformat()


def cost_usd(model: str, tokens: dict[str, int], prices: dict[str, str] | None = None) -> Decimal:
    table = prices or PRICES[model]
    return sum((Decimal(table[k]) * n / 1_000_000 for k, n in tokens.items()), Decimal(0))


# One day and model: the calls the meter saw (each with these tokens).
CALL = {
    SONNET: {"input": 1200, "cache_read": 5000, "cache_write_5m": 800, "output": 400},
    HAIKU: {"input": 300, "output": 120},
    GPT4O: {"input": 900, "cache_read": 1024, "output": 250},
}
CALLS_PER_DAY = 4


def ledger_row(provider: str, model: str, day: str, tokens: dict[str, int]) -> LedgerRow:
    nanousd = int(cost_usd(model, tokens) * 10**9)
    host = "api.anthropic.com" if provider == "anthropic" else "api.openai.com"
    return LedgerRow(
        id=new_request_id(),
        requested_at=f"{day}T12:00:00.000Z",
        provider=provider,
        api="messages" if provider == "anthropic" else "chat.completions",
        host=host,
        model=model,
        model_requested=model,
        stream=False,
        input_tokens=tokens.get("input", 0),
        cache_read_tokens=tokens.get("cache_read", 0),
        cache_write_tokens=tokens.get("cache_write_5m", 0),
        cache_write_1h_tokens=0,
        output_tokens=tokens.get("output", 0),
        reasoning_tokens=0,
        web_search_requests=0,
        http_status=200,
        status="ok",
        error_class=None,
        provider_error_code=None,
        latency_ms=100.0,
        ttft_ms=None,
        tokens_complete=True,
        response_id=None,
        service_tier=None,
        user_agent="test",
        project="misc",
        cost_nanousd=nanousd,
        price_source="test",
        provider_cost_usd=None,
        raw_usage=None,
        billing="api",
    )


def fill_ledger(home: Path, provider: str, models: list[str], days: list[str]) -> None:
    con = connect(home / "db.sqlite")
    with con:
        for day in days:
            for model in models:
                for _ in range(CALLS_PER_DAY):
                    con.execute(INSERT_SQL, ledger_row(provider, model, day, CALL[model]).values())
        # A subscription call (Claude Max) is never in the organisation's report: not counted.
        sub = ledger_row(provider, models[0], days[0], CALL[models[0]])
        sub.billing = "subscription"
        con.execute(INSERT_SQL, sub.values())
    con.close()


def provider_rows(
    provider: str,
    days: list[str],
    models: list[str],
    scale: dict[tuple[str, str], Decimal] | None = None,
    prices: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The provider's report rows for what the ledger holds (times `scale` for a day/model),
    charged at `prices` (default: the published ones)."""
    usage, cost = [], []
    for day in days:
        for model in models:
            factor = (scale or {}).get((day, model), Decimal(1))
            tokens = {k: int(v * CALLS_PER_DAY * factor) for k, v in CALL[model].items()}
            table = (prices or {}).get(model, PRICES[model])
            if provider == "anthropic":
                usage.append(
                    {
                        "day": day,
                        "model": model,
                        "uncached_input_tokens": tokens.get("input", 0),
                        "cache_read_input_tokens": tokens.get("cache_read", 0),
                        "cache_creation": {
                            "ephemeral_5m_input_tokens": tokens.get("cache_write_5m", 0),
                            "ephemeral_1h_input_tokens": 0,
                        },
                        "output_tokens": tokens.get("output", 0),
                        "server_tool_use": {"web_search_requests": 0},
                    }
                )
                for kind, count in tokens.items():
                    cents = Decimal(table[kind]) * count / 1_000_000 * 100
                    cost.append(
                        {
                            "day": day,
                            "model": model,
                            "cost_type": "tokens",
                            "token_type": ANTHROPIC_TOKEN_TYPE[kind],
                            "description": f"{model} {kind}",
                            "amount": f"{cents:f}",
                        }
                    )
            else:
                usage.append(
                    {
                        "day": day,
                        "model": model,
                        "input_tokens": tokens["input"] + tokens["cache_read"],
                        "input_cached_tokens": tokens["cache_read"],
                        "output_tokens": tokens["output"],
                        "num_model_requests": int(CALLS_PER_DAY * factor),
                    }
                )
                for kind, count in tokens.items():
                    value = Decimal(table[kind]) * count / 1_000_000
                    cost.append(
                        {"day": day, "line_item": f"{model}, {OPENAI_LINE[kind]}", "value": value}
                    )
    return {"usage": usage, "cost": cost, "page_size": 2}


def dataset(**providers: dict[str, Any]) -> dict[str, Any]:
    return {"keys": {"anthropic": [ANTHROPIC_KEY], "openai": [OPENAI_KEY]}, **providers}


def control(fake: FakeUpstream) -> FakeUpstreamControl:
    return FakeUpstreamControl(fake.port, fake.pki)


def set_reports(fake: FakeUpstream, data: dict[str, Any]) -> None:
    # Decimals as strings: the fake sums them exactly.
    control(fake).set_admin_reports(json.loads(json.dumps(data, default=str)))


@pytest.fixture
def home(tmp_path: Path, fake_upstream: FakeUpstream) -> Path:
    home = tmp_path / "home"
    write_meter_config(home, 18081, fake_upstream)
    return home


def reconcile_cli(home: Path, *args: str, **keys: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("ANTHROPIC_ADMIN_KEY", None)
    env.pop("OPENAI_ADMIN_KEY", None)
    # A proxy that refuses everything: the admin API must never be sent through it.
    env.update({"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    env.update({"HALTON_METER_HOME": str(home), "PATH": env.get("PATH", ""), **keys})
    return subprocess.run(
        [METER, "reconcile", *args], env=env, capture_output=True, text=True, timeout=60
    )


def by_key(payload: dict[str, Any], provider: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = payload["providers"][provider]["comparisons"]
    return {(row["day"], row["model"]): row for row in rows}


def test_agreeing_window_is_an_exact_match(home: Path, fake_upstream: FakeUpstream) -> None:
    days = [days_ago(3), days_ago(2), days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET, HAIKU], days)
    set_reports(fake_upstream, dataset(anthropic=provider_rows("anthropic", days, [SONNET, HAIKU])))
    control(fake_upstream).reset()

    done = reconcile_cli(
        home, "--provider", "anthropic", "--json", ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    found = by_key(payload, "anthropic")
    assert set(found) == {(d, m) for d in days for m in (SONNET, HAIKU)}
    for (_, model), row in found.items():
        assert row["verdict"] == "matches"
        expected = cost_usd(model, {k: v * CALLS_PER_DAY for k, v in CALL[model].items()})
        assert Decimal(row["cost_usd"]["ledger"]) == expected
        assert Decimal(row["cost_usd"]["provider"]) == expected
        assert row["tokens"]["input"] == {
            "ledger": CALL[model]["input"] * CALLS_PER_DAY,
            "provider": CALL[model]["input"] * CALLS_PER_DAY,
        }
    assert payload["providers"]["anthropic"]["matches"] is True

    # Paginated (page_size 2 over 7 daily buckets), the admin headers, grouped as documented.
    seen = control(fake_upstream).requests()
    usage = [r for r in seen if r["path"].startswith("/v1/organizations/usage_report/messages")]
    assert len(usage) == 4 and sum("page=" in r["path"] for r in usage) == 3
    assert all(r["headers"]["x-api-key"] == ANTHROPIC_KEY for r in usage)
    assert all(r["headers"]["anthropic-version"] for r in usage)
    assert all("group_by%5B%5D=model" in r["path"] for r in usage)
    assert all(r["sni"] == "api.anthropic.com" for r in seen)

    # The summary for status/dashboard/metrics, without the key.
    state = run.load(home)
    assert state is not None
    line = run.status_line(state)
    assert line == "anthropic: matches the provider's report for the last 7 days"

    text = reconcile_cli(home, "--provider", "anthropic", ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY)
    assert text.returncode == 0
    assert "The ledger matches anthropic's report for every day and model" in text.stdout


def test_five_percent_more_at_the_provider_is_unseen_traffic(
    home: Path, fake_upstream: FakeUpstream
) -> None:
    days = [days_ago(3), days_ago(2), days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET, HAIKU], days)
    busy = days[1]
    con = sqlite3.connect(home / "db.sqlite")
    with con:
        con.execute(
            "INSERT INTO unmetered_spans (id, host, port, kind, opened_at, last_at, closed_at, "
            "closed_by, bytes_up, bytes_down, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "span-1",
                "api.anthropic.com",
                443,
                "passthrough",
                f"{busy}T09:10:00.000Z",
                f"{busy}T09:14:00.000Z",
                f"{busy}T09:14:00.000Z",
                "client",
                20000,
                30000,
                f"{busy}T09:14:01.000Z",
            ),
        )
    con.close()
    scale = {(busy, SONNET): Decimal("1.05")}
    report = provider_rows("anthropic", days, [SONNET, HAIKU], scale=scale)
    set_reports(fake_upstream, dataset(anthropic=report))

    done = reconcile_cli(
        home, "--provider", "anthropic", "--json", ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY
    )
    assert done.returncode == 6, done.stderr
    found = by_key(json.loads(done.stdout), "anthropic")
    unseen = found[(busy, SONNET)]
    assert unseen["verdict"] == "ledger_has_less"
    assert unseen["tokens"]["input"]["provider"] == int(1200 * 4 * Decimal("1.05"))
    assert unseen["tokens"]["input"]["ledger"] == 1200 * 4
    assert [span["host"] for span in unseen["unmetered_spans"]] == ["api.anthropic.com"]
    assert unseen["next_steps"]
    others = {key: row["verdict"] for key, row in found.items() if key != (busy, SONNET)}
    assert set(others.values()) == {"matches"}, others

    text = reconcile_cli(home, "--provider", "anthropic", ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY)
    assert text.returncode == 6
    assert f"{busy} {SONNET}: ledger has less" in text.stdout
    assert "unmetered: 1 connection to api.anthropic.com" in text.stdout
    state = run.load(home)
    assert "differs from the provider's report" in (run.status_line(state) or "")


def test_a_different_price_is_reported_with_the_override_to_add(
    home: Path, fake_upstream: FakeUpstream
) -> None:
    days = [days_ago(2), days_ago(1)]
    fill_ledger(home, "openai", [GPT4O], days)
    negotiated = {GPT4O: {"input": "2.25", "cache_read": "1.125", "output": "9"}}
    report = provider_rows("openai", days, [GPT4O], prices=negotiated)
    set_reports(fake_upstream, dataset(openai=report))

    done = reconcile_cli(home, "--provider", "openai", "--json", OPENAI_ADMIN_KEY=OPENAI_KEY)
    assert done.returncode == 6, done.stderr
    found = by_key(json.loads(done.stdout), "openai")
    assert set(found) == {(d, GPT4O) for d in days}
    for row in found.values():
        assert row["verdict"] == "prices_differ"
        assert row["requests"] == {"ledger": CALLS_PER_DAY, "provider": CALLS_PER_DAY}
        tokens = {k: v * CALLS_PER_DAY for k, v in CALL[GPT4O].items()}
        assert Decimal(row["cost_usd"]["provider"]) == cost_usd(GPT4O, tokens, negotiated[GPT4O])
    override = found[(days[0], GPT4O)]["override"]
    assert override.startswith("[[pricing.overrides]]")
    import tomllib

    entry = tomllib.loads(override)["pricing"]["overrides"][0]
    assert entry["provider"] == "openai" and entry["model"] == GPT4O
    assert entry["effective_from"] == days[0]
    (parsed,) = parse_overrides([entry], lambda index, key: None)
    assert parsed.input_mtok == Decimal("2.25")
    assert parsed.cache_read_mtok == Decimal("1.125")
    assert parsed.output_mtok == Decimal("9")

    text = reconcile_cli(home, "--provider", "openai", OPENAI_ADMIN_KEY=OPENAI_KEY)
    assert "prices differ" in text.stdout
    assert "input_mtok = 2.25" in text.stdout and "reprice --since" in text.stdout


def test_a_key_without_permission_is_a_clear_error(home: Path, fake_upstream: FakeUpstream) -> None:
    fill_ledger(home, "anthropic", [SONNET], [days_ago(1)])
    set_reports(
        fake_upstream, dataset(anthropic=provider_rows("anthropic", [days_ago(1)], [SONNET]))
    )
    refused = "sk-ant-admin01-no-usage-permission-" + "R" * 30
    done = reconcile_cli(home, "--provider", "anthropic", ANTHROPIC_ADMIN_KEY=refused)
    assert done.returncode == 5
    assert "anthropic refused the admin key (403" in done.stderr
    assert "permission" in done.stderr
    assert refused not in done.stderr + done.stdout

    normal = "sk-ant-api03-" + "N" * 40
    done = reconcile_cli(home, "--provider", "anthropic", ANTHROPIC_ADMIN_KEY=normal)
    assert done.returncode == 5 and "(401" in done.stderr and "sk-ant-admin" in done.stderr

    done = reconcile_cli(home, "--provider", "openai", "--json")
    assert done.returncode == 5
    assert json.loads(done.stdout)["providers"]["openai"]["error"] == "no_key"
    assert "OPENAI_ADMIN_KEY" in json.loads(done.stdout)["providers"]["openai"]["message"]


def test_the_key_is_read_from_the_keychain_and_never_written(
    home: Path, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    days = [days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET], days)
    set_reports(fake_upstream, dataset(anthropic=provider_rows("anthropic", days, [SONNET])))
    # A `secret-tool` on PATH that answers like libsecret's for our service and account only.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "secret-tool"
    tool.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3 $4 $5" = "lookup service halton-meter account anthropic-admin" ] || exit 1\n'
        f"printf '%s' '{ANTHROPIC_KEY}'\n"
    )
    tool.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    done = reconcile_cli(home, "--provider", "anthropic", "--json", PATH=path)
    assert done.returncode == 0, done.stderr
    source = json.loads(done.stdout)["providers"]["anthropic"]["key_source"]
    assert source == "keychain (halton-meter/anthropic-admin)"
    tool.unlink()  # the key now exists only in this test's memory

    done = reconcile_cli(home, "--provider", "anthropic", ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY)
    assert done.returncode == 0
    # No key on disk: not in the ledger, config, state file, logs, anything under the home.
    for key in (ANTHROPIC_KEY, OPENAI_KEY):
        for path_found in home.rglob("*"):
            if path_found.is_file():
                assert key.encode() not in path_found.read_bytes(), path_found
        grep = subprocess.run(["grep", "-rl", key, str(home)], capture_output=True, text=True)
        assert grep.returncode == 1 and grep.stdout == ""


def test_keychain_boundary_is_replaceable() -> None:
    class Fake:
        where = "test"

        def lookup(self, account: str) -> str | None:
            return {"openai-admin": OPENAI_KEY}.get(account)

    saved = os.environ.pop("OPENAI_ADMIN_KEY", None)
    try:
        with use_keychain(Fake()):
            lookup = keychain().lookup
            assert run.find_key("openai", lookup) == (
                OPENAI_KEY,
                "keychain (halton-meter/openai-admin)",
            )
            with pytest.raises(run.NoKey):  # the daemon reads the environment only
                run.find_key("openai")
    finally:
        if saved is not None:
            os.environ["OPENAI_ADMIN_KEY"] = saved


def test_scheduled_run_feeds_status_metrics_and_the_api(
    home: Path, fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from halton_meter.api import metrics
    from halton_meter.api.app import ApiSettings, create_app
    from halton_meter.config import load_config
    from halton_meter.paths import Paths
    from halton_meter.reconcile.schedule import ReconcileLoop

    days = [days_ago(2), days_ago(1)]
    fill_ledger(home, "anthropic", [SONNET], days)
    scale = {(days[0], SONNET): Decimal("1.05")}
    report = provider_rows("anthropic", days, [SONNET], scale=scale)
    set_reports(fake_upstream, dataset(anthropic=report))
    (home / "config.toml").write_text(
        (home / "config.toml").read_text()
        + "\n[reconcile]\nenabled = true\ndays = 7\nalert_above_usd = 0.001\n"
    )
    config = load_config(Paths(home, True))
    assert config.reconcile.enabled and config.reconcile.alert_above_usd == Decimal("0.001")
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ANTHROPIC_KEY)
    loop = ReconcileLoop(home, home / "db.sqlite", config.reconcile, config.upstream)
    assert loop.providers() == ["anthropic"]
    state = loop.run_once()
    summary = state["providers"]["anthropic"]
    assert summary["matches"] is False and summary["alert"] is True
    assert summary["verdicts"] == {"ledger_has_less": 1, "matches": 1}
    assert summary["differences"] == [
        {"day": days[0], "model": SONNET, "verdict": "ledger_has_less"}
    ]
    # The 5 % more the provider billed: input, cache, output of 4 calls, at published prices.
    extra = cost_usd(
        SONNET, {k: int(v * 4 * Decimal("1.05")) - v * 4 for k, v in CALL[SONNET].items()}
    )
    assert Decimal(summary["cost_difference_usd"]) == extra

    con = connect(home / "db.sqlite")
    text = metrics.render(con, None, None, lambda: None, 0.8, run.load(home))
    con.close()
    assert 'halton_meter_reconcile_matches{provider="anthropic"} 0' in text
    assert f'halton_meter_reconcile_cost_difference_usd{{provider="anthropic"}} {extra:f}' in text

    app = create_app(ApiSettings(ledger=home / "db.sqlite", port=18765, token="t" * 32))
    client = TestClient(app, base_url="http://127.0.0.1:18765")
    answer = client.get("/v1/reconcile").json()
    assert answer["providers"]["anthropic"]["verdicts"]["ledger_has_less"] == 1
    assert answer["line"].startswith("anthropic: differs from the provider's report")
    assert ANTHROPIC_KEY not in json.dumps(answer) + text
