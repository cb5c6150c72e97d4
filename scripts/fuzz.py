"""Long fuzz run: ``python scripts/fuzz.py --cases 5000 --seed 7`` prints, per family, cases and outcomes.

Outcomes: exit 0 with a valid answer, exit 2 with one line, and the failures - tracebacks, hangs, crashes
(killed or out of memory) and silent wrong answers (exit 0 with a non-finite or malformed answer, an error of
more than one line, or a changed store of trained models). Exit code 1 when any case failed; each failure is
listed with its family and seed (rerun one with ``--family F --seed S --cases 1``). A run of N cases over F
families runs the case seeds S .. S + N/F - 1 of each family, so runs at nearby seeds mostly repeat each other:
for new cases, start past the last run's range (e.g. ``--seed 100000``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzz.cases import FAMILIES
from tests.fuzz.runner import run_many


def main() -> int:
    """Run the cases and print the table of outcomes; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", choices=FAMILIES, action="append")
    parser.add_argument("--timeout-s", type=float, default=20.0, help="per case")
    args = parser.parse_args()
    families = tuple(args.family or FAMILIES)
    start = time.monotonic()
    counts, failures = run_many(
        args.cases,
        args.seed,
        families,
        progress=lambda n, counts, failures: print(
            f"{n} cases, {time.monotonic() - start:.0f} s: "
            + ", ".join(f"{f} {dict(c)}" for f, c in counts.items())
            + f"; failures: {failures[-3:]}",
            file=sys.stderr,
            flush=True,
        ),
        timeout_s=args.timeout_s,
    )
    print(
        f"{'family':<12}{'cases':>7}{'exit 0':>8}{'exit 2':>8}{'traceback':>11}{'hang':>6}{'crash':>7}{'wrong':>7}"
    )
    for family, c in counts.items():
        print(
            f"{family:<12}{sum(c.values()):>7}{c['ok0']:>8}{c['ok2']:>8}{c['traceback']:>11}{c['hang']:>6}"
            f"{c['crash']:>7}{c['wrong']:>7}"
        )
    print(f"{args.cases} cases in {time.monotonic() - start:.0f} s, {len(failures)} failures")
    for family, seed, outcome, detail in failures[:50]:
        print(f"  {outcome:<9} --family {family} --seed {seed}: {detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
