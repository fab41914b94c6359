"""The model-system metrics in one call: what applies to a system, each next to its noise floor.

``model_system_metrics(system, x, log_w)`` returns a JSON-ready dict with, where the system supports it:

* ``log_z``: the importance-sampling log Z error (needs ``log_w`` and an exact ``system.log_z``);
* ``modes``: mode coverage and per-mode weight error against the exact cell weights (systems with
  ``mode_reference()``, i.e. GMM-40), from the raw samples and, with ``log_w``, reweighted;
* ``energy_distance``: against an exact sample (systems with an exact sampler), with its floor;
* ``particle_w2``: distance and energy W2 against the shipped MCMC reference (DW4, LJ13), with floors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.eval.energy_distance import energy_distance_with_floor
from boltzflow.eval.log_z import log_z_error
from boltzflow.eval.modes import mode_coverage
from boltzflow.eval.particles import particle_w2


def _modes(system: Any, x: Tensor, log_w: Tensor | None) -> dict[str, Any]:
    labels, ref = system.mode_of(x), system.mode_reference()
    out = {}
    for key, lw in (("raw", None), ("reweighted", log_w)):
        if key == "reweighted" and lw is None:
            continue
        cov = mode_coverage(labels, ref, lw)
        out[key] = {"n_covered": cov.n_covered, "coverage": cov.coverage, "tv": cov.tv,
                    "max_abs_error": cov.max_abs_error}
    return {**out, "n_modes": len(ref)}


def model_system_metrics(
    system: Any, x: Tensor, log_w: Tensor | None = None, n: int = 50_000, draws: int = 1, seed: int = 0
) -> dict[str, Any]:
    """The metrics of the module docstring for samples ``x`` of a model of ``system``.

    Args:
        system: a :class:`~boltzflow.systems.base.System`.
        x: model samples, shape (N, *event_shape).
        log_w: log importance weights −u − log q of the samples, shape (N,) (optional).
        n: samples per set for the energy distance and the W2 (capped at N, and at half the MCMC reference).
        draws: independent draws for the distances.
        seed: seed of the exact reference samples and of the subsampling.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    if tuple(x.shape[1:]) != tuple(system.event_shape):
        raise ValueError(f"{system.name} samples must have shape (N, *{tuple(system.event_shape)}), "
                         f"got {tuple(x.shape)}")
    out: dict[str, Any] = {"system": system.name, "n_samples": len(x)}
    if log_w is not None and system.log_z is not None:
        out["log_z"] = log_z_error(log_w, system.log_z)._asdict()
    if hasattr(system, "mode_reference"):
        out["modes"] = _modes(system, x, log_w)
    m = min(int(n), len(x))
    if system.has_exact_sampler:
        ref = system.sample_exact(2 * m, torch.Generator().manual_seed(seed))
        out["energy_distance"] = energy_distance_with_floor(ref, x, m, draws, seed, log_w)
    elif "mcmc" in system.references() and hasattr(system, "n_particles"):
        ref = system.reference("mcmc").load()
        m = min(m, len(ref) // 2)
        energy = system.energy().double()
        out["particle_w2"] = particle_w2(ref, x.numpy(), energy, m, draws, np.random.default_rng(seed))
    return out
