"""Added cost of the budget check per call, with 100 budgets (issue 17; target ≤ 0.05 ms p50).

    .venv/bin/python bench/budgets.py [--out bench/results/budgets.json]

What the addon's request hook runs (`BudgetTracker.check`) and what the writer thread runs per
row (`BudgetTracker.add`), timed call by call on a tracker holding 100 budgets over distinct
project globs, seeded from an empty ledger. Three cases: nothing blocks (the usual: one
attribute read), 10 budgets block and the call is in none of their scopes, and the call is
refused. Calls rotate over 200 projects so the scope cache sees misses as well as hits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from halton_meter.budget_model import Budget, Scope
from halton_meter.budgets.tracker import BudgetTracker
from halton_meter.ledger.db import connect


def timed(function, rounds: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    samples = []
    for index in range(rounds):
        start = time.perf_counter_ns()
        function(index)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 5),
        "p99_ms": round(samples[int(len(samples) * 0.99)], 5),
        "calls": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/budgets.json"))
    parser.add_argument("--rounds", type=int, default=50_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp())
    connect(home / "db.sqlite").close()
    budgets = [
        Budget(f"b{i}", 10.0, "month", scope=Scope(project=(f"proj{i}-*",)), action="block")
        for i in range(100)
    ]
    tracker = BudgetTracker(budgets, home, home / "db.sqlite")
    assert tracker.seed()
    projects = [f"proj{i % 150}-x" for i in range(200)]
    body = b'{"model":"claude-sonnet-4-5","max_tokens":10}'

    def check(index: int) -> None:
        tracker.check("anthropic", projects[index % 200], "python3", "Anthropic/Python", body)

    results: dict[str, object] = {"budgets": len(budgets), "target_p50_ms": 0.05}
    results["nothing_blocks"] = timed(check, args.rounds)
    lives = tracker._lives
    for live in lives[:10]:
        live.spent = live.budget.limit_nanousd
    tracker._refresh()
    assert len(tracker.blocking) == 10

    def check_outside(index: int) -> None:
        tracker.check("anthropic", projects[(index % 100) + 100], "python3", "ua", body)

    results["ten_block_call_outside"] = timed(check_outside, args.rounds)

    def check_refused(index: int) -> None:
        assert tracker.check("anthropic", f"proj{index % 10}-x", "python3", "ua", body)

    results["refused"] = timed(check_refused, args.rounds)
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
