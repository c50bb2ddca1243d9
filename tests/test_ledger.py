"""The SQLite ledger: migrations under concurrency, forward compatibility, the batching writer."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from halton_meter.ledger import schema
from halton_meter.ledger.db import connect
from halton_meter.ledger.row import ROW_COLUMNS, LedgerRow, new_request_id, utc_iso_ms
from halton_meter.ledger.writer import LedgerWriter


def sample_row(**changes: object) -> LedgerRow:
    started = time.time()
    row = LedgerRow(
        id=new_request_id(),
        requested_at=utc_iso_ms(started),
        provider="anthropic",
        api="messages",
        host="api.anthropic.com",
        model="claude-sonnet-4-5-20250929",
        model_requested="claude-sonnet-4-5",
        stream=True,
        input_tokens=12,
        cache_read_tokens=3000,
        cache_write_tokens=400,
        cache_write_1h_tokens=100,
        output_tokens=250,
        reasoning_tokens=None,
        web_search_requests=1,
        http_status=200,
        status="ok",
        error_class=None,
        provider_error_code=None,
        latency_ms=812.5,
        ttft_ms=301.25,
        tokens_complete=True,
        response_id="msg_01",
        service_tier="standard",
        user_agent="Anthropic/Python 2.14.0",
        project="misc",
        cost_nanousd=None,
        price_source=None,
        provider_cost_usd=None,
        raw_usage='{"input_tokens":12}',
    )
    return replace(row, **changes)  # type: ignore[arg-type]


@dataclass
class Ready:
    row: LedgerRow

    def to_row(self) -> LedgerRow:
        return self.row


def test_concurrent_starters_apply_each_migration_once(tmp_path: Path) -> None:
    ledger = tmp_path / "db.sqlite"
    code = (
        "import sys; from pathlib import Path; from halton_meter.ledger.db import connect;"
        "from halton_meter.ledger.schema import migrate;"
        "con = connect(Path(sys.argv[1])); print(migrate(con))"
    )
    starters = [
        subprocess.Popen([sys.executable, "-c", code, str(ledger)], stdout=subprocess.PIPE)
        for _ in range(6)
    ]
    for process in starters:
        assert process.wait(timeout=60) == 0
    con = sqlite3.connect(ledger)
    applied = con.execute("SELECT id FROM _migrations ORDER BY id").fetchall()
    assert [row[0] for row in applied] == [number for number, _, _ in schema.MIGRATIONS]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_older_release_keeps_writing_after_a_newer_migration(tmp_path: Path) -> None:
    """A newer release adds a column; this release's INSERT (named columns) still works and
    it reports the newer schema version without trying to repair anything."""
    ledger = tmp_path / "db.sqlite"
    con = connect(ledger)
    con.execute("ALTER TABLE requests ADD COLUMN from_the_future TEXT NOT NULL DEFAULT 'x'")
    con.execute("INSERT INTO _migrations VALUES (999, 'future', 0)")
    con.close()
    writer = LedgerWriter(ledger)
    writer.start()
    writer.submit(Ready(sample_row()))
    writer.close()
    con = connect(ledger)
    assert con.execute("SELECT COUNT(*), MIN(from_the_future) FROM requests").fetchone() == (1, "x")
    assert schema.schema_version(con) == 999


def test_writer_writes_every_row_and_flushes_on_close(tmp_path: Path) -> None:
    ledger = tmp_path / "db.sqlite"
    writer = LedgerWriter(ledger)
    writer.start()
    rows = [sample_row(output_tokens=i) for i in range(2500)]
    for row in rows:
        writer.submit(Ready(row))
    writer.close()
    con = connect(ledger)
    stored = con.execute("SELECT id, output_tokens FROM requests ORDER BY output_tokens").fetchall()
    assert stored == [(row.id, row.output_tokens) for row in rows]
    assert writer.rows_written == 2500


def test_locked_ledger_keeps_rows_until_it_can_write(tmp_path: Path) -> None:
    ledger = tmp_path / "db.sqlite"
    writer = LedgerWriter(ledger)
    writer.start()
    blocker = sqlite3.connect(ledger, isolation_level=None, timeout=0)
    blocker.execute("PRAGMA busy_timeout=0")
    blocker.execute("BEGIN EXCLUSIVE")
    # While locked: submitting never blocks, and nothing is lost.
    started = time.monotonic()
    for i in range(50):
        writer.submit(Ready(sample_row(input_tokens=i)))
    assert time.monotonic() - started < 0.5
    time.sleep(0.3)
    blocker.execute("ROLLBACK")
    blocker.close()
    writer.close()
    con = connect(ledger)
    assert con.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 50


def test_a_row_that_cannot_be_built_does_not_stop_the_writer(tmp_path: Path) -> None:
    class Broken:
        def to_row(self) -> LedgerRow:
            raise ValueError("parser bug")

    writer = LedgerWriter(tmp_path / "db.sqlite")
    writer.start()
    writer.submit(Broken())
    writer.submit(Ready(sample_row()))
    writer.close()
    assert (writer.rows_written, writer.rows_dropped) == (1, 1)


def test_row_columns_match_the_schema(tmp_path: Path) -> None:
    con = connect(tmp_path / "db.sqlite")
    table = [row[1] for row in con.execute("PRAGMA table_info(requests)")]
    assert set(ROW_COLUMNS) <= set(table)


def test_no_secret_columns(tmp_path: Path) -> None:
    con = connect(tmp_path / "db.sqlite")
    names = " ".join(row[1] for row in con.execute("PRAGMA table_info(requests)")).lower()
    for forbidden in ("authorization", "api_key", "prompt_text", "body", "header"):
        assert forbidden not in names


def test_odd_values_from_clients_never_stop_the_writer(tmp_path: Path) -> None:
    """A Latin-1 User-Agent (mitmproxy hands it over as surrogates), a lone surrogate in a model
    name, a count beyond 64 bits: each row is stored (cleaned) and the writer carries on."""
    ledger = tmp_path / "db.sqlite"
    writer = LedgerWriter(ledger)
    writer.start()
    odd = [
        sample_row(user_agent="caf\udce9/1.0"),
        sample_row(model="\ud800"),
        sample_row(output_tokens=2**70),
    ]
    for row in odd:
        writer.submit(Ready(row))
    writer.submit(Ready(sample_row(project="after")))
    assert writer.close() is True
    con = connect(ledger)
    stored = dict(con.execute("SELECT id, output_tokens FROM requests").fetchall())
    assert {row.id for row in odd} <= set(stored) and len(stored) == 4
    assert stored[odd[2].id] is None
    assert con.execute("SELECT COUNT(*) FROM requests WHERE project = 'after'").fetchone()[0] == 1
