"""`pricing list/show` and `reprice` on a real ledger. Expected prices are Anthropic's
published ones (claude.com/pricing): Claude Sonnet 4.5 $3 input, $15 output per million tokens,
$6 / $22.50 above 200k prompt tokens."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from halton_meter.ledger.writer import LedgerWriter
from tests.test_cli import cli
from tests.test_ledger import Ready, sample_row

SONNET_INPUT, SONNET_OUTPUT = 3, 15


def test_pricing_list_json(tmp_path: Path) -> None:
    done = cli(tmp_path, "pricing", "list", "--provider", "anthropic", "--json")
    assert done.returncode == 0, done.stderr
    models = {m["model"]: m for m in json.loads(done.stdout)}
    sonnet = models["claude-sonnet-4-5"]
    assert (sonnet["input_mtok"], sonnet["output_mtok"]) == (str(SONNET_INPUT), str(SONNET_OUTPUT))
    assert all(m["provider"] == "anthropic" for m in models.values())


def test_pricing_show_resolves_snapshots_and_spellings(tmp_path: Path) -> None:
    for name in ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5", "anthropic/claude-sonnet-4-5"):
        done = cli(tmp_path, "pricing", "show", name, "--json")
        assert done.returncode == 0, (name, done.stderr)
        shown = json.loads(done.stdout)
        assert shown["model"] == "claude-sonnet-4-5"
        (tier,) = shown["long_context"]
        assert (tier["above_prompt_tokens"], tier["input_mtok"]) == (200_000, "6")
    table = cli(tmp_path, "pricing", "show", "claude-sonnet-4-5")
    assert "200,000" in table.stdout and "$22.5" in table.stdout


def test_pricing_show_unknown_model(tmp_path: Path) -> None:
    done = cli(tmp_path, "pricing", "show", "no-such-model-7")
    assert done.returncode == 1
    assert "unpriced" in done.stderr and "[[pricing.overrides]]" in done.stderr


def _seed_unpriced(home: Path) -> str:
    row = replace(
        sample_row(),
        model="claude-sonnet-4-5-20250929",
        input_tokens=1000,
        output_tokens=100,
        cache_read_tokens=0,
        cache_write_tokens=0,
        cache_write_1h_tokens=0,
        web_search_requests=0,
        cost_nanousd=None,
        price_source=None,
        service_tier="standard",
    )
    writer = LedgerWriter(home / "db.sqlite")
    writer.start()
    writer.submit(Ready(row))
    writer.close()
    return row.id


def _stored(home: Path, row_id: str) -> tuple[int | None, str | None]:
    con = sqlite3.connect(home / "db.sqlite")
    found = con.execute(
        "SELECT cost_nanousd, price_source FROM requests WHERE id = ?", (row_id,)
    ).fetchone()
    con.close()
    return found[0], found[1]


def test_reprice_dry_run_then_apply_then_override(tmp_path: Path) -> None:
    row_id = _seed_unpriced(tmp_path)
    by_hand = (1000 * SONNET_INPUT + 100 * SONNET_OUTPUT) * 1000  # nano-USD
    dry = cli(tmp_path, "reprice", "--since", "1d", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    (model,) = json.loads(dry.stdout)["models"]
    assert (model["old_unpriced"], model["new_cost_nanousd"], model["rows_changing"]) == (
        1,
        by_hand,
        1,
    )
    assert _stored(tmp_path, row_id) == (None, None)  # a dry run writes nothing

    applied = cli(tmp_path, "reprice", "--since", "1d", "--yes")
    assert applied.returncode == 0, applied.stderr
    cost, source = _stored(tmp_path, row_id)
    assert cost == by_hand and source is not None and source.startswith("genai-prices ")

    (tmp_path / "config.toml").write_text(
        '[[pricing.overrides]]\nname = "acme"\nprovider = "anthropic"\n'
        'model = "claude-sonnet-4*"\ndiscount_pct = 20\n'
    )
    cli(tmp_path, "reprice", "--since", "1d", "--yes")
    cost, source = _stored(tmp_path, row_id)
    assert cost == by_hand * 80 // 100
    assert source is not None and source.startswith("override:acme")


def test_reprice_asks_before_writing(tmp_path: Path) -> None:
    row_id = _seed_unpriced(tmp_path)
    declined = cli(tmp_path, "reprice", "--since", "1d", input="n\n")
    assert "Nothing changed" in declined.stdout
    assert _stored(tmp_path, row_id) == (None, None)


def test_bad_override_names_entry_key_and_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[[pricing.overrides]]\nprovider = "anthropic"\nmodel = "x"\ninput_mtok = 1\n\n'
        '[[pricing.overrides]]\nprovider = "openai"\nmodel = "y"\ninput_mtok = -2\n'
    )
    done = cli(tmp_path, "requests")
    assert done.returncode == 3
    assert "pricing.overrides[1].input_mtok" in done.stderr and "line 9" in done.stderr


def test_display_currency_converts_tables_but_not_json(tmp_path: Path) -> None:
    row_id = _seed_unpriced(tmp_path)
    cli(tmp_path, "reprice", "--since", "1d", "--yes")
    cost, _ = _stored(tmp_path, row_id)
    assert cost is not None
    (tmp_path / "config.toml").write_text('[display]\ncurrency = "EUR"\nusd_rate = 0.5\n')
    table = cli(tmp_path, "requests")
    assert f"{cost / 2 / 1e9:.6f} EUR" in table.stdout
    (item,) = json.loads(cli(tmp_path, "requests", "--json").stdout)
    assert item["cost_nanousd"] == cost  # the ledger and JSON stay in USD
    (tmp_path / "config.toml").write_text('[display]\ncurrency = "EUR"\n')
    assert cli(tmp_path, "requests").returncode == 3
