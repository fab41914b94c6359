"""Importance weights of flow samples against a Boltzmann target, and the estimators built on them.

For samples x_n ~ q with reduced target energy u (p ∝ exp(-u)), the log weights are
``log w_n = -u(x_n) - log q(x_n)``. Every estimator here is self-normalised, so an additive constant in
``log w`` (an unknown log Z, or the rigid-frame constant of internal coordinates) cancels, except in
:func:`log_partition_estimate`, whose result carries it.

Non-finite log weights (nan, ±inf: an energy that blew up, a sample outside the flow's support) are given
weight zero, i.e. dropped from the sums but still counted in ``n`` (a wasted sample lowers the efficiency),
and every NamedTuple result reports how many were dropped in ``n_dropped``. :func:`ess` and
:func:`ess_fraction` follow the same rule; use :func:`weight_summary` to see the count beside them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError


class ReweightedEstimate(NamedTuple):
    """A self-normalised importance-sampling average.

    Attributes:
        mean: shape (*value_shape), the estimate of E_p[f].
        stderr: shape (*value_shape), delta-method standard error.
        ess: Kish effective sample size (count) of the weights used.
        n_dropped: samples with a non-finite log weight (given weight zero).
    """

    mean: Tensor
    stderr: Tensor
    ess: float
    n_dropped: int


class FreeEnergyEstimate(NamedTuple):
    """ΔF = F_b - F_a in kT, with its delta-method standard error, and the dropped-sample count."""

    delta_f: float
    stderr: float
    n_dropped: int


class LogPartitionEstimate(NamedTuple):
    """log Z estimate (natural log, relative to the normalisation of q), its standard error, dropped count."""

    log_z: float
    stderr: float
    n_dropped: int


class WeightSummary(NamedTuple):
    """ESS count and fraction of n, sample count n (dropped samples included) and the number dropped."""

    ess: float
    ess_fraction: float
    n: int
    n_dropped: int


def log_importance_weights(u: Tensor, log_q: Tensor) -> Tensor:
    """``log w = -u(x) - log q(x)`` for x ~ q.

    Args:
        u: reduced target energies u(x), shape (n,), kT.
        log_q: log density of the proposal at the same samples, shape (n,).

    Returns:
        log weights, shape (n,) (non-finite entries are passed through; the estimators drop them).
    """
    if u.shape != log_q.shape:
        raise ValueError(
            f"u and log_q must have the same shape, got {tuple(u.shape)} and {tuple(log_q.shape)}"
        )
    return -u - log_q


def finite_log_weights(log_w: Tensor) -> tuple[Tensor, int]:
    """``log w`` with non-finite entries set to ``-inf`` (weight zero), and how many there were.

    Args:
        log_w: log weights, shape (n,).
    """
    if log_w.ndim != 1 or log_w.shape[0] == 0:
        raise ValueError(f"log_w must be a non-empty 1-D tensor, got shape {tuple(log_w.shape)}")
    finite = torch.isfinite(log_w)
    n_dropped = int((~finite).sum())
    if n_dropped == log_w.shape[0]:
        raise BoltzflowError(f"all {n_dropped} log weights are non-finite; check the energies and log q")
    return torch.where(finite, log_w, log_w.new_tensor(-math.inf)), n_dropped


def ess(log_w: Tensor) -> float:
    """Kish effective sample size ``(Σw)^2 / Σw^2``, a count in [1, n], computed in log space.

    Args:
        log_w: log weights, shape (n,); non-finite entries count as weight zero.
    """
    lw, _ = finite_log_weights(log_w)
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)))


def ess_fraction(log_w: Tensor) -> float:
    """ESS / n, in (0, 1] (the "sampling efficiency"); n includes samples with non-finite weights."""
    return ess(log_w) / log_w.shape[0]


def weight_summary(log_w: Tensor) -> WeightSummary:
    """ESS, ESS fraction, n and the number of dropped (non-finite) log weights, in one call."""
    value = ess(log_w)
    _, n_dropped = finite_log_weights(log_w)
    return WeightSummary(value, value / log_w.shape[0], int(log_w.shape[0]), n_dropped)


def normalized_weights(log_w: Tensor) -> Tensor:
    """Self-normalised weights ``w_n / Σ w``, shape (n,), zero where ``log_w`` is non-finite."""
    lw, _ = finite_log_weights(log_w)
    return torch.softmax(lw, dim=0)


def reweight(values: Tensor, log_w: Tensor) -> ReweightedEstimate:
    """Self-normalised importance-sampling estimate of E_p[f] from samples of q.

    ``mean = Σ_n w̄_n f_n`` with ``w̄ = w / Σw``. The standard error is the delta-method estimate
    ``sqrt(Σ_n w̄_n^2 (f_n - mean)^2)`` of self-normalised importance sampling (Owen, *Monte Carlo theory,
    methods and examples*, ch. 9), which for nearly constant weights is the usual ``std(f)/sqrt(n)`` and
    otherwise behaves like ``std_p(f)/sqrt(ESS)``. It assumes independent samples and finite weight variance;
    with a very small ESS the error bar is itself unreliable.

    Args:
        values: observable f(x_n), shape (n, *value_shape), any unit.
        log_w: log weights, shape (n,).

    Raises:
        ValueError: shapes disagree, or a sample with a finite weight has a non-finite value.
    """
    if values.shape[:1] != log_w.shape:
        raise ValueError(
            f"values must have shape (n, ...) with n = {log_w.shape[0]}, got {tuple(values.shape)}"
        )
    w = normalized_weights(log_w)
    _, n_dropped = finite_log_weights(log_w)
    used = (w > 0).reshape((-1,) + (1,) * (values.ndim - 1)).expand_as(values)
    if not bool(torch.isfinite(values[used]).all()):
        raise ValueError("values contain nan/inf at samples with a finite weight; drop or fix those samples")
    f = torch.where(used, values, torch.zeros_like(values))
    wb = w.reshape((-1,) + (1,) * (values.ndim - 1))
    mean = (wb * f).sum(0)
    stderr = torch.sqrt((wb**2 * (f - mean) ** 2).sum(0))
    return ReweightedEstimate(mean, stderr, float(1.0 / (w**2).sum()), n_dropped)


def free_energy_difference(log_w: Tensor, in_a: Tensor, in_b: Tensor) -> FreeEnergyEstimate:
    """Free-energy difference ``ΔF = F_b - F_a = -log(P_b / P_a)`` in kT between two sets of states.

    ``P_s = E_q[w 1_s] / E_q[w]``. With ``m_s = mean_n(w_n 1_s(x_n))``, the delta method gives
    ``Var(log m_b - log m_a) ≈ [Var(w 1_b)/m_b^2 + Var(w 1_a)/m_a^2 - 2 Cov(w 1_a, w 1_b)/(m_a m_b)] / n``.

    Args:
        log_w: log weights, shape (n,).
        in_a: boolean mask of the samples in state a, shape (n,).
        in_b: boolean mask of the samples in state b, shape (n,).

    Raises:
        BoltzflowError: a state holds no sample with a finite weight.
    """
    if in_a.shape != log_w.shape or in_b.shape != log_w.shape:
        raise ValueError(f"in_a and in_b must be boolean masks of shape {tuple(log_w.shape)}")
    w = normalized_weights(log_w)
    _, n_dropped = finite_log_weights(log_w)
    n = w.shape[0]
    wa, wb = w * in_a.to(w.dtype), w * in_b.to(w.dtype)
    ma, mb = wa.mean(), wb.mean()
    for name, m in (("a", ma), ("b", mb)):
        if m <= 0:
            raise BoltzflowError(f"state {name} has no sample with a finite weight; cannot estimate ΔF")
    cov = torch.cov(torch.stack([wa, wb]), correction=0)
    var = cov[1, 1] / mb**2 + cov[0, 0] / ma**2 - 2 * cov[0, 1] / (ma * mb)
    return FreeEnergyEstimate(float(-torch.log(mb / ma)), float(torch.sqrt(var.clamp_min(0) / n)), n_dropped)


def log_partition_estimate(log_w: Tensor) -> LogPartitionEstimate:
    """``log Ẑ = log mean_n w_n``: the log normalising constant of exp(-u) if q is normalised.

    The delta-method standard error of ``log Ẑ`` is ``sd(w) / (sqrt(n) mean(w)) = sqrt(1/ESS - 1/n)``.

    Args:
        log_w: log weights, shape (n,); dropped samples count in n with weight zero.
    """
    lw, n_dropped = finite_log_weights(log_w)
    n = lw.shape[0]
    value = ess(log_w)
    log_z = torch.logsumexp(lw, 0) - math.log(n)
    return LogPartitionEstimate(float(log_z), math.sqrt(max(1.0 / value - 1.0 / n, 0.0)), n_dropped)
