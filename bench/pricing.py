"""Pricing benchmark: time to price one ledger row (target: median <= 50 us).

    .venv/bin/python bench/pricing.py [--rounds 200] [--out bench/results/pricing.json]

Prices a mix of typical rows (Anthropic with cache reads and writes, OpenAI cached, Gemini,
a batch row, a flex row, a row under an override, an unknown model) in rounds; each sample is the
mean over one round of the mix, so timer resolution does not matter. Also reports the first call
for a model (lookup not yet cached). Prints each figure against its target and writes JSON.
Asserts nothing; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halton_meter.pricing import catalogue_version, parse_overrides, price_call
from halton_meter.pricing.catalogue import find_model
from halton_meter.providers.base import Usage

TARGET_US = 50.0
AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
OVERRIDES = parse_overrides(
    [
        {"name": "bench", "provider": "openai", "model": "gpt-4.1-mini*", "discount_pct": 15},
        {"provider": "mistral", "model": "ft:*", "input_mtok": 1, "output_mtok": 3},
    ],
    lambda index, key: None,
)

ROWS: list[dict[str, Any]] = [
    {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5-20250929",
        "usage": Usage(
            input_tokens=1200,
            cache_read_tokens=35_000,
            cache_write_tokens=4000,
            cache_write_1h_tokens=1000,
            output_tokens=800,
            reasoning_tokens=300,
        ),
    },
    {
        "provider": "openai",
        "model": "gpt-4.1-2025-04-14",
        "usage": Usage(input_tokens=2000, cache_read_tokens=6000, output_tokens=400),
        "service_tier": "default",
    },
    {
        "provider": "google",
        "model": "gemini-2.5-pro",
        "usage": Usage(input_tokens=150_000, cache_read_tokens=60_000, output_tokens=3000),
    },
    {
        "provider": "anthropic",
        "model": "claude-haiku-4-5",
        "usage": Usage(input_tokens=500, output_tokens=200),
        "batch": True,
    },
    {
        "provider": "openai",
        "model": "gpt-5",
        "usage": Usage(input_tokens=4000, cache_read_tokens=12_000, output_tokens=9000),
        "service_tier": "flex",
    },
    {
        "provider": "openai",
        "model": "gpt-4.1-mini",
        "usage": Usage(input_tokens=3000, output_tokens=100),
    },
    {
        "provider": "deepseek",
        "model": "deepseek-chat",
        "usage": Usage(input_tokens=3000, cache_read_tokens=7000, output_tokens=1200),
    },
    {
        "provider": "anthropic",
        "model": "claude-unknown-9",
        "usage": Usage(input_tokens=10, output_tokens=10),
    },
]


def price(row: dict[str, Any], overrides: Any) -> Any:
    return price_call(requested_at=AT, overrides=overrides, **row)


def measure(rounds: int) -> dict[str, Any]:
    for row in ROWS:  # warm the lookup cache, as in a running daemon
        price(row, OVERRIDES)
    samples: list[float] = []
    typical: list[float] = []
    first = ROWS[0]
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for row in ROWS:
            price(row, OVERRIDES)
        samples.append((time.perf_counter_ns() - start) / len(ROWS) / 1000)
        start = time.perf_counter_ns()
        for _ in range(20):
            price(first, ())
        typical.append((time.perf_counter_ns() - start) / 20 / 1000)
    cold: list[float] = []
    for _ in range(20):
        find_model.cache_clear()
        start = time.perf_counter_ns()
        price(first, ())
        cold.append((time.perf_counter_ns() - start) / 1000)
    return {
        "median_us_per_row_mix": statistics.median(samples),
        "p95_us_per_row_mix": statistics.quantiles(samples, n=20)[18],
        "median_us_typical_anthropic_cached_row": statistics.median(typical),
        "median_us_first_call_uncached_lookup": statistics.median(cold),
        "rows_in_mix": len(ROWS),
        "rounds": rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/pricing.json")
    args = parser.parse_args()
    figures = measure(args.rounds)
    median = figures["median_us_per_row_mix"]
    for name, value in figures.items():
        print(f"{name:42} {value:10.2f}" if isinstance(value, float) else f"{name:42} {value:>10}")
    verdict = "ok" if median <= TARGET_US else "MISSED"
    print(f"target: median <= {TARGET_US:.0f} us per row ... {verdict}")
    result = {
        **figures,
        "target_median_us": TARGET_US,
        "ok": median <= TARGET_US,
        "catalogue": catalogue_version(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
