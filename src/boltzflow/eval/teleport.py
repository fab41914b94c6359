"""Teleportation of mass, measured: the W2 metric speed of a curve of densities.

Along a curve rho_t, the Wasserstein-2 metric speed is ``|rho_t'|_{W2} = ||v_t||_{L2(rho_t)}`` for the
minimal (gradient) velocity of the continuity equation. In one dimension that velocity is unique and explicit:
``d_t rho_t + d_x(rho_t v_t) = 0`` integrates to ``v_t(x) = -d_t F_t(x) / rho_t(x)`` with F_t the CDF, so

    ``speed(t)^2 = int (d_t F_t(x))^2 / rho_t(x) dx``.

We compute it by quadrature on a uniform grid from an unnormalised log-density ``l_t(x)`` and its time
derivative (autograd): ``d_t rho_t = rho_t (d_t l_t - E_rho_t[d_t l_t])`` and ``d_t F_t`` is its cumulative
integral, taken from the left where ``F_t < 1/2`` and from the right elsewhere, so that neither tail is a
difference of two nearly equal numbers (which, divided by a tiny rho_t, would swamp the result). The ratio is
formed in log space. This is a diagnostic with no learning in it (notes §2.6, paper 003 Fig. 2).

For a learned or sampled curve, :func:`sampled_metric_speed` gives ``sqrt(mean_n |v_t(x_n)|^2)`` over samples x_n
of the curve at time t; for a non-gradient v it bounds the metric speed of the transported density from above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

LogDensity = Callable[[Tensor, Tensor], Tensor]
"""``l(t, x)``: times shape (n,), points shape (n,) -> unnormalised log density of rho_t at x, shape (n,)."""


def metric_speed_1d(log_density: LogDensity, t: float, lo: float, hi: float, n_grid: int = 200_001) -> float:
    """Exact W2 metric speed ``||v_t||_{L2(rho_t)}`` of a 1-D curve of densities at time t, by quadrature.

    Args:
        log_density: ``l(t, x)``, differentiable in t (torch, float64).
        t: the time.
        lo: left end of the grid; rho_t must be negligible there.
        hi: right end of the grid; rho_t must be negligible there.
        n_grid: grid points (trapezoid rule; the error falls as 1/n_grid^2).

    Returns:
        the speed, in units of x per unit time.

    Raises:
        ValueError: the grid does not cover the mass (rho_t at an end exceeds 1e-12 of its maximum).
    """
    x = torch.linspace(lo, hi, n_grid, dtype=torch.float64)
    h = (hi - lo) / (n_grid - 1)
    tt = torch.full_like(x, float(t)).requires_grad_(True)
    with torch.enable_grad():
        ell = log_density(tt, x)
        (dell,) = torch.autograd.grad(ell.sum(), tt)
    ell = ell.detach()
    log_rho = ell - _log_trapz(ell, h)
    if float(torch.maximum(log_rho[0], log_rho[-1]) - log_rho.max()) > math.log(1e-12):
        raise ValueError(f"the grid [{lo}, {hi}] does not cover the density at t={t}; widen it")
    rho = log_rho.exp()
    rate = rho * (dell - _trapz(rho * dell, h))  # d_t rho_t, integrates to zero
    left = _cumtrapz(rate, h)
    right = -_cumtrapz(rate.flip(0), h).flip(0)
    d_cdf = torch.where(_cumtrapz(rho, h) < 0.5, left, right)
    integrand = torch.exp(2 * torch.log(d_cdf.abs()) - log_rho)
    return math.sqrt(float(_trapz(integrand, h)))


def metric_speed_curve(
    log_density: LogDensity, times: Sequence[float], lo: float, hi: float, n_grid: int = 200_001
) -> Tensor:
    """:func:`metric_speed_1d` at each time, shape (T,)."""
    return torch.tensor([metric_speed_1d(log_density, t, lo, hi, n_grid) for t in times], dtype=torch.float64)


def linear_path(log_rho_z: Callable[[Tensor], Tensor], log_rho_d: Callable[[Tensor], Tensor]) -> LogDensity:
    """The linear (geometric) interpolation ``l_t = (1 - t) log rho_Z + t log rho_D`` (unnormalised)."""
    return lambda t, x: (1 - t) * log_rho_z(x) + t * log_rho_d(x)


def gaussian_mixture_log_density(weights: Sequence[float], means: Sequence[float], stds: Sequence[float]):
    """``x -> log sum_k w_k N(x; m_k, s_k^2)`` in 1-D (normalised when the weights sum to 1)."""
    w, m, s = (torch.as_tensor(a, dtype=torch.float64) for a in (weights, means, stds))
    return lambda x: _mixture(x, w.log(), m, s)


def ou_path_gaussian_mixture(
    weights: Sequence[float], means: Sequence[float], stds: Sequence[float], base_scale: float = 1.0
) -> LogDensity:
    """OU / variance-preserving path from N(0, base_scale^2) to a 1-D Gaussian mixture, schedule alpha_t = t.

    rho_t = Law(t X_D + sqrt(1 - t^2) base_scale Z): components N(t m_k, t^2 s_k^2 + (1 - t^2) base_scale^2).
    """
    w, m, s = (torch.as_tensor(a, dtype=torch.float64) for a in (weights, means, stds))

    def log_density(t: Tensor, x: Tensor) -> Tensor:
        tc = t.unsqueeze(-1)
        var = tc**2 * s**2 + (1 - tc**2) * base_scale**2
        return _mixture(x, w.log(), tc * m, var.sqrt())

    return log_density


def sampled_metric_speed(velocity: Callable[[Tensor, Tensor], Tensor], times: Tensor, path: Tensor) -> Tensor:
    """``sqrt(mean_n |v(t_k, x_kn)|^2)`` along a sampled curve: the L2(q_t) norm of a (learned) velocity.

    Args:
        velocity: ``v(t, x)``, t shape (), x shape (n, d) -> (n, d).
        times: shape (T,).
        path: samples of the curve at those times, shape (T, n, d) (e.g. :attr:`CNFSample.path`).

    Returns:
        shape (T,), units of x per unit time.
    """
    if path.ndim != 3 or path.shape[0] != times.shape[0]:
        raise ValueError(f"path must have shape (T={times.shape[0]}, n, d), got {tuple(path.shape)}")
    out = []
    for t, x in zip(times, path, strict=True):
        out.append(velocity(t, x).detach().pow(2).sum(-1).mean().sqrt())  # v may need autograd (OU field)
    return torch.stack(out)


def _mixture(x: Tensor, log_w: Tensor, m: Tensor, s: Tensor) -> Tensor:
    x = x.unsqueeze(-1)
    log_n = -0.5 * ((x - m) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_w + log_n, -1)


def _trapz(y: Tensor, h: float) -> Tensor:
    return h * (y.sum() - 0.5 * (y[0] + y[-1]))


def _log_trapz(log_y: Tensor, h: float) -> Tensor:
    top = log_y.max()
    return top + torch.log(_trapz(torch.exp(log_y - top), h))


def _cumtrapz(y: Tensor, h: float) -> Tensor:
    inc = 0.5 * h * (y[1:] + y[:-1])
    return torch.cat([y.new_zeros(1), inc.cumsum(0)])
