"""Wall-clock cost of `halton-meter statusline` per prompt refresh (issue 19; target 50 ms).

    .venv/bin/python bench/statusline.py [--runs 200] [--out bench/results/statusline.json]

Claude Code starts the status-line command afresh for every refresh, so what counts is the
whole process: interpreter start-up, imports, one read-only look at the ledger, the line. This
starts each command as Claude Code does (a new process, its documented JSON on stdin) against a
temporary home holding a small ledger and a fresh quota cache, and times it from spawn to exit,
the way hyperfine does. The commands are run in turn, round after round, so a burst of
background load touches them all alike; `python -c pass` (the same interpreter, with its
site-packages) is the floor no Python command can beat, measured in the same run.

Each run's wall time (spawn to exit) and CPU time (user + system of the child, from wait4) are
kept: on a loaded machine the wall time mostly measures the wait for a core, while the CPU time
is what the command itself costs. `--baseline-src OTHER/src` adds the same console script run
with another checkout's code, for a before/after in one run.

It prints p50/p95 per command against the target and writes them as JSON. It asserts nothing.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_MS = 50.0


def _scripts_dir() -> Path:
    return Path(sys.executable).parent


def _home(busy: int) -> Path:
    """A meter home with the status line test's ledger, `busy` more calls made in the last ten
    minutes (half by this session, half by another process, both in its project: the rows
    the session query reads), and a fresh quota cache."""
    from dataclasses import replace

    from tests.test_ledger import sample_row
    from tests.test_statusline import _ledger

    from halton_meter.ledger.db import connect
    from halton_meter.ledger.row import INSERT_SQL, new_request_id, utc_iso_ms

    home = Path(tempfile.mkdtemp(prefix="hm-statusline-bench-")) / "home"
    _ledger(home)
    now = time.time()
    details = [
        json.dumps({"pid": pid, "process": name, "cwd": "/home/user/acme"})
        for pid, name in ((os.getpid(), "claude"), (1, "python3"))
    ]
    template = sample_row(project="acme", cost_nanousd=1_000_000, billing="api")
    rows = [
        replace(
            template,
            id=new_request_id(),
            requested_at=utc_iso_ms(now - 600 * index / max(busy, 1)),
            attribution_detail=details[index % 2],
        )
        for index in range(busy)
    ]
    con = connect(home / "db.sqlite")
    with con:
        con.executemany(INSERT_SQL, [row.values() for row in rows])
    con.close()
    quota = {"quota": {"provider": "anthropic", "account": "acct-1", "window": "unified-5h",
                       "utilisation": 0.62, "resets_at": None}}  # fmt: skip
    (home / "statusline-quota.json").write_text(json.dumps(quota), encoding="utf-8")
    return home


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _run(command: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, float, bytes]:
    """Wall time from spawn to exit, and the child's CPU time (user + system, from wait4):
    the CPU time hardly moves with other load on the machine, the wall time does."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.stdin.write(stdin)
    child.stdin.close()
    out, err = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = (time.perf_counter() - started) * 1000
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(f"{command}: exit {child.returncode}: {err.decode()}")
    return elapsed, (usage.ru_utime + usage.ru_stime) * 1000, out


def _compile_package(env: dict[str, str]) -> None:
    """Byte-compile the halton_meter the command will import, as pip does at install: without
    .pyc files every run would compile the modules it imports from source."""
    probe = "import halton_meter, os; print(os.path.dirname(halton_meter.__file__))"
    where = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    compileall.compile_dir(where, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--busy", type=int, default=2000, help="calls in the last 10 minutes (half this session)"
    )
    parser.add_argument(
        "--baseline-src",
        help="also time the line with PYTHONPATH=this src folder (e.g. another checkout's)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/statusline.json")
    args = parser.parse_args()
    from tests.test_statusline import CLAUDE_INPUT

    home = _home(args.busy)
    env = {**os.environ, "HALTON_METER_HOME": str(home)}
    env.pop("HALTON_PROJECT", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    stdin = json.dumps(CLAUDE_INPUT).encode()
    scripts = _scripts_dir()
    envs: dict[str, dict[str, str]] = {}
    commands: dict[str, list[str]] = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "halton-meter statusline": [str(scripts / "halton-meter"), "statusline"],
    }
    light = scripts / "halton-meter-statusline"
    if light.exists():
        commands["halton-meter-statusline"] = [str(light)]
    if args.baseline_src:
        commands["halton-meter statusline (baseline)"] = [
            str(scripts / "halton-meter"),
            "statusline",
        ]
        envs["halton-meter statusline (baseline)"] = {**env, "PYTHONPATH": args.baseline_src}
    for name in commands:
        _compile_package(envs.get(name, env))
    lines = {name: _run(command, stdin, envs.get(name, env))[2].decode().strip()
             for name, command in commands.items()}  # fmt: skip
    for _ in range(args.warmup):
        for command in commands.values():
            _run(command, stdin, env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    cpu_before = os.times()
    wall_before = time.monotonic()
    load_before = os.getloadavg()
    for _ in range(args.runs):
        for name, command in commands.items():
            wall, used, _ = _run(command, stdin, envs.get(name, env))
            samples[name].append(wall)
            cpu[name].append(used)
    load_after = os.getloadavg()
    results: dict[str, object] = {
        "target_ms": TARGET_MS,
        "runs": args.runs,
        "busy_rows": args.busy,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "wall_s": round(time.monotonic() - wall_before, 1),
        "children_cpu_s": round(os.times().children_user - cpu_before.children_user
                                + os.times().children_system - cpu_before.children_system, 2),
    }  # fmt: skip
    floor = statistics.median(samples["python -c pass (floor)"])
    cpu_floor = statistics.median(cpu["python -c pass (floor)"])
    print(f"{args.runs} runs each, load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    for name, times in samples.items():
        p50, p95 = statistics.median(times), _percentile(times, 0.95)
        cpu50, cpu95 = statistics.median(cpu[name]), _percentile(cpu[name], 0.95)
        verdict = "" if "floor" in name else ("  ok" if p95 <= TARGET_MS else "  MISSED")
        print(
            f"{name:37} wall p50 {p50:6.1f} p95 {p95:6.1f} min {min(times):6.1f} ms"
            f" (p50 - floor {p50 - floor:5.1f});"
            f" cpu p50 {cpu50:5.1f} p95 {cpu95:5.1f} ms (- floor {cpu50 - cpu_floor:5.1f})"
            f"{verdict}"
        )
        results[name] = {
            "p50_ms": round(p50, 2),
            "p95_ms": round(p95, 2),
            "min_ms": round(min(times), 2),
            "max_ms": round(max(times), 2),
            "p50_over_floor_ms": round(p50 - floor, 2),
            "cpu_p50_ms": round(cpu50, 2),
            "cpu_p95_ms": round(cpu95, 2),
            "cpu_p50_over_floor_ms": round(cpu50 - cpu_floor, 2),
            "line": lines[name],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(home.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
