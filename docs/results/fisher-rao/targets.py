"""The two targets of the Fisher-Rao runs, with exact samplers, exact log Z and mode labels.

* ``gmm40``: FAB's 40-mode mixture in 2-D (notes §1.10): means ``(rand(40, 2) - 0.5) * 80`` in float32 from a
  generator seeded with 0, std softplus(1) (float32) per coordinate, equal weights; u = -log p, log Z = 0.
  Defined here until ``get_system("gmm40")`` is on main (same recipe as the systems branch).
* ``manywell8``: the first 8 coordinates of FAB's ManyWell: 4 pairs of (double well, Gaussian),
  ``u = sum_j (a x_j + b x_j^2 + c x_j^4 + y_j^2 / 2)``, a = -0.5, b = -6, c = 1; 16 modes (signs of the x_j).
  The 1-D double-well integral is done by quadrature, and exact samples by inverse CDF on a fine grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from boltzflow.training.fisher_rao_gmm import GaussianMixture

A, B, C = -0.5, -6.0, 1.0


@dataclass
class Target:
    """A model target: energy, exact sampler, exact log Z, mode labels and their exact probabilities."""

    name: str
    dim: int
    energy: Callable[[Tensor], Tensor]
    sample: Callable[[int, torch.Generator], Tensor]
    log_z: float
    labels: Callable[[Tensor], Tensor]
    mode_probs: Tensor
    box: tuple[list[float], list[float]]
    scales: dict[str, float]
    mixture: GaussianMixture | None = None


def gmm40() -> Target:
    g = torch.Generator().manual_seed(0)
    means = ((torch.rand((40, 2), generator=g, dtype=torch.float32) - 0.5) * 2 * 40).double()
    std = float(torch.nn.functional.softplus(torch.tensor(1.0, dtype=torch.float32)))
    gmm = GaussianMixture(torch.ones(40), means, torch.full((40,), std))
    # exact probability of each nearest-mean cell (close means share mass), from 2e6 exact samples
    ref = gmm.sample(2_000_000, torch.Generator().manual_seed(123))
    probs = torch.bincount(gmm.nearest_component(ref), minlength=40).double() / ref.shape[0]
    scales = {"x_scale": 25.0, "velocity_scale": 30.0, "phi_scale": 50.0, "rate_scale": 50.0}
    box = ([-50.0] * 2, [50.0] * 2)
    return Target("gmm40", 2, gmm.energy, gmm.sample, 0.0, gmm.nearest_component, probs, box, scales, gmm)


def _double_well_1d(x: np.ndarray) -> np.ndarray:
    return A * x + B * x**2 + C * x**4


def manywell8() -> Target:
    z1, _ = integrate.quad(lambda x: math.exp(-_double_well_1d(np.array(x))), -6, 6, points=[-1.7, 0, 1.7],
                           epsabs=0, epsrel=1e-13, limit=200)
    log_z = 4 * (math.log(z1) + 0.5 * math.log(2 * math.pi))
    grid = np.linspace(-4.0, 4.0, 400_001)
    dens = np.exp(-_double_well_1d(grid))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * (grid[1] - grid[0]))])
    cdf /= cdf[-1]
    p_pos = float(1.0 - np.interp(0.0, grid, cdf))

    def energy(x: Tensor) -> Tensor:
        w, y = x[..., 0::2], x[..., 1::2]
        return (A * w + B * w**2 + C * w**4 + 0.5 * y**2).sum(-1)

    def sample(n: int, generator: torch.Generator) -> Tensor:
        u = torch.rand(n, 4, generator=generator, dtype=torch.float64).numpy()
        w = torch.from_numpy(np.interp(u, cdf, grid))
        y = torch.randn(n, 4, generator=generator, dtype=torch.float64)
        return torch.stack([w, y], -1).reshape(n, 8)

    bits = 2 ** torch.arange(4)

    def labels(x: Tensor) -> Tensor:
        return ((x[:, 0::2] > 0).long() * bits).sum(-1)

    signs = ((torch.arange(16)[:, None] // bits) % 2).double()  # (16, 4): 1 where x_j > 0
    probs = (signs * p_pos + (1 - signs) * (1 - p_pos)).prod(-1)
    scales = {"x_scale": 2.0, "velocity_scale": 2.0, "phi_scale": 5.0, "rate_scale": 5.0}
    box = ([-3.0, -4.0] * 4, [3.0, 4.0] * 4)
    return Target("manywell8", 8, energy, sample, log_z, labels, probs, box, scales)


TARGETS = {"gmm40": gmm40, "manywell8": manywell8}
