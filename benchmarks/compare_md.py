"""A/B check of the OpenMM simulation path: ``boltzflow simulate`` of another commit against the working tree.

The ``src`` tree of ``--base`` (a git ref) is extracted with ``git archive`` into a temporary folder; both trees
run the same short alanine-dipeptide simulation (OpenMM Reference platform, one thread) as separate processes,
taking turns repeat by repeat (ABBA order), so background load hits them alike. The clock is the child processes'
CPU time (user + system, from ``resource.getrusage``), which a shared machine disturbs far less than wall time;
it includes the start-up (imports, force-field build, context creation, equilibration), i.e. the shared setup
that issue 12 folded into one module. The report gives the median and best per tree and the ratio
current / base of the medians. Usage::

    .venv/bin/python benchmarks/compare_md.py --base 0efb00f --repeats 5 --out /tmp/compare-md.md
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extract(ref: str, into: Path) -> Path:
    """``src/`` of ``ref`` under ``into``; returns the folder to put on ``PYTHONPATH``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def child_cpu() -> float:
    """CPU seconds (user + system) of all waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def simulate_once(src: Path, out: Path, ns: float) -> float:
    """CPU seconds of one ``boltzflow simulate alanine-dipeptide`` run of the tree at ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "boltzflow.cli", "simulate", "alanine-dipeptide", "--ns", str(ns), "--out",
           str(out), "--platform", "Reference", "--equilibrate-ps", "2", "--no-progress", "--seed", "1"]
    before = child_cpu()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=out.parent)
    return child_cpu() - before


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="main", help="git ref to compare against (default: main)")
    p.add_argument("--repeats", type=int, default=5, help="runs per tree (default: 5)")
    p.add_argument("--ns", type=float, default=0.02, help="production length per run, ns (default: 0.02)")
    p.add_argument("--out", type=Path, required=True, help="markdown report to write")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.ns <= 0:
        p.error("--repeats must be >= 1 and --ns > 0")
    with tempfile.TemporaryDirectory(prefix="bf-compare-md-") as tmp:
        tmp = Path(tmp)
        (tmp / "base").mkdir()
        trees = {"base": extract(args.base, tmp / "base"), "current": ROOT / "src"}
        times: dict[str, list[float]] = {"base": [], "current": []}
        for i in range(args.repeats):
            order = ("base", "current") if i % 2 == 0 else ("current", "base")
            for name in order:
                out = tmp / f"run-{name}-{i}"
                times[name].append(simulate_once(trees[name], out, args.ns))
                print(f"repeat {i} {name}: {times[name][-1]:.2f} s CPU", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    report = (
        f"## OpenMM simulation path: `boltzflow simulate` at {args.base} vs the working tree\n\n"
        f"alanine-dipeptide, {args.ns:g} ns + 2 ps equilibration, Reference platform, {args.repeats} runs per tree "
        "in ABBA order; child-process CPU seconds, start-up included.\n\n"
        "| tree | median (s) | best (s) | runs |\n| --- | ---: | ---: | --- |\n"
        + "".join(f"| {k} | {med[k]:.2f} | {min(v):.2f} | {', '.join(f'{t:.2f}' for t in v)} |\n"
                  for k, v in times.items())
        + f"\nratio current / base of the medians: **{med['current'] / med['base']:.3f}**\n\n"
        f"command: `{' '.join(['.venv/bin/python', 'benchmarks/compare_md.py', *(argv or sys.argv[1:])])}`\n"
    )
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
