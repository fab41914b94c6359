"""Evaluation of one trained curve model of the ``fisher-rao`` recipe (issue 16, item 4).

* ``n_weights`` samples by the CNF with the exact divergence: log q, importance weights, ESS, log Z (and the
  second log Z estimate from the integral of the learned C(t));
* ``n_eval`` samples in all (the rest transported as positions only, which is much cheaper in 8-D): the energy
  distance against a fixed exact reference sample, beside its floor (the same statistic for a second exact sample
  of the same size, computed once per target and size and cached), and mode coverage;
* the reweighted energy distance of the ``n_weights`` weighted samples (self-normalised importance weights) to the
  same reference, beside its own floor: the statistic for ``n_weights`` exact samples, mean ± sd over
  ``FLOOR_DRAWS`` independent draws (one draw's sd is about its mean), cached like the raw floor; and the floor at
  the ESS, the statistic for round(ESS) exact samples (what a perfect weighted sample of this ESS would score);
* ``n_speed`` samples kept along the path: the speed ``sqrt(mean |v_t|^2)`` of the learned velocity (an upper
  bound of the W2 metric speed of the transported density, equal to it for a gradient field);
* a mixture target with the gradient-flow curve: the relative L2(rho_t) error of the learned field against the
  exact OU field on exact samples of rho_t.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torchdiffeq import odeint

from boltzflow.eval.energy_distance import weighted_pair_sum
from boltzflow.eval.sample_metrics import mean_pairwise_distance, mode_coverage
from boltzflow.eval.teleport import sampled_metric_speed
from boltzflow.eval.weights import ess as ess_count
from boltzflow.eval.weights import ess_fraction, log_partition_estimate
from boltzflow.experiments.fisher_rao_targets import CurveTarget
from boltzflow.flows.cnf import IsotropicNormal
from boltzflow.training.fisher_rao import FisherRaoModel
from boltzflow.training.fisher_rao_fit import log_z_from_rate, sample_curve
from boltzflow.training.fisher_rao_gmm import ExactOUPath

FIELD_TIMES = (0.1, 0.25, 0.5, 0.75, 1.0)
FLOOR_DRAWS = 8


class CurveEvaluation(NamedTuple):
    """The metrics of one model (JSON-ready), its samples (n_eval, d) and the log weights of the first n_weights."""

    metrics: dict[str, Any]
    x: Tensor
    log_w: Tensor


def reference(target: CurveTarget, n: int, cache: Path, seed: int) -> tuple[Tensor, dict[str, float]]:
    """The fixed exact reference sample of size n (seed ``seed``) and its floor statistics (cached in ``cache``).

    ``aa`` is ``mean |a_i - a_j|`` of the reference; ``floor`` the energy distance of a second exact sample
    (seed ``seed + 1``) to it.
    """
    ref_a = target.sample(n, torch.Generator().manual_seed(seed))
    path = cache / f"floor-{target.name}-{n}-{seed}.json"
    if path.exists():
        with open(path) as f:
            return ref_a, json.load(f)
    ref_b = target.sample(n, torch.Generator().manual_seed(seed + 1))
    aa = mean_pairwise_distance(ref_a, ref_a)
    floor = 2 * mean_pairwise_distance(ref_b, ref_a) - mean_pairwise_distance(ref_b, ref_b) - aa
    stats = {"aa": aa, "floor": floor, "n": n}
    path.write_text(json.dumps(stats))
    return ref_a, stats


def weighted_floor(target: CurveTarget, n: int, ref_a: Tensor, aa: float, cache: Path, seed: int) -> dict[str, Any]:
    """Energy distance of ``n`` exact samples to ``ref_a``, mean and sd over FLOOR_DRAWS draws (cached).

    The draws use seeds ``seed + 1000 + k``, apart from the reference pair (``seed``, ``seed + 1``).
    """
    path = cache / f"floor-weighted-{target.name}-{n}-vs-{len(ref_a)}-{seed}.json"
    if path.exists():
        with open(path) as f:
            return json.load(f)
    values = []
    for k in range(FLOOR_DRAWS):
        e = target.sample(n, torch.Generator().manual_seed(seed + 1000 + k))
        values.append(2 * mean_pairwise_distance(e, ref_a) - mean_pairwise_distance(e, e) - aa)
    stats = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)), "draws": FLOOR_DRAWS, "n": n}
    path.write_text(json.dumps(stats))
    return stats


def reweighted_distance(x: Tensor, log_w: Tensor, ref_a: Tensor, aa: float) -> float:
    """``2 Σ w_i |x_i - a_j| / m - Σ w_i w_k |x_i - x_k| - aa`` with self-normalised weights (non-finite: 0)."""
    keep = torch.isfinite(log_w) & torch.isfinite(x).all(-1)
    if not keep.any():
        return math.inf
    x, w = x[keep], torch.softmax(log_w[keep].double(), 0)
    uniform = ref_a.new_full((len(ref_a),), 1.0 / len(ref_a))
    return 2 * weighted_pair_sum(x, ref_a, w, uniform) - weighted_pair_sum(x, None, w) - aa


def positions(model: FisherRaoModel, z: Tensor, steps: int, chunk: int = 10_000) -> Tensor:
    """x(1) from x(0) = z (n, d) by fixed-step RK4 on the model's velocity, without the log-density."""
    if z.shape[0] == 0:
        return z
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=z.dtype)
    ends = [odeint(lambda t, x: model.velocity(t, x).detach(), c, grid, method="rk4")[-1] for c in z.split(chunk)]
    return torch.cat(ends)


def field_error(model: FisherRaoModel, exact: ExactOUPath, n: int, seed: int) -> dict[str, float]:
    """Relative squared L2(rho_t) error of the model's field against the exact OU field, per time of FIELD_TIMES."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in FIELD_TIMES:
        noise = torch.randn(n, exact.target.dim, generator=g, dtype=torch.float64)
        x = t * exact.target.sample(n, g) + float(np.sqrt(1 - t**2)) * exact.base_scale * noise
        v, ref = model.velocity(t, x).detach(), exact.velocity(t, x)
        out[str(t)] = float((v - ref).pow(2).sum(-1).mean() / ref.pow(2).sum(-1).mean())
    return out


def exact_ou_speed(target: CurveTarget, times: Tensor, n: int, seed: int, base_scale: float = 1.0) -> list[float]:
    """``sqrt(E |v_t|^2)`` of the exact OU field of a mixture target on exact samples of rho_t, per time."""
    path = ExactOUPath(target.mixture, base_scale)
    g = torch.Generator().manual_seed(seed)
    speed = []
    for t in times.tolist():
        noise = torch.randn(n, target.dim, generator=g, dtype=torch.float64)
        x = t * target.mixture.sample(n, g) + float(np.sqrt(1 - t**2)) * base_scale * noise
        speed.append(float(path.velocity(t, x).pow(2).sum(-1).mean().sqrt()))
    return speed


def evaluate_curve(model: FisherRaoModel, target: CurveTarget, ev: Any, generator: torch.Generator,
                   cache: Path, reference_seed: int) -> CurveEvaluation:
    """All metrics of one trained model; ``ev`` is the recipe's evaluation table (sizes, ODE steps)."""
    weighted = sample_curve(model, target.energy, target.dim, ev.n_weights, generator, steps=ev.ode_steps)
    base = IsotropicNormal(target.dim, model.curve.base_scale)
    rest = positions(model, base.sample(ev.n_eval - ev.n_weights, generator), ev.ode_steps)
    x = torch.cat([weighted.x, rest])
    finite = torch.isfinite(x).all(-1)
    ref_a, floor = reference(target, ev.n_eval, cache, reference_seed)
    xf = x[finite]
    ed = math.inf  # no finite sample at all: the field blew up
    if xf.shape[0]:
        ed = 2 * mean_pairwise_distance(xf, ref_a) - mean_pairwise_distance(xf, xf) - floor["aa"]
    cov = mode_coverage(target.labels(xf), target.mode_probs)
    rw_floor = weighted_floor(target, ev.n_weights, ref_a, floor["aa"], cache, reference_seed)
    ess = float(ess_count(weighted.log_w)) if torch.isfinite(weighted.log_w).any() else 0.0
    m_eff = max(2, round(ess))
    exact_eff = target.sample(m_eff, torch.Generator().manual_seed(reference_seed + 999))
    floor_at_ess = 2 * mean_pairwise_distance(exact_eff, ref_a) - mean_pairwise_distance(exact_eff, exact_eff) - \
        floor["aa"]
    n_finite_w = int(torch.isfinite(weighted.log_w).sum())
    lz = log_partition_estimate(weighted.log_w) if n_finite_w else None  # None: every weighted sample blew up
    log_z_rate = log_z_from_rate(model, target.dim)
    times = torch.linspace(0.0, 1.0, ev.speed_times, dtype=torch.float64).tolist()
    along = sample_curve(model, target.energy, target.dim, ev.n_speed, generator, steps=ev.ode_steps, times=times)
    speed = sampled_metric_speed(model.velocity, along.times, along.path)
    metrics: dict[str, Any] = {
        "n_eval": ev.n_eval, "n_weights": ev.n_weights, "n_nonfinite": int((~finite).sum()),
        "energy_distance": ed, "energy_distance_floor": floor["floor"],
        "energy_distance_reweighted": reweighted_distance(weighted.x, weighted.log_w, ref_a, floor["aa"]),
        "energy_distance_reweighted_floor": rw_floor["mean"], "energy_distance_reweighted_floor_sd": rw_floor["sd"],
        "energy_distance_reweighted_floor_at_ess": floor_at_ess,
        "ess_fraction": ess_fraction(weighted.log_w) if n_finite_w else 0.0,
        "log_z_is": lz and lz.log_z, "log_z_is_error": lz and lz.log_z - target.log_z,
        "log_z_is_stderr": lz and lz.stderr,
        "log_z_rate": log_z_rate, "log_z_rate_error": log_z_rate - target.log_z,
        "modes_covered": cov.covered if xf.shape[0] else 0, "n_modes": cov.n_modes, "mode_counts": cov.counts.tolist(),
        "speed_times": along.times.tolist(), "speed": speed.tolist(),
    }
    if target.mixture is not None and model.interpolation == "gradient_flow":
        exact = ExactOUPath(target.mixture, model.curve.base_scale)
        metrics["field_error_vs_exact_ou"] = field_error(model, exact, ev.n_speed, reference_seed + 2)
    return CurveEvaluation(metrics, x, weighted.log_w)
