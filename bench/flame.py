"""Where the daemon's CPU goes under the bench's loads: py-spy stacks, top frames, flame graph.

    PYTHONPATH=src .venv/bin/python bench/flame.py [--load closed|streams|both] [--seconds 10]
        [--edge] [--tag NAME]

Starts the fake provider and a real daemon (and with `--edge` the real edge in front of it, as
installed), drives the load from this process with run.py's client, and samples the daemon with
`py-spy record --format raw --threads --function` (aggregated per function). Writes, per load,
`bench/results/flame-<tag>-<load>.svg` (a flame graph drawn here from the raw stacks, so one
sampling window gives both) and `flame-<tag>-<load>.json` (the top frames by self and by
cumulative share of non-idle samples, shares per thread). The proportions mean something on a
busy machine; absolute rates do not.

Loads:
- closed: scenario 4 of run.py, 16 clients in a closed loop of small chat calls;
- streams: scenario 3's burst pattern (16 SSE streams of 40 events 25 ms apart, started within
  25 ms), round after round.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import html
import json
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as core  # noqa: E402

# Leaves of threads parked on a lock or a timed wait (the writer between batches, the
# once-a-minute loops, the alert thread in SimpleQueue.get), which py-spy reports as active for
# part of the time; and `Runner.run` as a leaf, which is a loop running in C (uvicorn's API
# thread picks uvloop when it is installed) whose epoll wait py-spy cannot tell from work.
IDLE_FUNCTIONS = frozenset(
    {
        "Condition.wait (threading.py)",
        "Event.wait (threading.py)",
        "AlertDispatcher._run (alerts.py)",
        "Runner.run (runners.py)",
    }
)


def parse_raw(text: str) -> list[tuple[str, list[str], int]]:
    """(thread, frames root first, count) per stack, idle waits dropped."""
    stacks = []
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        thread = (
            frames.pop(0).split(": ", 1)[-1] if frames and frames[0].startswith("thread ") else "?"
        )
        if not frames or frames[-1].startswith(core.IDLE_LEAVES):
            continue
        names = [core._function(f) for f in frames]
        if names[-1] in IDLE_FUNCTIONS:
            continue
        stacks.append((thread, names, int(count_text)))
    return stacks


def top_frames(stacks: list[tuple[str, list[str], int]], top: int = 25) -> dict[str, Any]:
    total = sum(n for _, _, n in stacks) or 1
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for thread, frames, n in stacks:
        threads[thread] += n
        own[frames[-1]] += n
        for name in set(frames):
            cumulative[name] += n

    def shares(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(limit)]

    by_thread: dict[str, Counter[str]] = defaultdict(Counter)
    for thread, frames, n in stacks:
        by_thread[thread][frames[-1]] += n
    return {
        "samples": total,
        "threads_pct": shares(threads, 10),
        "self_pct_by_thread": {
            thread: shares(by_thread[thread], 8) for thread, _ in threads.most_common(4)
        },
        "self_pct": shares(own, top),
        "cumulative_pct": shares(cumulative, top + 15),
    }


def flame_svg(stacks: list[tuple[str, list[str], int]], title: str, width: int = 1600) -> str:
    """A plain flame graph (root at the bottom), one rect per merged frame; hover for names."""
    tree: dict[str, Any] = {"n": 0, "kids": defaultdict(lambda: None)}

    def node() -> dict[str, Any]:
        return {"n": 0, "kids": {}}

    tree = node()
    for thread, frames, n in stacks:
        here = tree
        here["n"] += n
        for name in [f"thread {thread}", *frames]:
            here = here["kids"].setdefault(name, node())
            here["n"] += n
    depth_max = 0

    def depth(t: dict[str, Any], d: int) -> None:
        nonlocal depth_max
        depth_max = max(depth_max, d)
        for kid in t["kids"].values():
            depth(kid, d + 1)

    depth(tree, 0)
    row = 16
    height = (depth_max + 3) * row
    scale = width / max(tree["n"], 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="4" y="13">{html.escape(title)} ({tree["n"]} samples)</text>',
    ]

    def draw(t: dict[str, Any], name: str, x: float, d: int) -> None:
        w = t["n"] * scale
        if w < 0.5:
            return
        y = height - (d + 1) * row
        share = 100 * t["n"] / max(tree["n"], 1)
        hue = (hash(name.rsplit("(", 1)[-1]) % 60) + 0
        label = html.escape(name)
        parts.append(
            f'<g><title>{label} {share:.1f}%</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
            f'height="{row - 1}" fill="hsl({hue},80%,60%)"/>'
            + (
                f'<text x="{x + 2:.1f}" y="{y + 11}">{html.escape(name[: int(w / 7)])}</text>'
                if w > 30
                else ""
            )
            + "</g>"
        )
        cx = x
        for kid_name, kid in sorted(t["kids"].items()):
            draw(kid, kid_name, cx, d + 1)
            cx += kid["n"] * scale

    cx = 0.0
    for kid_name, kid in sorted(tree["kids"].items()):
        draw(kid, kid_name, cx, 0)
        cx += kid["n"] * scale
    parts.append("</svg>")
    return "\n".join(parts)


async def closed_load(meter: core.Target, seconds: float) -> dict[str, Any]:
    count, elapsed = await core.closed_loop(meter, core.CLOSED_CLIENTS, seconds=seconds)
    return {"requests": count, "rps": round(count / elapsed, 1)}


async def stream_load(direct: core.Target, meter: core.Target, seconds: float) -> dict[str, Any]:
    control = await direct.connect()
    stats = core.StreamStats()
    began, rounds = time.monotonic(), 0
    while time.monotonic() - began < seconds:
        await core._stream_round(meter, control, direct, stats, rounds, core.STREAM_STARTS["burst"])
        rounds += 1
    control.close()
    return {
        "rounds": rounds,
        "ttfb_p50_ms": core.ms(core.pct(stats.ttfb, 50)),
        "without_done": stats.without_done,
    }


async def sample(pid: int, seconds: float, raw: Path, load: Any) -> tuple[dict[str, Any], str]:
    spy = await asyncio.create_subprocess_exec(
        str(core.VENV_BIN / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--format",
        "raw",
        "--threads",
        "--function",
        "--output",
        str(raw),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(0.5)
    figures = await load
    _, err = await spy.communicate()
    if spy.returncode != 0:
        raise RuntimeError(err.decode(errors="replace"))
    return figures, raw.read_text()


def write_summary(stem: Path, text: str, load: str, tag: str, figures: dict[str, Any]) -> None:
    """The flame graph and the top frames of one load's raw stacks, next to them."""
    stacks = parse_raw(text)
    summary = {"load": load, "tag": tag, **figures, **top_frames(stacks)}
    stem.with_suffix(".svg").write_text(flame_svg(stacks, f"daemon, {load} load, {tag}"))
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n== {load}: {figures}")
    for key in ("threads_pct", "self_pct", "cumulative_pct"):
        print(f"  {key}:")
        for name, share in summary[key]:
            print(f"    {share:5.1f}%  {name}")


async def main_async(args: argparse.Namespace, procs: core.Processes, port: int) -> None:
    direct = core.Target(
        "direct", ("127.0.0.1", procs.fake_port), False, core.client_context(procs.pki / "ca.pem")
    )
    meter = core.Target(
        "meter", ("127.0.0.1", port), True, core.client_context(procs.home / "ca-bundle.pem")
    )
    await core.closed_loop(meter, core.CLOSED_CLIENTS, seconds=2.0)  # warm-up
    loads = ["closed", "streams"] if args.load == "both" else [args.load]
    for load in loads:
        raw = Path(tempfile.mkstemp(suffix=".txt")[1])
        coro = (
            closed_load(meter, args.seconds)
            if load == "closed"
            else stream_load(direct, meter, args.seconds)
        )
        figures, text = await sample(procs.meter_pid(), args.seconds, raw, coro)
        raw.unlink()
        stem = BENCH / "results" / f"flame-{args.tag}-{load}"
        stem.with_suffix(".txt.gz").write_bytes(gzip.compress(text.encode(), 9))
        write_summary(stem, text, load, args.tag, figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", choices=("closed", "streams", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--edge", action="store_true", help="the edge in front of the daemon")
    parser.add_argument("--tag", default="now")
    parser.add_argument(
        "--from-raw", action="store_true", help="redraw from the saved flame-TAG-*.txt.gz only"
    )
    args = parser.parse_args()
    if args.from_raw:
        for raw in sorted((BENCH / "results").glob(f"flame-{args.tag}-*.txt.gz")):
            stem = raw.with_name(raw.name.removesuffix(".txt.gz"))
            old = json.loads(stem.with_suffix(".json").read_text())
            figures = {
                k: v
                for k, v in old.items()
                if k in ("requests", "rps", "rounds", "ttfb_p50_ms", "without_done")
            }
            text = gzip.decompress(raw.read_bytes()).decode()
            write_summary(stem, text, old["load"], args.tag, figures)
        return
    work = Path(tempfile.mkdtemp(prefix="halton-flame-"))
    procs = core.Processes(work, edge=args.edge)
    try:
        procs.start_fake()
        procs.start_meter()
        asyncio.run(main_async(args, procs, procs.meter_port))
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
