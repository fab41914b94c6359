"""Evaluation of one trained curve model (used by run.py).

* ``n_weights`` samples by the CNF with the exact divergence: log q, importance weights, ESS, log Z;
* ``n_eval`` samples in all (the rest transported as positions only, which is much cheaper in 8-D): energy
  distance against a fixed exact reference sample (its floor, the same statistic for a second exact sample,
  is computed once per target and size and cached in ``runs/``), mode coverage;
* ``n_speed`` samples kept along the path: the speed ``sqrt(mean |v_t|^2)`` of the learned velocity;
* GMM-40 with the gradient-flow curve: the relative L2 error of the learned field against the exact OU field on
  exact samples of rho_t (the OU curve of a Gaussian mixture is known in closed form).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from targets import Target
from torchdiffeq import odeint

from boltzflow.eval.sample_metrics import mean_pairwise_distance, mode_coverage
from boltzflow.eval.teleport import sampled_metric_speed
from boltzflow.eval.weights import ess_fraction, log_partition_estimate
from boltzflow.flows.cnf import IsotropicNormal
from boltzflow.training.fisher_rao import FisherRaoModel
from boltzflow.training.fisher_rao_fit import log_z_from_rate, sample_curve
from boltzflow.training.fisher_rao_gmm import ExactOUPath

SPEED_TIMES = [round(float(t), 4) for t in np.linspace(0.0, 1.0, 41)]
FIELD_TIMES = (0.1, 0.25, 0.5, 0.75, 1.0)


def reference(target: Target, n: int, runs: Path) -> tuple[torch.Tensor, dict]:
    """The fixed reference sample of size n and its cached floor statistics."""
    ref_a = target.sample(n, torch.Generator().manual_seed(777))
    cache = runs / f"floor-{target.name}-{n}.json"
    if cache.exists():
        return ref_a, json.loads(cache.read_text())
    ref_b = target.sample(n, torch.Generator().manual_seed(778))
    aa = mean_pairwise_distance(ref_a, ref_a)
    floor = 2 * mean_pairwise_distance(ref_b, ref_a) - mean_pairwise_distance(ref_b, ref_b) - aa
    stats = {"aa": aa, "floor": floor, "n": n}
    cache.write_text(json.dumps(stats))
    return ref_a, stats


def positions(model: FisherRaoModel, z: torch.Tensor, steps: int, chunk: int = 10_000) -> torch.Tensor:
    """x(1) from x(0) = z by RK4 on the model's velocity, without the log-density."""
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=z.dtype)
    ends = [odeint(lambda t, x: model.velocity(t, x).detach(), c, grid, method="rk4")[-1] for c in z.split(chunk)]
    return torch.cat(ends)


def field_error(model: FisherRaoModel, exact: ExactOUPath, n: int = 5000) -> dict[str, float]:
    """Relative L2(rho_t) error of the model's field against the exact OU field, per time."""
    g = torch.Generator().manual_seed(99)
    out = {}
    for t in FIELD_TIMES:
        x = t * exact.target.sample(n, g) + np.sqrt(1 - t**2) * exact.base_scale * torch.randn(n, 2, generator=g)
        v, ref = model.velocity(t, x).detach(), exact.velocity(t, x)
        out[str(t)] = float((v - ref).pow(2).sum(-1).mean() / ref.pow(2).sum(-1).mean())
    return out


def evaluate(model: FisherRaoModel, target: Target, args, gen: torch.Generator, runs: Path) -> dict:
    weighted = sample_curve(model, target.energy, target.dim, args.n_weights, gen, steps=args.ode_steps)
    base = IsotropicNormal(target.dim, model.curve.base_scale)
    rest = positions(model, base.sample(args.n_eval - args.n_weights, gen), args.ode_steps)
    x = torch.cat([weighted.x, rest])
    finite = torch.isfinite(x).all(-1)
    ref_a, floor = reference(target, args.n_eval, runs)
    xf = x[finite]
    ed = 2 * mean_pairwise_distance(xf, ref_a) - mean_pairwise_distance(xf, xf) - floor["aa"]
    cov = mode_coverage(target.labels(xf), target.mode_probs)
    lz = log_partition_estimate(weighted.log_w)
    log_z_rate = log_z_from_rate(model, target.dim)
    along = sample_curve(model, target.energy, target.dim, args.n_speed, gen, steps=args.ode_steps, times=SPEED_TIMES)
    speed = sampled_metric_speed(model.velocity, along.times, along.path)
    result = {
        "n_eval": args.n_eval, "n_weights": args.n_weights, "n_nonfinite": int((~finite).sum()),
        "energy_distance": ed, "energy_distance_floor": floor["floor"],
        "ess_fraction": ess_fraction(weighted.log_w),
        "log_z_is": lz.log_z, "log_z_is_error": lz.log_z - target.log_z, "log_z_is_stderr": lz.stderr,
        "log_z_rate": log_z_rate, "log_z_rate_error": log_z_rate - target.log_z,
        "modes_covered": cov.covered, "n_modes": cov.n_modes, "mode_counts": cov.counts.tolist(),
        "speed_times": along.times.tolist(), "speed": speed.tolist(),
    }
    if target.mixture is not None and model.interpolation == "gradient_flow":
        result["field_error_vs_exact_ou"] = field_error(model, ExactOUPath(target.mixture, model.curve.base_scale))
    return {"result": result, "x": x, "log_w": weighted.log_w}
