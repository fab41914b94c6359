"""Evaluation of a model-system baseline: the system's metrics per independent draw, as mean ± sd, beside floors.

For each of ``n_draws`` draws, ``n_per_draw`` fresh flow samples (float64) with log weights
``log w = −u − log q`` are scored with what applies to the system:

* ``ess_fraction`` (Kish ESS / n) for every system;
* ``log_z``: log Ẑ − log Z and its delta-method standard error (GMM-40, ManyWell-32: exact log Z);
* ``modes``: modes covered, TV and max |error| of the per-mode weights against the exact cell weights, from the
  raw samples and reweighted (GMM-40);
* ``energy_distance``: raw and reweighted model samples against a fresh exact sample, and the floor (the same
  statistic between two independent exact samples of the same size) (GMM-40, ManyWell-32);
* ``wells`` (ManyWell-32): the share of double-well coordinates in the deeper well, raw, reweighted and in the
  exact sample (0.8443 in expectation), and the number of the 2¹⁶ modes the draw visits;
* ``particle_w2``: distance and energy W2 against the held-out half of the MCMC reference, with the floor
  between two disjoint held-out subsets (DW4, LJ13).

Each number becomes ``{mean, sd, values}`` over the draws (:func:`~boltzflow.eval.evaluate.mean_sd`). On top,
:func:`~boltzflow.eval.evaluate.evaluate` adds the generic set (ESS with clipping, NLL and EUBO on the held-out
reference, energy histograms). The metric functions live in :mod:`boltzflow.eval`; this module only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.eval.energy_distance import energy_distance
from boltzflow.eval.evaluate import Draw, evaluate, mean_sd
from boltzflow.eval.log_z import log_z_error
from boltzflow.eval.modes import mode_coverage
from boltzflow.eval.particles import particle_w2
from boltzflow.eval.weights import ess_fraction, finite_log_weights
from boltzflow.flows.flow import Flow

DRAW_SEED = 2_000_000  # evaluation streams: DRAW_SEED + 1000 * seed + draw (flow samples), + 500 (references)


@torch.no_grad()
def draw_samples(system: Any, flow: Flow, n: int, generator: torch.Generator, from_flow: Callable,
                 energy: Callable[[Tensor], Tensor]) -> tuple[Draw, int]:
    """``n`` flow samples as a :class:`Draw` of configurations (n', *event_shape), and how many were non-finite.

    Samples with non-finite coordinates are dropped (they cannot enter the distances); their count is returned.
    """
    s = flow.sample(n, generator)
    u = energy(s.x)
    log_w = torch.nan_to_num(-u - s.log_prob, nan=-torch.inf)
    ok = torch.isfinite(s.x).all(-1)
    return Draw(from_flow(system, s.x[ok]), log_w[ok], u[ok]), int((~ok).sum())


def draw_metrics(system: Any, draw: Draw, held_x: Tensor, n_metric: int, seed: int) -> dict[str, Any]:
    """The per-draw metrics of the module docstring (plain floats, nested by metric)."""
    out: dict[str, Any] = {"ess_fraction": ess_fraction(draw.log_w)}
    if system.log_z is not None:
        lz = log_z_error(draw.log_w, system.log_z)
        out["log_z"] = {"error": lz.error, "stderr": lz.stderr}
    if hasattr(system, "mode_reference"):
        labels, ref = system.mode_of(draw.x), system.mode_reference()
        out["modes"] = {}
        for key, lw in (("raw", None), ("reweighted", draw.log_w)):
            cov = mode_coverage(labels, ref, lw)
            out["modes"][key] = {"n_covered": cov.n_covered, "tv": cov.tv, "max_abs_error": cov.max_abs_error}
    m = min(n_metric, len(draw.x))
    if system.has_exact_sampler:
        ref = system.sample_exact(2 * m, torch.Generator().manual_seed(seed + 500))
        a, b = ref[:m], ref[m:]
        out["energy_distance"] = {"raw": energy_distance(draw.x[:m], a),
                                  "reweighted": energy_distance(draw.x[:m], a, log_w=draw.log_w[:m]),
                                  "floor": energy_distance(b, a), "n": m}
        if hasattr(system, "wells"):
            out["wells"] = _wells(system, draw, ref)
    elif hasattr(system, "n_particles"):
        m = min(m, len(held_x) // 2)
        w2 = particle_w2(held_x.numpy(), draw.x.numpy(), system.energy().double(), m, 1, seed)
        out["particle_w2"] = {k: v for k, v in w2.items() if not k.endswith("_sd") and k != "draws"}
    return out


def _wells(system: Any, draw: Draw, ref: Tensor) -> dict[str, float]:
    """ManyWell: share of double-well coordinates in the deeper well (raw, reweighted, exact sample), modes seen."""
    deep = system.wells(draw.x).double()  # (n, n_pairs)
    w = torch.softmax(finite_log_weights(draw.log_w.double())[0], 0)
    return {"deep_fraction": float(deep.mean()), "deep_fraction_reweighted": float((w[:, None] * deep).sum(0).mean()),
            "deep_fraction_exact": float(system.wells(ref).double().mean()),
            "n_modes_visited": len(torch.unique(system.mode_of(draw.x)))}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = float(v)
    return flat


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        *path, leaf = key.split(".")
        node = out
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def aggregate(per_draw: list[dict[str, Any]]) -> dict[str, Any]:
    """``{metric: {mean, sd, values}}`` over draws, nested like one draw's dict."""
    flats = [_flatten(d) for d in per_draw]
    return _nest({k: mean_sd([f[k] for f in flats]) for k in flats[0]})


def evaluate_baseline(system: Any, flow: Flow, held_x: Tensor, sc: Any, seed: int, to_flow: Callable,
                      from_flow: Callable, energy: Callable[[Tensor], Tensor]
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score a trained flow (float64, eval mode) over ``sc.n_draws`` independent draws.

    Args:
        system: the :class:`~boltzflow.systems.base.System`.
        flow: the trained flow on the flow coordinates (n, D).
        held_x: held-out reference configurations, shape (m, *event_shape), float64 (NLL, EUBO, particle W2).
        sc: the run's :class:`~boltzflow.experiments.baselines.BaselineScale` (n_draws, n_per_draw, n_metric).
        seed: the run's training seed (evaluation seeds derive from it).
        to_flow, from_flow: (system, configurations) <-> (system, flow coordinates).
        energy: u on the flow coordinates, (n, D) -> (n,), kT.

    Returns:
        ``(evaluation dict, {"x": all samples (N, *event_shape), "log_w": (N,)})``.
    """
    draws, per_draw, n_bad = [], [], 0
    for d in range(sc.n_draws):
        s = DRAW_SEED + 1000 * seed + d
        draw, bad = draw_samples(system, flow, sc.n_per_draw, torch.Generator().manual_seed(s), from_flow, energy)
        draws.append(draw)
        n_bad += bad
        per_draw.append(draw_metrics(system, draw, held_x, sc.n_metric, s))
    with torch.no_grad():
        log_q_held = flow.log_prob(to_flow(system, held_x))
    generic = evaluate(system, draws, reference_x=held_x, log_q_reference=log_q_held)
    evaluation = {"draws": aggregate(per_draw), "generic": generic, "n_nonfinite_x": n_bad,
                  "n_heldout": len(held_x), "draw_seeds": [DRAW_SEED + 1000 * seed + d for d in range(sc.n_draws)]}
    samples = {"x": torch.cat([d.x for d in draws]).numpy(), "log_w": torch.cat([d.log_w for d in draws]).numpy()}
    return evaluation, samples
