"""Mode coverage and per-mode weight error of samples of a multimodal target (GMM-40), with exact references.

A sample belongs to the mode of its nearest mean (a Voronoi cell). The reference weight of a mode is the target
probability of its cell, ``P_p(X ∈ V_k)``; for well separated modes it is the mixture weight, but GMM-40 has
means 1.2 apart at std 1.31, so its cells' probabilities differ from 1/40: they range over 0.02433–0.02558
(total variation 1.1·10⁻³ from uniform), which matters once a model's weight errors get that small.
:func:`gaussian_voronoi_weights` computes them exactly for isotropic 2-D mixtures: for each component, along each
ray from its mean the nearest-mean label changes where the ray meets the lower envelope of the lines
r ↦ |x(r) − μ_l|² − r², and the radial Gaussian mass between two crossings is exp(−r₁²/2σ²) − exp(−r₂²/2σ²) in
closed form; only the angle is integrated numerically (periodic trapezoid rule, error O(n_angles⁻²) from the
kinks at Voronoi vertices). A grid quadrature would have O(h) errors at every cell boundary instead.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.eval.weights import finite_log_weights


class ModeCoverage(NamedTuple):
    """Mode statistics of a sample.

    Attributes:
        n_covered: modes holding at least ``min_count`` samples (with non-zero weight).
        coverage: n_covered / n_modes.
        weights: estimated mode weights, shape (K,) (self-normalised importance weights when log_w is given).
        reference: reference weights, shape (K,).
        weight_error: weights − reference, shape (K,).
        tv: total variation ½ Σ_k |weights − reference|.
        max_abs_error: max_k |weights − reference|.
        counts: samples per mode, shape (K,), int64.
    """

    n_covered: int
    coverage: float
    weights: Tensor
    reference: Tensor
    weight_error: Tensor
    tv: float
    max_abs_error: float
    counts: Tensor


def nearest_mode(x: Tensor, means: Tensor, block: int = 65536) -> Tensor:
    """Index of the nearest mean for each sample.

    Args:
        x: samples, shape (n, d).
        means: mode centres, shape (K, d).
        block: rows per distance block (memory bound).

    Returns:
        int64 labels, shape (n,).
    """
    if x.ndim != 2 or means.ndim != 2 or x.shape[1] != means.shape[1]:
        raise ValueError(f"x must be (n, d) and means (K, d), got {tuple(x.shape)} and {tuple(means.shape)}")
    m = means.to(dtype=x.dtype, device=x.device)
    out = [torch.cdist(xb, m, compute_mode="donot_use_mm_for_euclid_dist").argmin(-1) for xb in x.split(block)]
    return torch.cat(out) if out else x.new_zeros(0, dtype=torch.long)


def mode_weights(labels: Tensor, n_modes: int, log_w: Tensor | None = None) -> Tensor:
    """Fraction of samples (or of self-normalised importance weight) per mode, shape (n_modes,), float64.

    Args:
        labels: mode index per sample, shape (n,), in [0, n_modes).
        n_modes: number of modes K.
        log_w: log importance weights, shape (n,); non-finite ones count as weight zero.
    """
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    if int(labels.min()) < 0 or int(labels.max()) >= n_modes:
        raise ValueError(f"labels must lie in [0, {n_modes}), got {int(labels.min())}..{int(labels.max())}")
    if log_w is None:
        w = torch.full(labels.shape, 1.0 / len(labels), dtype=torch.float64)
    else:
        if log_w.shape != labels.shape:
            raise ValueError(f"log_w must have shape {tuple(labels.shape)}, got {tuple(log_w.shape)}")
        w = torch.softmax(finite_log_weights(log_w.double())[0], 0)
    return torch.zeros(n_modes, dtype=torch.float64).index_add_(0, labels.cpu(), w.cpu())


def mode_coverage(labels: Tensor, reference: Tensor, log_w: Tensor | None = None, min_count: int = 1) -> ModeCoverage:
    """Mode coverage and per-mode weight error against reference weights.

    Args:
        labels: mode index per sample, shape (n,) (e.g. :func:`nearest_mode`).
        reference: reference weight per mode, shape (K,), summing to 1.
        log_w: log importance weights of the samples, shape (n,), for reweighted weights (optional).
        min_count: samples (with non-zero weight) a mode needs to count as covered.
    """
    ref = torch.as_tensor(reference, dtype=torch.float64).cpu()
    weights = mode_weights(labels, len(ref), log_w)
    alive = labels if log_w is None else labels[torch.isfinite(log_w)]
    counts = torch.bincount(alive.cpu(), minlength=len(ref))
    n_covered = int((counts >= min_count).sum())
    err = weights - ref
    return ModeCoverage(n_covered, n_covered / len(ref), weights, ref, err, float(0.5 * err.abs().sum()),
                        float(err.abs().max()), counts)


def gaussian_voronoi_weights(
    means: Tensor, scale: float, weights: Tensor | None = None, n_angles: int = 4096, r_max: float = 12.0
) -> Tensor:
    """P(X ∈ V_k) for X from an isotropic 2-D Gaussian mixture and the Voronoi cells V_k of its means.

    Args:
        means: component means, shape (K, 2).
        scale: the common standard deviation σ of every coordinate.
        weights: mixture weights, shape (K,) (normalised here); equal when None.
        n_angles: rays per component (the error falls as n_angles⁻²).
        r_max: rays stop at r_max σ (the neglected mass, exp(−r_max²/2), goes to the last cell).

    Returns:
        shape (K,), float64, summing to 1.
    """
    mu = torch.as_tensor(means, dtype=torch.float64)
    if mu.ndim != 2 or mu.shape[1] != 2:
        raise ValueError(f"gaussian_voronoi_weights needs 2-D means of shape (K, 2), got {tuple(mu.shape)}")
    k = len(mu)
    w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
    w = w / w.sum()
    theta = (torch.arange(n_angles, dtype=torch.float64) + 0.5) * (2 * math.pi / n_angles)
    u = torch.stack([theta.cos(), theta.sin()], -1)  # (T, 2)
    total = torch.zeros(k, dtype=torch.float64)
    for j in range(k):
        total += w[j] * _cell_masses_from(mu, j, u, float(scale), r_max)
    return total


def _cell_masses_from(mu: Tensor, j: int, u: Tensor, sigma: float, r_max: float) -> Tensor:
    """Mass of N(μ_j, σ² I) in each Voronoi cell, shape (K,), by exact radial integrals along rays ``u`` (T, 2)."""
    delta = mu - mu[j]
    intercept = (delta**2).sum(-1)  # line l: g_l(r) = |Δ_l|² − 2 r (u·Δ_l)
    slope = -2 * u @ delta.T  # (T, K)
    t_idx = torch.arange(len(u))
    cur = torch.full((len(u),), j, dtype=torch.long)
    r = torch.zeros(len(u), dtype=torch.float64)
    mass = torch.zeros(len(mu), dtype=torch.float64)
    active = torch.ones(len(u), dtype=torch.bool)
    tail = lambda radius: torch.exp(-0.5 * (radius / sigma) ** 2)  # noqa: E731  (mass beyond radius)
    while bool(active.any()):
        s_cur = slope[t_idx, cur][:, None]
        cross = (intercept - intercept[cur][:, None]) / (s_cur - slope)  # where line l meets the current one
        cross = torch.where((slope < s_cur) & (cross > r[:, None]), cross, torch.full_like(cross, math.inf))
        r_next, nxt = cross.min(-1)
        r_next = torch.where(active & (r_next < r_max * sigma), r_next, torch.full_like(r_next, math.inf))
        mass.index_add_(0, cur[active], (tail(r[active]) - tail(r_next[active])) / len(u))
        active = active & torch.isfinite(r_next)
        cur = torch.where(active, nxt, cur)
        r = torch.where(active, r_next, r)
    return mass
