"""Run the benchmarks in ``benchmarks/bench_*.py`` in one process and write a markdown report.

Every module ``benchmarks/bench_<name>.py`` that defines ``run(quick: bool = False) -> str`` (a markdown
section) is one benchmark, called ``<name>``. Usage::

    .venv/bin/python benchmarks/run.py --out docs/benchmarks.md            # all, full size
    .venv/bin/python benchmarks/run.py --only realnvp --out docs/benchmarks.md
    .venv/bin/python benchmarks/run.py --quick --out /tmp/bench.md         # smoke run

Each section is stored between ``<!-- bench:<name> -->`` markers. With ``--only``, the sections of the other
benchmarks already in the output file are kept, so benchmarks can be re-run one at a time.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ("torch", "numpy", "openmm", "normflows", "zuko")


def discover() -> dict[str, Path]:
    """Benchmark name -> module path, for every ``bench_*.py`` beside this file."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def load(path: Path) -> Callable[..., str]:
    """The ``run`` function of a benchmark module."""
    spec = importlib.util.spec_from_file_location(f"boltzflow_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise SystemExit(f"{path.name} has no run(quick=False) -> str; add one or rename the file")
    return module.run


def _cpu_model() -> str:
    from boltzflow.experiments.common import cpu_model

    return cpu_model()


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header(command: str, threads: int) -> str:
    """Date, machine, versions and command of this run, as markdown."""
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            "# Benchmarks",
            "",
            f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
            f"- machine: {_cpu_model()}, {os.cpu_count()} logical cores, {_ram_gib()} RAM",
            f"- OS: {platform.platform()}",
            f"- Python {platform.python_version()}; {versions}",
            f"- torch threads: {threads}; load average at start (1, 5, 15 min): {load}",
            f"- command: `{command}`",
            "",
            "The machine may be shared with other jobs while a benchmark runs: read the numbers as relative "
            "comparisons within one run (the models of a table are measured interleaved, so background load "
            "hits them alike), not as absolute speeds. Each section says when it was measured.",
            "",
        ]
    )


def _sections(text: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->\n", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(text)}


def main(argv: list[str] | None = None) -> int:
    names = discover()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown report to write"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small, fast smoke run (numbers not for quoting)"
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(names), help="run only this benchmark (repeatable)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")

    import torch

    from boltzflow.io import save_text

    torch.set_num_threads(args.threads)
    command = shlex.join([".venv/bin/python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    old = _sections(args.out.read_text()) if args.only and args.out.exists() else {}
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    new = {}
    for name in args.only or names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        body = load(names[name])(quick=args.quick).rstrip("\n")
        new[name] = f"{body}\n\n_measured {stamp} with `{command}`_\n\n"
    merged = {**old, **new}
    text = header(command, args.threads) + "".join(
        f"<!-- bench:{name} -->\n{merged[name]}<!-- /bench:{name} -->\n" for name in sorted(merged)
    )
    save_text(args.out, text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
