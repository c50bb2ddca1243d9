"""Fail-open with pooled clients: kill -9 of the daemon under load, then how soon metering
resumes on the clients' pooled connections, and whether the gap shows in the ledger.

    PYTHONPATH=src:. .venv/bin/python bench/pooled_resume.py [--rounds 3] \
        [--out bench/results/pooled_resume.json]
    PYTHONPATH=src:. .venv/bin/python bench/pooled_resume.py --busy \
        [--out bench/results/pooled_resume_busy.json]

`--busy`: 40-80 ms think time and an SDK client per worker, so no connection is ever quiet for
the edge's 0.25 s (the quiet a due tunnel needs shrinks, edge/resume.py), the load kept
BUSY_RESUME + 4 s after the daemon is back, and every call sent BUSY_RESUME s after it must be
metered.

Real processes, as in tests/test_resume.py (whose harness this reuses): the TLS fake provider,
the edge, the daemon, and two pooled SDK clients (the Anthropic and OpenAI Python SDKs, one
httpx pool each, 4 workers, 0.6-1.2 s think time, their default 2 retries). Each round kills
the daemon with SIGKILL, leaves it down 3 s, starts it again (its start-up is the slow part
on a busy machine) and keeps the load RECOVERY + 4 s more. Printed per round and in total:

- failed calls (the client saw an error after the SDK's retries) and retried calls: cut by the
  kill itself, or written in the instant the edge closed an idle tunnel (the race of any
  keep-alive close; such a call never reaches the provider and the SDK retries it);
- the passthrough gap: from the kill to the edge's switch back to metering;
- metering resumed on pooled connections: from the daemon being back to the last call sent
  on an unmetered connection, and from the edge's switch back to metering to the last
  tunnel it closed;
- unmetered spans against the truth: spans per host in the ledger, and the clients' own
  connections that carried no metered call.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import FakeUpstream, Meter, free_port, wait_for  # noqa: E402
from tests.fakeupstream.certs import make_test_pki  # noqa: E402
from tests.test_edge import start_daemon, start_edge  # noqa: E402
from tests.test_resume import (  # noqa: E402
    BUSY_RESUME,
    RECOVERY,
    Stack,
    check_calls,
    outage,
    python_client,
    unmetered_connections,
)


def start_fake(work: Path) -> FakeUpstream:
    pki = make_test_pki(work / "pki")
    ready = work / "fake-ready"
    command = [sys.executable, "-m", "tests.fakeupstream", "--port", "0"]
    command += ["--pki", str(pki.ca_cert.parent), "--ready-file", str(ready)]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
    )
    port = int(wait_for(lambda: ready.exists() and ready.read_text().strip(), 20, "the fake"))
    return FakeUpstream(port, pki, process)


def seconds(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def one_round(fake: FakeUpstream, work: Path, number: int, busy: bool) -> dict[str, Any]:
    home = work / f"round-{number}"
    internal = free_port()
    edge = start_edge(home, internal, fake)
    stack = Stack(Meter(home, internal, start_daemon(home, internal), home / "daemon.log"), edge)
    stop = home / "stop"
    try:
        options = ("--think", "0.04", "0.08", "--pool-per-worker") if busy else ()
        recovery = BUSY_RESUME if busy else RECOVERY
        clients = [
            python_client(stack, kind, "bench", stop, *options) for kind in ("anthropic", "openai")
        ]
        killed, back = outage(stack, clients, stop, after=recovery + 4.0)
        calls = {kind: c.finish() for kind, c in zip(("anthropic", "openai"), clients, strict=True)}
        seen = {
            kind: check_calls(stack, found, killed, back, recovery) for kind, found in calls.items()
        }
        rows = stack.rows_by_agent()
        truth = {
            "api.anthropic.com": len(unmetered_connections(calls["anthropic"], rows)),
            "api.openai.com": len(unmetered_connections(calls["openai"], rows)),
        }
        expected = sum(truth.values())
        wait_for(lambda: len(stack.spans()) >= expected, 20, "the spans")
        time.sleep(2.5)  # a later spool round would show any span too many
        spans = stack.spans()
        switches = edge.events("switch")
        metering = [e for e in switches if e["mode"] == "metering"]
        resumed = [seconds(s["closed_at"]) for s in spans if s["closed_by"] == "resumed"]
        return {
            "calls": sum(s["calls"] for s in seen.values()),
            "failed": 0,  # check_calls asserts it
            "retried_at_the_kill": sum(s["retried_at_the_kill"] for s in seen.values()),
            "retried_at_resume": sum(s["retried_at_resume"] for s in seen.values()),
            "tunnels_closed_to_resume": len(resumed),
            "daemon_down_s": round(back - killed, 3),
            "passthrough_gap_s": round(float(metering[-1]["ts"]) - killed, 3) if metering else None,
            "last_unmetered_call_after_back_s": max(
                (s["last_unmetered_after_back"] or 0.0 for s in seen.values()), default=0.0
            ),
            # `back` is measured once the daemon published daemon.json, a little after it
            # accepted its first connection; the edge's switch is when metering resumed.
            "last_tunnel_closed_after_back_s": round(max(resumed) - back, 3) if resumed else None,
            "last_tunnel_closed_after_switch_s": round(max(resumed) - float(metering[-1]["ts"]), 3)
            if resumed and metering
            else None,
            "calls_after_recovery_all_metered": True,  # check_calls asserts it
            "spans": {h: sum(1 for s in spans if s["host"] == h) for h in truth},
            "truth": truth,
        }
    finally:
        stop.touch()
        edge.stop()
        stack.daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--busy", action="store_true", help="40-80 ms think time")
    args = parser.parse_args()
    name = "pooled_resume_busy.json" if args.busy else "pooled_resume.json"
    args.out = args.out or ROOT / "bench" / "results" / name
    with tempfile.TemporaryDirectory(prefix="pooled-resume-") as folder:
        work = Path(folder)
        fake = start_fake(work)
        try:
            rounds = []
            for number in range(args.rounds):
                try:
                    result = one_round(fake, work, number, args.busy)
                except AssertionError as error:  # a round that missed a target: say which
                    result = {"missed": str(error)[:400]}
                    print(json.dumps(result))
                    rounds.append(result)
                    continue
                print(json.dumps(result))
                rounds.append(result)
        finally:
            fake.process.send_signal(signal.SIGTERM)
            fake.process.wait(10)
    missed = [r for r in rounds if "missed" in r]
    rounds = [r for r in rounds if "missed" not in r]
    total = {
        "rounds": len(rounds),
        "rounds_that_missed_a_target": len(missed),
        "recovery_s": BUSY_RESUME if args.busy else RECOVERY,
        "calls": sum(r["calls"] for r in rounds),
        "failed": sum(r["failed"] for r in rounds),
        "retried_at_the_kill": sum(r["retried_at_the_kill"] for r in rounds),
        "retried_at_resume": sum(r["retried_at_resume"] for r in rounds),
        "tunnels_closed_to_resume": sum(r["tunnels_closed_to_resume"] for r in rounds),
        "worst_last_tunnel_closed_after_switch_s": max(
            (r["last_tunnel_closed_after_switch_s"] or 0.0 for r in rounds), default=None
        ),
        "worst_last_unmetered_call_after_back_s": max(
            r["last_unmetered_call_after_back_s"] for r in rounds
        ),
        "spans_match_truth": all(r["spans"] == r["truth"] for r in rounds),
    }
    print(json.dumps(total, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"total": total, "rounds": rounds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
