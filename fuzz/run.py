"""Run one fuzz target for a while: `python -m fuzz.run TARGET [--seconds N]`.

With Atheris installed (`pip install atheris`, the `fuzz` extra) this is coverage-guided
libFuzzer over the instrumented `halton_meter` package: it starts from the kept corpus
(fuzz/corpus/TARGET, in the repo), keeps what it finds in fuzz/work/TARGET (not in the repo;
`--merge` folds the new inputs that add coverage into the kept corpus) and writes a failing
input to fuzz/findings/. Without Atheris it runs Hypothesis on random bytes from the same
seeds, with its example database in fuzz/work/hypothesis, for the same time.

Exit status 0: no finding in the time given. Otherwise the failing input's file is named.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work"
FINDINGS = ROOT / "findings"


def _atheris(target: str, seconds: int, merge: bool, inner: bool, extra: list[str]) -> int:
    import atheris

    with atheris.instrument_imports(include=["halton_meter"]):
        from fuzz.targets import TARGETS
    corpus, work = ROOT / "corpus" / target, WORK / target
    work.mkdir(parents=True, exist_ok=True)
    FINDINGS.mkdir(exist_ok=True)
    # libFuzzer's merge runs the fuzzer again as a command: its argv[0], which must be
    # executable, so a small script that comes back here with the flags it is given.
    again = WORK / f"again-{target}.sh"
    again.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fuzz.run {target} --inner "$@"\n')
    again.chmod(0o755)
    if inner:  # a merge's child: exactly the flags libFuzzer gave
        args = [str(again), *extra]
    elif merge:  # keep only what adds coverage to the kept corpus
        args = [str(again), "-merge=1", str(corpus), str(work)]
    else:
        args = [
            sys.argv[0],
            str(work),
            str(corpus),
            f"-max_total_time={seconds}",
            "-timeout=20",  # one input taking longer is a finding (a hang, a slow regex)
            "-rss_limit_mb=2048",
            "-max_len=65536",
            f"-artifact_prefix={FINDINGS}/{target}-",
            "-print_final_stats=1",
            *extra,
        ]
    atheris.Setup(args, TARGETS[target])
    atheris.Fuzz()
    return 0


def _hypothesis(target: str, seconds: int) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.database import DirectoryBasedExampleDatabase

    from fuzz.seeds import seeds
    from fuzz.targets import TARGETS

    check = TARGETS[target]
    kept = seeds()[target]
    database = DirectoryBasedExampleDatabase(str(WORK / "hypothesis" / target))

    def mutated(seed: bytes, cut: int, insert: bytes) -> bytes:
        at = cut % (len(seed) + 1)
        return seed[:at] + insert + seed[at + len(insert) // 2 :]

    inputs = st.one_of(
        st.binary(max_size=4096),
        st.builds(mutated, st.sampled_from(kept), st.integers(0, 1 << 16), st.binary()),
    )

    @settings(
        max_examples=2000,
        deadline=None,
        database=database,
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs)
    def run(data: bytes) -> None:
        check(data)

    deadline, rounds = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        run()
        rounds += 1
    print(f"{target}: {rounds} rounds of 2000 inputs, no finding", file=sys.stderr)
    return 0


def main() -> None:
    from fuzz.targets import TARGETS  # the names only; Atheris re-imports instrumented

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=int, default=1800)
    parser.add_argument("--merge", action="store_true", help="fold work/ into the corpus")
    parser.add_argument("--hypothesis", action="store_true", help="even if Atheris is there")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    try:
        import atheris  # noqa: F401
    except ImportError:
        use_atheris = False
    else:
        use_atheris = not args.hypothesis
    if use_atheris:
        # Loaded uninstrumented above; drop them so the fuzzer sees instrumented code.
        for name in [n for n in sys.modules if n.startswith(("halton_meter", "fuzz.targets"))]:
            del sys.modules[name]
        sys.exit(_atheris(args.target, args.seconds, args.merge, args.inner, extra))
    sys.exit(_hypothesis(args.target, args.seconds))


if __name__ == "__main__":
    main()
