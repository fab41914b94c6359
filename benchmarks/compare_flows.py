"""A/B speed check of the flows against another commit, in one process, interleaved.

The flows package of ``--base`` (a git ref, default ``main``) is extracted with ``git archive`` into a temporary
folder as the package ``boltzflow_base`` (imports rewritten), so the old and the current code run side by side
on identical weights (the current code loads the old state dicts). Per row, the two take turns repeat by
repeat (order alternating), so background load hits them alike; the table gives the best (min) and the
median over the repeats, and the ratio current / base of the best times. By default the clock is the
process's CPU time (with one torch thread, time other jobs take from us does not count; on a machine with
more jobs than cores wall time varies by tens of percent between repeats).

Rows: the RealNVP models of ``bench_realnvp.py`` (paper 001 §6.1 and §6.3, masked and split layouts, ReLU,
soft clamp 5), the torus flow of the alanine-dihedrals model and the IC spline flow of the shipped alanine
dipeptide BG; per model the NLL step (data -> latent with log-det, mean NLL, backward, Adam step, batch 256)
and sampling with log q (``no_grad``, batch 4096 and 256). float32, CPU. Usage::

    .venv/bin/python benchmarks/compare_flows.py --base main --repeats 7 --out /tmp/compare.md
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def extract_base(ref: str, into: Path) -> None:
    """``src/boltzflow`` of ``ref`` as the package ``boltzflow_base`` under ``into``."""
    blob = subprocess.run(["git", "archive", ref, "src/boltzflow"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = Path(member.name).relative_to("src/boltzflow")
            target = into / "boltzflow_base" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member).read()
            if rel.suffix == ".py":
                data = re.sub(rb"\bboltzflow\.", b"boltzflow_base.", data)
            target.write_bytes(data)


def realnvp_pair(base, new, dim: int, layers: int, hidden: int, masked: bool):
    cfg = dict(
        dim=dim, n_layers=layers, hidden=[hidden, hidden], masked_input=masked, activation="relu", scale_clamp=5.0
    )
    old = base.realnvp.realnvp(base.realnvp.RealNVPConfig(**cfg))
    cur = new.realnvp.realnvp(new.realnvp.RealNVPConfig(**cfg))
    return old, cur


def spec_pair(base, new, spec: dict):
    return base.spec.build_flow(spec), new.spec.build_flow(spec)


def flow_modules(package: str) -> SimpleNamespace:
    """The ``realnvp`` and ``spec`` modules of ``package.flows``."""
    return SimpleNamespace(**{m: importlib.import_module(f"{package}.flows.{m}") for m in ("realnvp", "spec")})


def _shipped_spec() -> dict | None:
    """Flow spec of the shipped alanine-dipeptide BG (read from its safetensors JSON header; no pickle), or None
    when the package being measured ships none."""
    from boltzflow.training.checkpoint import read_checkpoint, shipped_models

    path = shipped_models().get("alanine-dipeptide-bg")
    return None if path is None else read_checkpoint(path)["flow_spec"]


def models(base, new) -> list[tuple[str, object, object, Callable[[int], torch.Tensor]]]:
    """(label, base flow, current flow with the same weights, data sampler) per row."""
    torch.manual_seed(0)
    rows = [
        ("RealNVP §6.1 masked (D=4, 8 x 256)", *realnvp_pair(base, new, 4, 8, 256, True)),
        ("RealNVP §6.1 split (D=4, 8 x 181)", *realnvp_pair(base, new, 4, 8, 181, False)),
        ("RealNVP §6.3 masked (D=66, 12 x 512)", *realnvp_pair(base, new, 66, 12, 512, True)),
        ("RealNVP §6.3 split (D=66, 12 x 364)", *realnvp_pair(base, new, 66, 12, 364, False)),
        (
            "torus flow (D=2, 6 layers, 8 bins, 64 x 64)",
            *spec_pair(
                base,
                new,
                {"kind": "circular_spline", "config": {"dim": 2, "n_layers": 6, "bins": 8, "hidden": [64, 64]}},
            ),
        ),
    ]
    spec = _shipped_spec()
    if spec is not None:
        rows.append(("IC spline flow (alanine, 4 blocks, 8 bins, 128 x 128)", *spec_pair(base, new, spec)))
    out = []
    for label, old, cur in rows:
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in old.parameters():
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
        cur.load_state_dict(old.state_dict())
        old, cur = old.float(), cur.float()
        with torch.no_grad():
            data = old.sample(4096, torch.Generator().manual_seed(2)).x
        out.append((label, old, cur, data))
    return out


def interleaved(
    tasks: list[Callable[[], None]], repeats: int, inner: int, clock: Callable[[], float] = time.process_time
) -> list[list[float]]:
    """Seconds per call of each task in every repeat; the tasks take turns, in alternating order."""
    for task in tasks:
        task()
        task()
    times: list[list[float]] = [[] for _ in tasks]
    for r in range(repeats):
        for i in range(len(tasks)) if r % 2 == 0 else reversed(range(len(tasks))):
            t0 = clock()
            for _ in range(inner):
                tasks[i]()
            times[i].append((clock() - t0) / inner)
    return times


def nll_task(flow, x: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(flow.parameters(), lr=1e-6)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (-flow.log_prob(x).mean()).backward()
        opt.step()

    return step


def sample_task(flow, n: int) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(3)

    def draw() -> None:
        with torch.no_grad():
            flow.sample(n, gen)

    return draw


def check_same(old, cur, data: torch.Tensor) -> float:
    with torch.no_grad():
        return float((old.log_prob(data[:256]) - cur.log_prob(data[:256])).abs().max())


def measure(label: str, old, cur, data: torch.Tensor, args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Table rows ``(markdown, ratio, key)`` of one model: NLL step and sampling, old and current interleaved."""
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    tasks = [("NLL step, batch 256", nll_task(old, data[:256]), nll_task(cur, data[:256]), 3)]
    tasks += [
        (f"sample + log q, batch {n}", sample_task(old, n), sample_task(cur, n), 1 if n > 1024 else 4)
        for n in (4096, 256)
    ]
    rows = []
    for what, t_old, t_cur, inner in tasks:
        if args.measure and not re.search(args.measure, what):
            continue
        times = interleaved([t_old, t_cur], args.repeats, inner, clock)
        b, c = min(times[0]), min(times[1])
        row = (
            f"| {label} | {what} | {1e3 * b:.2f} ({1e3 * statistics.median(times[0]):.2f}) | "
            f"{1e3 * c:.2f} ({1e3 * statistics.median(times[1]):.2f}) | {c / b:.3f} |"
        )
        print(row, file=sys.stderr, flush=True)
        rows.append((row, c / b, f"{label} / {what}"))
    return rows


def _short(ref: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git ref of the old code (default main)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="regex on the row labels")
    parser.add_argument("--measure", default="", help="regex on the measures (NLL step, sample + log q, ...)")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: process CPU time (default; robust to other jobs on a shared machine with --threads 1); wall",
    )
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = [
        f"A/B: base `{args.base}` ({_short(args.base)}) vs current ({_short('HEAD')}, working tree), float32, "
        f"{args.threads} thread(s), {args.repeats} interleaved repeats, {args.clock} time; best (median) in ms; "
        f"ratio = current best / base best. Load average at start: {os.getloadavg()[0]:.1f}.",
        "",
        "| model | measure | base ms | current ms | ratio |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        extract_base(args.base, Path(tmp))
        sys.path.insert(0, tmp)
        for label, old, cur, data in models(flow_modules("boltzflow_base"), flow_modules("boltzflow")):
            if args.only and not re.search(args.only, label):
                continue
            same = check_same(old, cur, data)  # before the NLL steps move the two copies apart by rounding
            for row, ratio, key in measure(label, old, cur, data, args):
                lines.append(row)
                summary[key] = ratio
            lines.append(f"| {label} | max abs log q difference at equal weights, 256 points | | | {same:.1e} |")
    lines += ["", f"Load average at the end: {os.getloadavg()[0]:.1f}.", ""]
    text = "\n".join(lines)
    print(text)
    print(json.dumps(summary, indent=1), file=sys.stderr)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
