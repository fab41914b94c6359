"""Sample-based metrics for model systems: the energy distance with its noise floor, and mode coverage.

Energy distance (Székely & Rizzo), V-statistic form over all pairs (zero self-distances included):

    ``D^2(X, Y) = 2 mean_ij |x_i - y_j| - mean_ij |x_i - x_j| - mean_ij |y_i - y_j|``,

the squared MMD with the kernel ``-|x - y|``; it is >= 0 and, in 1-D, equals ``2 int (F_X - F_Y)^2``
(``scipy.stats.energy_distance`` returns its square root; the tests compare). The follow-ups of paper 003
report half of this value (notes §2.7); compare ratios to the floor rather than raw values across papers. Like
W2, it is biased upwards by sampling noise: :func:`energy_distance_with_floor` reports it beside the same
statistic between two independent exact samples of the same size. Pairwise distances are summed in float64
blocks (memory ~ 8 * block * m bytes), so 5e4 x 5e4 pairs fit in a few hundred MB.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def mean_pairwise_distance(a: Tensor, b: Tensor, block: int = 1024) -> float:
    """``mean_ij |a_i - b_j|`` (Euclidean), a (n, d), b (m, d), in float64 blocks of ``block`` rows."""
    a, b = _points(a, "a"), _points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    total = torch.zeros((), dtype=torch.float64)
    for chunk in a.split(block):
        total += torch.cdist(chunk, b).sum()
    return float(total) / (a.shape[0] * b.shape[0])


def energy_distance(x: Tensor, y: Tensor, block: int = 1024) -> float:
    """Squared energy distance ``D^2(X, Y)`` of two sample sets, shapes (n, d) and (m, d), units of x."""
    return 2 * mean_pairwise_distance(x, y, block) - mean_pairwise_distance(x, x, block) - mean_pairwise_distance(
        y, y, block
    )


class EnergyDistance(NamedTuple):
    """``D^2`` of a model sample against a reference, and the floor ``D^2`` of two reference samples."""

    value: float
    floor: float
    n: int


def energy_distance_with_floor(model: Tensor, ref_a: Tensor, ref_b: Tensor, block: int = 1024) -> EnergyDistance:
    """``D^2(model, ref_a)`` and ``D^2(ref_b, ref_a)``: all three sets must have the same size n."""
    if not model.shape[0] == ref_a.shape[0] == ref_b.shape[0]:
        raise ValueError(
            f"model, ref_a and ref_b must have the same size, got {model.shape[0]}, {ref_a.shape[0]}, {ref_b.shape[0]}"
        )
    aa = mean_pairwise_distance(ref_a, ref_a, block)
    value = 2 * mean_pairwise_distance(model, ref_a, block) - mean_pairwise_distance(model, model, block) - aa
    floor = 2 * mean_pairwise_distance(ref_b, ref_a, block) - mean_pairwise_distance(ref_b, ref_b, block) - aa
    return EnergyDistance(value, floor, int(model.shape[0]))


class ModeCoverage(NamedTuple):
    """Modes holding at least ``min_share`` of their expected number of samples.

    Attributes:
        covered: number of covered modes.
        n_modes: number of modes.
        counts: samples per mode, shape (n_modes,).
        expected: expected samples per mode, shape (n_modes,).
    """

    covered: int
    n_modes: int
    counts: Tensor
    expected: Tensor


def mode_coverage(labels: Tensor, expected_fraction: Tensor, min_share: float = 0.1) -> ModeCoverage:
    """Count the modes that receive at least ``min_share`` of their expected share of the samples.

    Args:
        labels: mode index of each sample, shape (n,), integers in [0, n_modes).
        expected_fraction: exact probability of each mode, shape (n_modes,), summing to 1.
        min_share: the fraction of the expected count a mode needs to count as covered.
    """
    k = expected_fraction.shape[0]
    if labels.ndim != 1 or (labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k)):
        raise ValueError(f"labels must be a 1-D tensor of mode indices in [0, {k})")
    counts = torch.bincount(labels, minlength=k).to(torch.float64)
    expected = expected_fraction.to(torch.float64) * labels.shape[0]
    return ModeCoverage(int((counts >= min_share * expected).sum()), k, counts, expected)


def _points(a: Tensor, name: str) -> Tensor:
    a = torch.as_tensor(a, dtype=torch.float64)
    a = a[:, None] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[0] == 0 or not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} must be a non-empty finite array of shape (n, d), got shape {tuple(a.shape)}")
    return a
