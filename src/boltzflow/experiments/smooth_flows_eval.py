"""Scores of the ``smooth-flows`` runs (Table 1 of paper 004): NLL, FME, KLD, ESS, failed runs, per cell.

* NLL: ``-mean log q`` of the test frames (nats; the density of the rigid-motion-free configuration);
* FME: eq. (4), ``mean ||f_data - ∇ log q||²`` over the test frames, (kT/nm)² (the paper's FME is on another
  scale, which its text does not define);
* KLD: ``mean(u + log q)`` over the first ``n_kld`` flow samples of the ESS draw (reverse KL up to log Z, nats;
  samples with a non-finite energy are left out and counted);
* ESS fraction: Kish ESS / n of ``n_ess`` flow samples with ``log w = -u - log q``.

A cell's entry is the mean and twice the standard error over its replicas that did not fail (paper 004 Table 1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.eval.weights import ess_fraction
from boltzflow.training.energy_fit import bg_samples
from boltzflow.training.force_matching import force_matching_error

METRICS = ("nll", "fme", "force_rmse", "kld", "ess_fraction")
ESS_BLOCKS = 5


def cell_name(kind: str, kl_weight: float, force_weight: float) -> str:
    """File-name friendly label of a grid cell, e.g. ``smooth-k0-f0.001``."""
    return f"{kind}-k{kl_weight:g}-f{force_weight:g}"


def score_run(flow: Any, system: Any, test: tuple[Tensor, Tensor], scoring: Any, seed: int,
              n_saved: int = 0) -> dict[str, Any]:
    """Test metrics of one trained flow (float64, eval mode).

    Args:
        flow: the flow on flattened positions (n, dim), nm.
        system: its system (``flat_energy``, ``event_shape``).
        test: test positions (m, dim) nm and exact forces (m, dim) kT/nm.
        scoring: :class:`~boltzflow.experiments.smooth_flows.Scoring`.
        seed: seed of the flow-sample draw.
        n_saved: samples returned under ``samples`` (xyz float32 nm, log_prob, u kT) for ``samples/``.

    Returns:
        the metrics, ``failed`` (a metric is not finite) and, with ``n_saved``, ``samples``.
    """
    x, f = (t.to(torch.float64) for t in test)
    with torch.no_grad():
        nll = -float(torch.cat([flow.log_prob(c) for c in x.split(scoring.chunk_size)]).mean())
    fm = force_matching_error(flow, x, f, scoring.chunk_size)
    try:
        draw = bg_samples(flow, system.flat_energy(), scoring.n_ess, torch.Generator().manual_seed(seed),
                          chunk_size=scoring.chunk_size)
    except (ValueError, BoltzflowError) as err:  # e.g. NaN samples of a diverged flow, refused by the energy
        return {"nll": nll, "fme": fm.fme, "force_rmse": fm.rmse, "failed": True, "error": " ".join(str(err).split())}
    kl_terms = -draw.log_w[: scoring.n_kld]
    finite = torch.isfinite(kl_terms)
    out: dict[str, Any] = {
        "nll": nll, "fme": fm.fme, "force_rmse": fm.rmse,
        "kld": float(kl_terms[finite].mean()) if finite.any() else math.nan,
        "kld_nonfinite": int((~finite).sum()), "ess_fraction": ess_fraction(draw.log_w), "n_ess": scoring.n_ess,
        # the same draw in ESS_BLOCKS disjoint blocks: how much one draw of n_ess/ESS_BLOCKS samples varies
        "ess_fraction_blocks": [ess_fraction(b) for b in draw.log_w.tensor_split(ESS_BLOCKS)],
    }
    out["failed"] = not all(math.isfinite(out[k]) for k in ("nll", "fme", "kld"))
    if n_saved:
        m = min(n_saved, len(draw.x))
        out["samples"] = {"xyz": draw.x[:m].unflatten(-1, tuple(system.event_shape)).float().numpy(),
                          "log_prob": draw.log_q[:m].numpy(), "u": draw.u[:m].numpy()}
    return out


def _mean_2se(values: list[float]) -> dict[str, float | None]:
    v = np.asarray([a for a in values if math.isfinite(a)], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "err2se": None}
    err = 2 * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else None
    return {"mean": float(v.mean()), "err2se": err}


def summarize(runs: list[dict[str, Any]], cells: list[tuple[str, float, float]]) -> dict[str, Any]:
    """Per cell: replicas, failed runs and mean ± 2 SE of every metric over the runs that did not fail."""
    table = {}
    for cell in cells:
        mine = [r for r in runs if (r["kind"], r["kl_weight"], r["force_weight"]) == cell]
        ok = [r for r in mine if not r["failed"]]
        table[cell_name(*cell)] = {
            "kind": cell[0], "kl_weight": cell[1], "force_weight": cell[2], "replicas": len(mine),
            "failed": len(mine) - len(ok), **{m: _mean_2se([r[m] for r in ok]) for m in METRICS},
        }
    return table


def table_markdown(table: dict[str, Any]) -> str:
    """The Table 1 layout: one row per metric and kind, one column per (ω_k, ω_f)."""
    cols = sorted({(c["kl_weight"], c["force_weight"]) for c in table.values()})
    kinds = sorted({c["kind"] for c in table.values()})
    head = "| metric | kind | " + " | ".join(f"ω_k={k:g}, ω_f={f:g}" for k, f in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for metric in (*METRICS, "failed"):
        for kind in kinds:
            cells = []
            for k, f in cols:
                c = table.get(cell_name(kind, k, f))
                cells.append("-" if c is None else _fmt(c[metric], c["replicas"]) if metric != "failed"
                             else f"{c['failed']}/{c['replicas']}")
            lines.append(f"| {metric} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(entry: dict[str, float | None], n: int) -> str:
    if entry["mean"] is None:
        return "n/a"
    err = "" if entry["err2se"] is None else f" ± {entry['err2se']:.3g}"
    return f"{entry['mean']:.4g}{err}"


__all__ = ["METRICS", "cell_name", "score_run", "summarize", "table_markdown"]
