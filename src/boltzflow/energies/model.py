"""Model potentials with exact normalisation: a Gaussian mixture and the many-well double-well chain.

* :class:`GaussianMixtureEnergy`: u(x) = −log Σ_k w_k N(x; μ_k, diag(s_k²)), normalised, so log Z = 0 for
  exp(−u). Used for GMM-40 (FAB: Midgley et al., ICLR 2023).
* :class:`ManyWellEnergy`: u(x) = Σ_j [a x_{2j} + b x_{2j}² + c x_{2j}⁴ + ½ x_{2j+1}²] over coordinate pairs
  (0-based, FAB's layout: the double-well coordinate first in each pair). Its partition function factorises
  into 1-D integrals; :func:`double_well_log_z` computes the double-well one by adaptive quadrature.

Both compute in the dtype and on the device of their input; parameters are stored in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from boltzflow.energies.base import Energy

LOG_2PI = math.log(2 * math.pi)


class GaussianMixtureEnergy(Energy):
    """Reduced energy of a normalised diagonal Gaussian mixture, u(x) = −log p(x).

    Args:
        means: component means μ_k, shape (K, d).
        scales: per-coordinate standard deviations s_k, shape (K, d), (K,) or a float (> 0).
        weights: mixture weights, shape (K,), positive (normalised here); equal weights when None.
    """

    def __init__(self, means: Tensor, scales: Tensor | float, weights: Tensor | None = None) -> None:
        super().__init__()
        mu = torch.as_tensor(means, dtype=torch.float64)
        if mu.ndim != 2 or mu.shape[0] < 1:
            raise ValueError(f"means must have shape (K, d) with K >= 1, got {tuple(mu.shape)}")
        s = torch.as_tensor(scales, dtype=torch.float64)
        s = (s[:, None] if s.ndim == 1 else s).expand_as(mu).clone()
        w = torch.ones(mu.shape[0], dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
        if not (bool((s > 0).all()) and bool((w > 0).all()) and w.shape == mu.shape[:1]):
            raise ValueError("GMM scales must be > 0 and weights must be > 0 with shape (K,)")
        self.event_shape = (mu.shape[1],)
        self.register_buffer("means", mu)
        self.register_buffer("scales", s)
        self.register_buffer("log_weights", torch.log(w / w.sum()))

    def component_log_prob(self, x: Tensor) -> Tensor:
        """log w_k + log N(x; μ_k, diag(s_k²)) per component, shape (..., d) -> (..., K)."""
        self.check_shape(x)
        mu, s, lw = (t.to(dtype=x.dtype, device=x.device) for t in (self.means, self.scales, self.log_weights))
        z = (x[..., None, :] - mu) / s
        return lw - 0.5 * (z**2).sum(-1) - torch.log(s).sum(-1) - 0.5 * x.shape[-1] * LOG_2PI

    def energy(self, x: Tensor) -> Tensor:
        """u(x) = −log p(x), shape (..., d) -> (...)."""
        return -torch.logsumexp(self.component_log_prob(x), dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Exact samples and their component labels: shapes (n, d) float64 and (n,) int64."""
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.event_shape[0], generator=generator, dtype=torch.float64)
        return self.means[k] + self.scales[k] * noise, k


def double_well_1d(x: Tensor, a: float, b: float, c: float) -> Tensor:
    """The double-well coordinate's energy a x + b x² + c x⁴ (elementwise)."""
    x2 = x * x
    return a * x + b * x2 + c * x2 * x2


class ManyWellEnergy(Energy):
    """Many-well energy: ``dim / 2`` independent 2-D double wells (FAB, Midgley et al. 2023).

    Args:
        dim: even number of coordinates (32 for ManyWell-32).
        a, b, c: double-well coefficients (FAB: −0.5, −6, 1; the deeper well is at x ≈ +1.7).
    """

    def __init__(self, dim: int = 32, a: float = -0.5, b: float = -6.0, c: float = 1.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"many-well dim must be an even number >= 2, got {dim}")
        if not c > 0:
            raise ValueError(f"the quartic coefficient c must be > 0 (normalisable), got {c}")
        self.event_shape = (int(dim),)
        self.a, self.b, self.c = float(a), float(b), float(c)

    def energy(self, x: Tensor) -> Tensor:
        """u(x), shape (..., dim) -> (...)."""
        self.check_shape(x)
        return double_well_1d(x[..., 0::2], self.a, self.b, self.c).sum(-1) + 0.5 * (x[..., 1::2] ** 2).sum(-1)

    def log_z(self) -> float:
        """Exact log ∫ exp(−u) dx = (dim/2) · (log Z_dw + ½ log 2π)."""
        return self.event_shape[0] // 2 * (double_well_log_z(self.a, self.b, self.c) + 0.5 * LOG_2PI)

    def extra_repr(self) -> str:
        return f"dim={self.event_shape[0]}, a={self.a}, b={self.b}, c={self.c}"


def double_well_log_z(a: float = -0.5, b: float = -6.0, c: float = 1.0) -> float:
    """log ∫ exp(−(a x + b x² + c x⁴)) dx over the real line, by adaptive Gauss–Kronrod quadrature.

    The integrand is scaled by its maximum (found on a grid and refined by Newton steps) so that quadrature works
    on O(1) values; the two half-lines are integrated separately with a relative tolerance of 1e-13. For FAB's
    constants this gives Z = 11784.50927... (FAB quotes 11784.50927).
    """
    grid = np.linspace(-10.0, 10.0, 20001)
    f = -(a * grid + b * grid**2 + c * grid**4)
    x0 = float(grid[np.argmax(f)])
    for _ in range(20):  # Newton on f'(x) = -(a + 2 b x + 4 c x^3)
        x0 -= (a + 2 * b * x0 + 4 * c * x0**3) / (2 * b + 12 * c * x0**2)
    f_max = -(a * x0 + b * x0**2 + c * x0**4)

    def integrand(x: float) -> float:
        return math.exp(-(a * x + b * x * x + c * x**4) - f_max)

    total = 0.0
    for lo, hi in ((-np.inf, x0), (x0, np.inf)):
        value, _ = integrate.quad(integrand, lo, hi, epsabs=0.0, epsrel=1e-13, limit=500)
        total += value
    return math.log(total) + f_max
