"""Body capture's limits and its way out, with real calls through the daemon: a call past the
per-call cap is cut at the cap with a marker; a project past its total cap loses its oldest
bodies (docs/body-capture.md); bodies past their retention go when the daemon starts (and on
its hourly round), bytes and all; `uninstall --purge` leaves no captured byte; and
`body_capture = on` in a project's `.haltonrc` is all it takes, its sibling keeping nothing."""

from __future__ import annotations

import json
import random
import sqlite3
import string
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from halton_meter.bodies.sink import truncation_marker
from halton_meter.bodies.store import BodyStore, ExpiryLoop
from tests.conftest import METER, ROOT, FakeUpstream, Meter, start_meter, wait_for
from tests.test_bodies_capture import grep_home

ANTHROPIC = "https://api.anthropic.com/v1/messages"


def request_body(content: str, stream: bool) -> bytes:
    return json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "stream": stream,
            "messages": [{"role": "user", "content": content}],
        }
    ).encode()


def anthropic_call(
    env: dict[str, str],
    body: bytes,
    scratch: Path,
    project: str | None,
    cwd: Path = ROOT,
    *headers: str,
) -> str:
    """One call by curl under `halton-meter run`; the body from a file (it may be large)."""
    scratch.mkdir(parents=True, exist_ok=True)
    data = scratch / f"body-{time.monotonic_ns()}.json"
    data.write_bytes(body)
    tagged = ["--project", project] if project else []
    extra = [arg for header in headers for arg in ("-H", header)]
    done = subprocess.run(
        [
            *(METER, "run", *tagged, "--", "curl", "-sS", "-N", ANTHROPIC),
            *("-H", "content-type: application/json"),
            *("-H", "x-api-key: sk-ant-api03-" + "k" * 40),
            *("-H", "anthropic-version: 2023-06-01", *extra, "--data-binary", f"@{data}"),
        ],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    data.unlink()
    assert done.returncode == 0, done.stderr
    return done.stdout


def stored_blobs(home: Path) -> dict[str, tuple[str, bytes]]:
    """id -> (requested_at, the compressed document as it lies in the file)."""
    con = sqlite3.connect(home / "bodies.sqlite")
    try:
        rows = con.execute("SELECT id, requested_at, document FROM bodies").fetchall()
    finally:
        con.close()
    return {row[0]: (row[1], row[2]) for row in rows}


def wait_body(home: Path, call_id: str) -> bytes:
    found = wait_for(
        lambda: (home / "bodies.sqlite").exists() and stored_blobs(home).get(call_id),
        20,
        f"the body of {call_id}",
    )
    blob: bytes = found[1]
    return blob


def newest_row(meter: Meter, project: str, count: int) -> dict[str, Any]:
    rows = wait_for(lambda: len(r := meter.rows(project)) == count and r, 20, f"{count} rows")
    row: dict[str, Any] = rows[-1]
    return row


# --- caps ------------------------------------------------------------------------------------


def test_a_call_past_the_cap_is_cut_at_the_cap_with_a_marker(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    extra = '[[capture]]\nproject = "capped"\n\n[body_capture]\nmax_call_kb = 1\n'
    meter = start_meter(tmp_path / "home", fake_upstream, extra_config=extra)
    try:
        # A whole response: the request (5 KB of plain words) is cut at 1 KiB.
        sent = request_body("lorem ipsum dolor sit amet " * 200, stream=False)
        anthropic_call(meter.run_env(), sent, tmp_path, "capped")
        whole = newest_row(meter, "capped", 1)
        # A long stream (400 events): what the proxy keeps stops at the cap, the rest counted.
        streamed_sent = request_body("short question", stream=True)
        received = anthropic_call(
            meter.run_env(), streamed_sent, tmp_path, "capped", ROOT, "x-fake-events: 400"
        )
        assert len(received.encode()) > 8 * 1024
        stream = newest_row(meter, "capped", 2)
        wait_body(meter.home, whole["id"])
        wait_body(meter.home, stream["id"])
        store = BodyStore(meter.home / "bodies.sqlite")
        body = store.get(whole["id"])
        assert body is not None and body.truncated
        over = len(sent) - 1024
        request = body.document["request"]
        assert request == sent[:1024].decode() + truncation_marker(over)
        assert body.document["truncated"]["request"] == over
        assert body.original_bytes >= len(sent)

        cut = store.get(stream["id"])
        assert cut is not None and cut.truncated
        assert cut.document["request"] == streamed_sent.decode()  # under the cap: whole
        # The stream as the client got it (curl -N: the decoded events) minus the 1 KiB kept.
        assert cut.document["truncated"]["stream"] == len(received.encode()) - 1024
        for part in cut.document["message"]["parts"]:
            assert len((part.get("text") or part.get("arguments") or "").encode()) <= 1024
        store.close()
        # `show --body` says it was cut.
        shown = subprocess.run(
            [METER, "show", whole["id"], "--body"],
            env=meter.run_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert "[truncated by Halton Meter" in shown.stdout
    finally:
        assert meter.stop() == 0


def random_words(size: int, seed: int) -> str:
    """Text zstd cannot shrink much (so the stored size is known roughly) and no redaction
    pattern touches (letters and digits, no labels, no key prefixes)."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def test_a_project_past_its_total_cap_loses_its_oldest_bodies(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    extra = (
        '[[capture]]\nproject = "cap-*"\n\n[body_capture]\nmax_call_kb = 400\nmax_project_mb = 1\n'
    )
    meter = start_meter(tmp_path / "home", fake_upstream, extra_config=extra)
    try:
        anthropic_call(meter.run_env(), request_body("small one", False), tmp_path, "cap-other")
        other = newest_row(meter, "cap-other", 1)
        wait_body(meter.home, other["id"])
        blobs: dict[str, bytes] = {}
        order: list[str] = []
        for n in range(6):  # ~300 KB each, ~225 KB compressed: four fit in 1 MiB
            body = request_body(random_words(300_000, n), stream=False)
            anthropic_call(meter.run_env(), body, tmp_path, "cap-big")
            row = newest_row(meter, "cap-big", n + 1)
            order.append(row["id"])
            blobs[row["id"]] = wait_body(meter.home, row["id"])
        kept = stored_blobs(meter.home)
        big = [i for i in order if i in kept]
        assert big == order[-len(big) :], "the newest stay, the oldest go"
        assert 2 <= len(big) < 6
        assert sum(len(kept[i][1]) for i in big) <= 1024 * 1024
        # One more of the evicted would have been past the cap.
        dropped = order[-len(big) - 1]
        assert sum(len(kept[i][1]) for i in big) + len(blobs[dropped]) > 1024 * 1024
        assert other["id"] in kept  # another project's bodies are not its to lose
        assert len(meter.rows("cap-big")) == 6  # the ledger keeps every row
        # The evicted bodies' bytes are gone from the file (secure_delete), not just unlinked:
        # a run of each body's bytes (from its first page; the rest spans overflow pages).
        data = (meter.home / "bodies.sqlite").read_bytes()
        for call_id in order:
            assert (blobs[call_id][100:164] in data) is (call_id in big)
    finally:
        assert meter.stop() == 0


# --- expiry ----------------------------------------------------------------------------------


def test_bodies_past_their_retention_go_when_the_daemon_starts(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    extra = '[[capture]]\nproject = "aging"\n\n[body_capture]\nretention_days = 2\n'
    meter = start_meter(home, fake_upstream, extra_config=extra)
    try:
        for n in range(2):
            anthropic_call(meter.run_env(), request_body(f"call {n}", True), tmp_path, "aging")
            newest_row(meter, "aging", n + 1)
        old, fresh = (row["id"] for row in meter.rows("aging"))
        old_blob = wait_body(home, old)
        fresh_blob = wait_body(home, fresh)
        assert old_blob != fresh_blob
    finally:
        assert meter.stop() == 0
    # Three days pass for the first call's body (its stored time, which expiry goes by).
    con = sqlite3.connect(home / "bodies.sqlite")
    with con:
        aged = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        con.execute("UPDATE bodies SET requested_at = ? WHERE id = ?", (aged, old))
    con.close()
    meter = start_meter(home, fake_upstream, extra_config=extra)  # no command: the daemon
    try:
        wait_for(lambda: old not in stored_blobs(home), 20, "the expired body to go")
        assert set(stored_blobs(home)) == {fresh}
        data = (home / "bodies.sqlite").read_bytes()
        assert old_blob not in data and fresh_blob in data
        assert len(meter.rows("aging")) == 2  # the ledger rows stay
        status = subprocess.run(
            [METER, "capture", "status", "--json"],
            env=meter.run_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert [p["bodies"] for p in json.loads(status.stdout)["stored"]] == [1]
    finally:
        assert meter.stop() == 0


def test_the_expiry_loop_keeps_going_after_start(tmp_path: Path) -> None:
    """The daemon's hourly round, at a tenth of a second: a body that ages while it runs goes."""
    store = BodyStore(tmp_path / "bodies.sqlite")
    now = datetime.now(UTC)

    def put(call_id: str, at: datetime) -> None:
        store.put(
            id=call_id,
            project="p",
            requested_at=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            provider="anthropic",
            model="m",
            document={"request": call_id},
            original_bytes=1,
            truncated=False,
            redactions={},
            max_project_bytes=1 << 30,
        )

    put("kept", now)
    loop = ExpiryLoop(store, retention_days=1, every=0.1)
    loop.start()
    try:
        time.sleep(0.3)
        put("aged", now - timedelta(days=2))  # arrives after the start-up purge
        wait_for(lambda: set(store.ids()) == {"kept"}, 5, "the next round")
    finally:
        loop.stop()
        store.close()


# --- uninstall -------------------------------------------------------------------------------


MARK = "QUOKKA-UNINSTALL-5521"


def test_uninstall_purge_removes_every_captured_byte(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    home, user = tmp_path / "home", tmp_path / "user"
    user.mkdir()
    extra = '[[capture]]\nproject = "kept"\n'
    meter = start_meter(home, fake_upstream, extra_config=extra)
    try:
        for stream in (True, False):
            anthropic_call(meter.run_env(), request_body(MARK, stream), tmp_path / "s", "kept")
        rows = wait_for(lambda: len(r := meter.rows("kept")) == 2 and r, 20, "rows")
        for row in rows:
            wait_body(home, row["id"])
        assert (home / "bodies.sqlite").exists()
        env = meter.run_env(HOME=str(user), HALTON_METER_SUPERVISOR="background")
        done = subprocess.run(
            [METER, "uninstall", "--purge", "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"removed {home / 'bodies.sqlite'}" in done.stderr
    finally:
        meter.stop()
    assert (home / "db.sqlite").exists()  # the ledger stays (without --include-logs)
    assert not list(home.glob("bodies.sqlite*"))
    # Nothing of the conversation is left anywhere in the home: not the prompt, nor an answer.
    assert grep_home(home, MARK.encode()) == []
    assert grep_home(home, b'claude-sonnet-4-5", "max_tokens') == []
    assert (
        "bodies"
        not in sqlite3.connect(home / "db.sqlite")
        .execute("SELECT group_concat(name) FROM sqlite_master")
        .fetchone()[0]
    )


# --- .haltonrc -------------------------------------------------------------------------------


SECRET = "sk-proj-" + "Q7x" * 12  # an OpenAI key pasted into a prompt
WORDS = {"alpha-site": "PANGOLIN-ALPHA-8812", "beta-site": "PANGOLIN-BETA-4471"}


def test_haltonrc_body_capture_on_captures_that_project_only(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """No `[[capture]]` at all: the one line in alpha's `.haltonrc` turns it on there."""
    work = tmp_path / "work"
    alpha, beta = work / "alpha-site", work / "beta-site"
    for folder in (alpha, beta):
        folder.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(folder)], check=True)
    (alpha / ".haltonrc").write_text("body_capture = on\n")
    home = tmp_path / "home"
    meter = start_meter(home, fake_upstream)
    try:
        for folder in (alpha, beta):
            prompt = f"{WORDS[folder.name]} my key is {SECRET} please keep it safe"
            for stream in (True, False):
                anthropic_call(
                    meter.run_env(), request_body(prompt, stream), tmp_path / "s", None, folder
                )
        alpha_rows = meter.wait_rows("alpha-site", 2)
        beta_rows = meter.wait_rows("beta-site", 2)
        for row in alpha_rows:
            wait_body(home, row["id"])
        time.sleep(1)  # a body for beta, were one coming, has had its chance
        store = BodyStore(home / "bodies.sqlite")
        assert set(store.ids()) == {row["id"] for row in alpha_rows}
        for row in alpha_rows:
            body = store.get(row["id"])
            assert body is not None and body.project == "alpha-site"
            text = json.dumps(body.document)
            assert (
                WORDS["alpha-site"] in text
                and SECRET not in text
                and "[REDACTED:openai-key]" in text
            )
            assert body.document["message"]["parts"], "the answer is kept too"
        streamed = next(r for r in alpha_rows if r["stream"])
        assert store.get(streamed["id"]).document["message"]["parts"][0]["text"]  # type: ignore[union-attr]
        store.close()
    finally:
        assert meter.stop() == 0
    # On disk: the sibling's prompt nowhere, the secret nowhere at all, and the captured
    # project's prompt (zstd keeps short text as it is) only in the bodies file.
    assert grep_home(home, WORDS["beta-site"].encode()) == []
    assert grep_home(home, SECRET.encode()) == []
    assert {p.name for p in grep_home(home, WORDS["alpha-site"].encode())} <= {"bodies.sqlite"}
    beta_ids = [row["id"].encode() for row in beta_rows]
    data = (home / "bodies.sqlite").read_bytes()
    assert not any(i in data for i in beta_ids)
