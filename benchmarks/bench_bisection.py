"""Multi-bin bisection: time of the root-found inverse of a smooth coupling layer against the bin count.

Setting of paper 004 §6.2 / notes §3.5 (``experiment_runtime``): one coupling layer on D dimensions, the first
half conditioning the second, conditioner MLP with 64 hidden units, batch 128, mixtures of K = 8 components
(:class:`~boltzflow.flows.smooth.SmoothInterval`). Per D and bin count (2, 4, ..., 256; 2 is plain bisection)
we time the layer's root-found direction (``inverse`` of a ``SmoothInterval`` coupling), without gradients
and with a backward pass (sum of outputs and log-dets, inverse-function-theorem gradients to every
parameter), at the float64 tolerance 1e-10 of the bracket. References: the same layer with an RQ spline (8
bins, analytic inverse) and the bin count :func:`~boltzflow.flows.bisection.choose_bins` picks.

CPU, float64, one torch thread; cells are the best over interleaved repeats of the process CPU time (other jobs
on a shared machine do not count), in ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from boltzflow.flows.bisection import choose_bins
from boltzflow.flows.conditioners import MLPConditioner
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.elementwise import Elementwise, RQSpline
from boltzflow.flows.smooth import SmoothInterval

BATCH, HIDDEN, COMPONENTS = 128, 64, 8
BINS = (2, 4, 8, 16, 32, 64, 128, 256)
MAX_GRID = 2**24  # grid values per round (roots x (K - 1) x components); larger cells are skipped (memory)


def layer(dim: int, elementwise: Elementwise) -> Coupling:
    """Coupling on D dims: the first half conditions the second, random non-trivial weights."""
    mask = torch.arange(dim) < dim // 2
    idx_a = torch.nonzero(mask).flatten()
    cond = MLPConditioner(idx_a[:0], idx_a, int((~mask).sum()), elementwise.param_sizes, [HIDDEN], "silu")
    out = Coupling(mask, cond, elementwise).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in out.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return out


def task(dim: int, bins: int | None, backward: bool, spline: bool = False) -> Callable[[], None]:
    """One call of the layer's inverse: root finding with ``bins`` (None: chosen by size), or the RQ spline's."""
    coupling = layer(dim, RQSpline(8, 1.0) if spline else SmoothInterval(COMPONENTS, bins=bins))
    x = torch.rand(BATCH, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def call() -> None:
        if backward:
            y, ld = coupling.inverse(x)
            (y.sum() + ld.sum()).backward()
        else:
            with torch.no_grad():
                coupling.inverse(x)

    return call


def best_times(fns: list[Callable[[], None]], repeats: int) -> list[float]:
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for r in range(repeats):
        for i in range(len(fns)) if r % 2 == 0 else reversed(range(len(fns))):
            t0 = time.process_time()
            fns[i]()
            best[i] = min(best[i], time.process_time() - t0)
    return best


def run(quick: bool = False) -> str:
    """Markdown table: ms per call of the root-found inverse against the bin count."""
    dims = (2, 32) if quick else (2, 8, 32, 128, 512)
    bins = BINS[:4] if quick else BINS
    repeats = 2 if quick else 3
    head = " | ".join(f"K={b}" for b in bins)
    lines = [
        "## Multi-bin bisection (smooth mixture inverse)",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"| D | pass | {head} | best K | choose_bins | RQ spline (analytic) |",
        "| ---: | --- |" + " ---: |" * (len(bins) + 3),
    ]
    for dim in dims:
        n_roots = BATCH * (dim - dim // 2)
        for backward in (False, True):
            fits = [n_roots * (b - 1) * COMPONENTS <= MAX_GRID for b in bins]
            fns = [task(dim, b, backward) for b, ok in zip(bins, fits, strict=True) if ok]
            times = best_times([*fns, task(dim, None, backward, spline=True)], repeats)
            smooth_times = iter(times[:-1])
            cells_t = [next(smooth_times) if ok else float("nan") for ok in fits]
            best_k = bins[min(range(len(bins)), key=lambda i: cells_t[i] if fits[i] else float("inf"))]
            cells = " | ".join(f"{1e3 * t:.1f}" if ok else "-" for t, ok in zip(cells_t, fits, strict=True))
            lines.append(
                f"| {dim} | {'fwd+bwd' if backward else 'fwd'} | {cells} | {best_k} | "
                f"{choose_bins(n_roots, COMPONENTS, 'cpu')} | {1e3 * times[-1]:.1f} |"
            )
    lines += [
        "",
        f"{repeats} interleaved repeats, best CPU time per call; batch {BATCH}; '-': more than {MAX_GRID:,} grid "
        "values per round, not run.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(run(quick=False))
