"""W2 of interatomic distances and of energies for particle clusters (DW4, LJ13), each next to its noise floor.

These are the two numbers the equivariant-flow literature reports for DW4 and LJ13 (Klein et al. 2023; Midgley
et al. 2023; Akhound-Sadegh et al. 2024), both invariant to rotations, translations and permutations:

* distance W2: the 1-D W2 between the *pooled* interatomic distances of two sets of configurations (all pairs of
  every configuration in one histogram, the distribution those papers plot);
* energy W2: the 1-D W2 between the reduced energies u of the two sets.

Both are exact 1-D W2 (sorted quantiles, :func:`boltzflow.eval.wasserstein.w2`). Subsampling is by
configuration: each draw takes ``n`` configurations from the reference and ``n`` from the model; the floor takes
two disjoint sets of ``n`` reference configurations (what a perfect model would score with ``n`` samples).
A few model samples with huge energies (overlapping particles) dominate the energy W2; that is the metric's nature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.energies.particles import pair_distances
from boltzflow.eval.wasserstein import w2


def _as_tensor(x: Any) -> Tensor:
    t = torch.as_tensor(np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64))
    if t.ndim != 3 or len(t) == 0:
        raise ValueError(f"configurations must have shape (n, n_particles, d) with n >= 1, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("configurations contain NaN or inf; drop those samples first")
    return t


def particle_features(x: Any, energy: Callable[[Tensor], Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Pair distances and energies of configurations.

    Args:
        x: positions, shape (n, n_particles, d) (array or tensor).
        energy: reduced energy, (..., n_particles, d) -> (...), kT.

    Returns:
        ``(distances (n, n_pairs), u (n,))`` as float64 arrays.
    """
    t = _as_tensor(x)
    with torch.no_grad():
        return pair_distances(t).numpy(), energy(t).numpy()


def _w2_pair(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], i: np.ndarray, j: np.ndarray
             ) -> tuple[float, float]:
    """(distance W2, energy W2) between configurations ``i`` of ``a`` and ``j`` of ``b``."""
    return w2(a[0][i].reshape(-1), b[0][j].reshape(-1)), w2(a[1][i], b[1][j])


def particle_w2(
    ref: Any,
    gen: Any,
    energy: Callable[[Tensor], Tensor],
    n: int = 2000,
    draws: int = 5,
    generator: np.random.Generator | int = 0,
) -> dict[str, float | int]:
    """Distance W2 and energy W2 between reference and model configurations, with their floors.

    Args:
        ref: reference configurations, shape (N_ref, n_particles, d), N_ref >= 2 n (for the floor).
        gen: model configurations, shape (N_gen, n_particles, d), N_gen >= n.
        energy: reduced energy of the system, (..., n_particles, d) -> (...).
        n: configurations per set in each draw.
        draws: independent draws (mean and sd are reported).
        generator: numpy Generator or seed for the subsampling.

    Returns:
        ``{"distance_w2", "distance_w2_sd", "distance_w2_floor", "distance_w2_floor_sd", "energy_w2",
        "energy_w2_sd", "energy_w2_floor", "energy_w2_floor_sd"}`` (floats, distances in length units, energies
        in kT) and ``{"n", "draws"}``.
    """
    fr, fg = particle_features(ref, energy), particle_features(gen, energy)
    if fr[0].shape[1] != fg[0].shape[1]:
        raise ValueError(f"ref and gen have different particle numbers ({fr[0].shape[1]} vs {fg[0].shape[1]} pairs)")
    if int(n) < 1 or int(draws) < 1:
        raise ValueError(f"n and draws must be at least 1, got n={n}, draws={draws}")
    if len(fr[1]) < 2 * n or len(fg[1]) < n:
        raise ValueError(f"need >= 2n = {2 * n} reference and >= n = {n} model configurations, got "
                         f"{len(fr[1])} and {len(fg[1])}; lower n")
    rng = np.random.default_rng(generator)
    model, floor = [], []
    for _ in range(draws):
        perm = rng.permutation(len(fr[1]))
        floor.append(_w2_pair(fr, fr, perm[:n], perm[n : 2 * n]))
        i, j = rng.choice(len(fr[1]), n, replace=False), rng.choice(len(fg[1]), n, replace=False)
        model.append(_w2_pair(fr, fg, i, j))
    m, f = np.asarray(model), np.asarray(floor)
    out: dict[str, float | int] = {}
    for k, name in enumerate(("distance", "energy")):
        out.update({f"{name}_w2": float(m[:, k].mean()), f"{name}_w2_sd": _sd(m[:, k]),
                    f"{name}_w2_floor": float(f[:, k].mean()), f"{name}_w2_floor_sd": _sd(f[:, k])})
    return {**out, "n": int(n), "draws": int(draws)}


def _sd(values: Any) -> float:
    """Sample standard deviation (ddof = 1); 0.0 for a single value."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.std(ddof=1)) if len(v) > 1 else 0.0
