"""Divergences between binned densities of two sample sets (e.g. (phi, psi) Ramachandran histograms).

Both sample sets are binned on the same regular grid (``numpy.histogramdd``) and each histogram is
normalised to probability mass per bin, P_k and Q_k with sum_k P_k = sum_k Q_k = 1. Then

* KL(P || Q) = sum over bins with P_k > 0 of P_k log(P_k / max(Q_k, eps)),
* TV(P, Q)   = 1/2 sum_k |P_k - Q_k|   (in [0, 1]).

Smoothing: only empty Q-bins are touched. A bin where the reference P has mass but Q has none contributes the
large but finite P_k log(P_k / eps) instead of infinity (eps = 0 gives the honest inf). This is
P log(P / (Q + eps)) except that occupied Q-bins are left exact (every occupied bin has Q_k >= 1/m >> eps),
so identical histograms give exactly 0 and the value equals the plain KL whenever Q covers P's support.
Bins with P_k = 0 contribute 0 (the limit of p log p). With eps = 1e-10 an empty Q-bin costs about
23 P_k nats, so KL values driven by empty bins should be read together with TV.

Points outside ``range`` are not counted (numpy's rule) and the masses are normalised over the points inside,
so wrap angles into the range first (e.g. to [-pi, pi)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class HistogramDivergence(NamedTuple):
    """Divergences between two binned densities.

    Attributes:
        kl: KL(P || Q) in nats, with the eps floor on empty Q-bins described in the module docstring.
        tv: total variation distance, in [0, 1].
        bins: number of bins per axis.
    """

    kl: float
    tv: float
    bins: int


def histogram_divergence(
    p: Any,
    q: Any,
    bins: int = 60,
    range: Sequence[tuple[float, float]] = ((-math.pi, math.pi), (-math.pi, math.pi)),
    eps: float = 1e-10,
) -> HistogramDivergence:
    """KL(P || Q) and TV between the histograms of two sample sets on a shared regular grid.

    Args:
        p: reference samples, shape (n, d) or (n,) for d = 1; numpy array or torch tensor.
        q: model samples, shape (m, d) or (m,).
        bins: bins per axis.
        range: one (low, high) pair per dimension (a single pair is accepted for d = 1); default is
            [-pi, pi]^2, radians, for (phi, psi).
        eps: mass given to empty Q-bins inside the logarithm, >= 0 (0 lets KL be inf).

    Returns:
        :class:`HistogramDivergence`.

    Raises:
        ValueError: non-finite samples, mismatched dimensions, a range that does not match the dimension,
            or a set with no points inside the range.
    """
    x, y = _as_points(p, "p"), _as_points(q, "q")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"p and q have different dimensions: shapes {x.shape} and {y.shape}")
    edges = _check_range(range, x.shape[1])
    if int(bins) < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    pm = _mass(x, int(bins), edges, "p")
    qm = _mass(y, int(bins), edges, "q")
    tv = 0.5 * float(np.abs(pm - qm).sum())
    support = pm > 0
    with np.errstate(divide="ignore"):  # eps = 0 with an empty Q-bin gives an honest inf
        kl = float(np.sum(pm[support] * np.log(pm[support] / np.maximum(qm[support], eps))))
    return HistogramDivergence(kl, tv, int(bins))


def _mass(x: np.ndarray, bins: int, edges: list[tuple[float, float]], name: str) -> np.ndarray:
    """Probability mass per bin, shape (bins,) * d."""
    counts, _ = np.histogramdd(x, bins=bins, range=edges)
    total = counts.sum()
    if total == 0:
        raise ValueError(f"no {name} samples fall inside range {edges}; widen the range or wrap the samples")
    return counts / total


def _check_range(range_: Any, dim: int) -> list[tuple[float, float]]:
    arr = np.asarray(range_, dtype=np.float64)
    if arr.shape == (2,):
        arr = arr[None, :]
    if arr.shape != (dim, 2):
        raise ValueError(f"range needs one (low, high) pair per dimension ({dim}), got {arr.tolist()}")
    if not (np.isfinite(arr).all() and (arr[:, 1] > arr[:, 0]).all()):
        raise ValueError(f"range pairs must be finite with low < high, got {arr.tolist()}")
    return [(float(lo), float(hi)) for lo, hi in arr]


def _as_points(a: Any, name: str) -> np.ndarray:
    """Samples as a finite float64 array of shape (n, d)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty array of shape (n, d) or (n,), got {arr.shape}")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or inf values; remove or fix those samples first")
    return arr
