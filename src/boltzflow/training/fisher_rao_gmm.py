"""Gaussian-mixture targets and their exact Ornstein-Uhlenbeck curve: the closed-form test case (notes §2.3).

For a target rho_D = sum_k w_k N(m_k, s_k^2 I) and the base N(0, sigma0^2 I), the variance-preserving path
rho_t = Law(alpha X_D + sqrt(1 - alpha^2) sigma0 Z) with alpha = t is again a mixture, with components
N(alpha m_k, S_k^2 I), ``S_k^2 = alpha^2 s_k^2 + (1 - alpha^2) sigma0^2``. Each component moves by the affine
field ``u_k = alpha' m_k + (S_k'/S_k)(x - alpha m_k)``, so the mixture moves by ``v = sum_k gamma_k(x) u_k`` with
posteriors gamma_k. This equals the probability-flow field ``(alpha'/alpha)(x - sigma0^2 grad f_t)``: per
component, ``(alpha'/alpha)(x - sigma0^2 (x - alpha m_k) / S_k^2) = u_k`` because
``S_k^2 - sigma0^2 = alpha^2 (s_k^2 - sigma0^2)`` and ``S_k S_k' = alpha alpha' (s_k^2 - sigma0^2)``
(the tests check it).

The exact energy ``f_t = -log rho_t - (1 - t) c0`` with ``c0 = (d/2) log(2 pi sigma0^2)`` meets both ends of a
:class:`~boltzflow.training.fisher_rao.BoltzmannCurve` (f_0 = |x|^2 / (2 sigma0^2), f_1 = -log rho_D), and
its log Z rate is the constant ``C(t) = d/dt log Z_t = -c0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from boltzflow.training.fisher_rao_nets import time_column


class GaussianMixture(nn.Module):
    """sum_k w_k N(m_k, s_k^2 I) on R^d, float64, with energy = -log density (so log Z = 0).

    Args:
        weights: shape (K,), positive (normalised here).
        means: shape (K, d).
        stds: shape (K,), isotropic standard deviation of each component.
    """

    def __init__(self, weights: Sequence[float] | Tensor, means: Tensor, stds: Sequence[float] | Tensor) -> None:
        super().__init__()
        w = torch.as_tensor(weights, dtype=torch.float64)
        m = torch.as_tensor(means, dtype=torch.float64)
        s = torch.as_tensor(stds, dtype=torch.float64)
        if m.ndim != 2 or w.shape != (m.shape[0],) or s.shape != w.shape or not bool((w > 0).all() & (s > 0).all()):
            raise ValueError("GaussianMixture needs weights (K,) > 0, means (K, d) and stds (K,) > 0")
        self.register_buffer("log_weights", torch.log(w / w.sum()))
        self.register_buffer("means", m)
        self.register_buffer("stds", s)

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def component_log_probs(self, x: Tensor, means: Tensor | None = None, stds: Tensor | None = None) -> Tensor:
        """log w_k + log N(x; m_k, s_k^2 I), shape (n, K); optional means (n, K, d) and stds (n, K)."""
        m = self.means if means is None else means
        s = self.stds if stds is None else stds
        sq = ((x.unsqueeze(-2) - m) ** 2).sum(-1)
        return self.log_weights - 0.5 * sq / s**2 - self.dim * torch.log(s) - 0.5 * self.dim * math.log(2 * math.pi)

    def log_prob(self, x: Tensor) -> Tensor:
        """Normalised log density, shape (n, d) -> (n,)."""
        return torch.logsumexp(self.component_log_probs(x), -1)

    def energy(self, x: Tensor) -> Tensor:
        """-log density, shape (n, d) -> (n,), kT."""
        return -self.log_prob(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.energy(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples, shape (n, d), float64."""
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=self.means.device)
        return self.means[k] + self.stds[k, None] * z

    def nearest_component(self, x: Tensor) -> Tensor:
        """Index of the nearest mean for each point, shape (n,) (the mode a sample is counted in)."""
        return torch.cdist(x, self.means).argmin(-1)


class ExactOUPath(nn.Module):
    """The exact OU / variance-preserving curve (alpha_t = t) from N(0, sigma0^2 I) to a Gaussian mixture.

    Args:
        target: the mixture rho_D.
        base_scale: sigma0.
    """

    def __init__(self, target: GaussianMixture, base_scale: float = 1.0) -> None:
        super().__init__()
        self.target, self.base_scale = target, float(base_scale)
        self.c0 = 0.5 * target.dim * math.log(2 * math.pi * self.base_scale**2)

    def _components(self, t: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a = time_column(t, x)  # (n, 1)
        var = a**2 * self.target.stds**2 + (1 - a**2) * self.base_scale**2  # (n, K)
        return a, a.unsqueeze(-1) * self.target.means, var.sqrt()

    def log_density(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Normalised log rho_t(x), shape (n,)."""
        _, m, s = self._components(t, x)
        return torch.logsumexp(self.target.component_log_probs(x, m, s), -1)

    def energy(self, t: Tensor | float, x: Tensor) -> Tensor:
        """f_t(x) = -log rho_t(x) - (1 - t) c0, shape (n,), kT."""
        return -self.log_density(t, x) - (1 - time_column(t, x)[:, 0]) * self.c0

    def log_z_rate(self, t: Tensor) -> Tensor:
        """C(t) = d/dt log Z_t = -c0, with the shape of t."""
        return torch.full_like(t, -self.c0)

    def velocity(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The exact field ``sum_k gamma_k (m_k + (S_k'/S_k)(x - t m_k))``, shape (n, d)."""
        a, m, s = self._components(t, x)
        gamma = torch.softmax(self.target.component_log_probs(x, m, s), -1)  # (n, K)
        rate = a * (self.target.stds**2 - self.base_scale**2) / s**2  # S'/S, (n, K)
        u = self.target.means + rate.unsqueeze(-1) * (x.unsqueeze(-2) - m)  # (n, K, d)
        return (gamma.unsqueeze(-1) * u).sum(-2)

    def gradient_flow_velocity(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The same exact field (so a :class:`FisherRaoModel` with this curve and no network is exact)."""
        return self.velocity(t, x)
