"""ManyWell-32: 16 independent 2-D double wells (FAB, Midgley et al. ICLR 2023), with exact log Z and sampler.

u(x) = Σ_{j=0}^{15} [a x_{2j} + b x_{2j}² + c x_{2j}⁴ + ½ x_{2j+1}²], a = −0.5, b = −6, c = 1 (FAB's
``ManyWellEnergy(dim=32)``; the double-well coordinate comes first in each pair, 0-based). It has 2¹⁶ modes; the
deeper well of each pair is at x ≈ +1.7.

* log Z = 16 (log Z_dw + ½ log 2π), with Z_dw = ∫ exp(−(a x + b x² + c x⁴)) dx by adaptive quadrature
  (:func:`~boltzflow.energies.model.double_well_log_z`; FAB quotes Z_dw = 11784.50927).
* Exact samples: the Gaussian coordinates by ``randn``; the double-well coordinates by inverse CDF on a grid
  (:class:`DoubleWellGrid`): 2¹⁶ equal cells on [lo, hi], where the density has fallen below e⁻⁶⁰ of its maximum
  at both ends; the mass of every cell by 8-point Gauss–Legendre (relative error ~1e-15); inside a cell the CDF is
  interpolated linearly. The sampled CDF differs from the exact one by at most ``DoubleWellGrid.cdf_error``
  (6.9e-9 for FAB's constants, measured at cell midpoints, where a linear interpolant of a smooth CDF is worst),
  far below what any sample can resolve (a KS test with 10¹⁰ samples resolves ~1e-5).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from boltzflow.energies.model import ManyWellEnergy, double_well_1d
from boltzflow.systems.base import Observable, Reference, System
from boltzflow.systems.registry import register

FAB_MANYWELL = {"a": -0.5, "b": -6.0, "c": 1.0}


class DoubleWellGrid(NamedTuple):
    """Inverse-CDF table of p(x) ∝ exp(−(a x + b x² + c x⁴)).

    Attributes:
        nodes: cell boundaries, shape (m + 1,), float64.
        cdf: exact CDF at the nodes (0 at the first, 1 at the last), shape (m + 1,).
        cdf_error: max |linear-interpolated CDF − exact CDF| at the cell midpoints.
        p_positive: P(x > 0) (the deeper well for a < 0).
    """

    nodes: Tensor
    cdf: Tensor
    cdf_error: float
    p_positive: float


def double_well_grid(a: float, b: float, c: float, n_cells: int = 2**16, cut: float = 60.0) -> DoubleWellGrid:
    """Build the inverse-CDF table (see the module docstring for the construction and its error)."""
    f = lambda x: -double_well_1d(x, a, b, c)  # noqa: E731  (log density up to a constant)
    probe = np.linspace(-20.0, 20.0, 400_001)
    fp = f(probe)
    inside = probe[fp > fp.max() - cut]
    lo, hi = float(inside[0]) - 0.01, float(inside[-1]) + 0.01
    nodes = np.linspace(lo, hi, n_cells + 1)
    h = nodes[1] - nodes[0]
    t, w = np.polynomial.legendre.leggauss(8)

    def cell_mass(left: np.ndarray, width: float) -> np.ndarray:  # ∫ over [left, left + width] of exp(f − f_max)
        x = left[:, None] + 0.5 * width * (t + 1)
        return 0.5 * width * (np.exp(f(x) - fp.max()) * w).sum(-1)

    mass = cell_mass(nodes[:-1], h)
    cdf = np.concatenate([[0.0], np.cumsum(mass)])
    total = cdf[-1]
    mid_exact = (cdf[:-1] + cell_mass(nodes[:-1], 0.5 * h)) / total
    cdf = cdf / total
    error = float(np.abs(0.5 * (cdf[:-1] + cdf[1:]) - mid_exact).max())
    p_pos = float(1.0 - np.interp(0.0, nodes, cdf))
    return DoubleWellGrid(torch.as_tensor(nodes), torch.as_tensor(cdf), error, p_pos)


def inverse_cdf(grid: DoubleWellGrid, u: Tensor) -> Tensor:
    """Map uniforms ``u`` in [0, 1) (any shape, float64) through the piecewise-linear inverse CDF."""
    i = torch.searchsorted(grid.cdf, u, right=True).clamp(1, len(grid.cdf) - 1) - 1
    c0, c1 = grid.cdf[i], grid.cdf[i + 1]
    frac = torch.where(c1 > c0, (u - c0) / (c1 - c0), torch.full_like(u, 0.5))
    return grid.nodes[i] + frac * (grid.nodes[i + 1] - grid.nodes[i])


class ManyWellSystem(System):
    """ManyWell-``dim``: ``dim / 2`` independent double-well + Gaussian pairs, exact log Z and sampler.

    Args:
        dim: even number of coordinates.
        a, b, c: double-well constants (FAB: −0.5, −6, 1).
    """

    def __init__(self, dim: int = 32, a: float = -0.5, b: float = -6.0, c: float = 1.0) -> None:
        self._energy = ManyWellEnergy(dim, a, b, c)
        self.name = f"manywell{dim}"
        self.event_shape = (int(dim),)
        self.description = f"{dim // 2} independent 2-D double wells, 2^{dim // 2} modes (FAB many-well)"
        self.log_z = self._energy.log_z()

    @property
    def n_pairs(self) -> int:
        return self.event_shape[0] // 2

    def energy(self) -> ManyWellEnergy:
        return self._energy

    @cached_property
    def grid(self) -> DoubleWellGrid:
        """The inverse-CDF table of the double-well coordinate."""
        e = self._energy
        return double_well_grid(e.a, e.b, e.c)

    def sample_exact(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples, shape (n, dim), float64 (inverse CDF on the grid for the double-well coordinates)."""
        u = torch.rand(int(n), self.n_pairs, generator=generator, dtype=torch.float64)
        g = torch.randn(int(n), self.n_pairs, generator=generator, dtype=torch.float64)
        return torch.stack([inverse_cdf(self.grid, u), g], -1).flatten(1)

    def wells(self, x: Tensor) -> Tensor:
        """Well of each pair (1: x_{2j} > 0, the deeper well; 0: the other), (n, dim) -> (n, dim/2) int64."""
        return (x[..., 0::2] > 0).long()

    def mode_of(self, x: Tensor) -> Tensor:
        """Mode index Σ_j wells_j 2^j in [0, 2^{dim/2}), (n, dim) -> (n,) int64."""
        return (self.wells(x) << torch.arange(self.n_pairs, device=x.device)).sum(-1)

    def observables(self) -> dict[str, Observable]:
        return {"wells": Observable("wells", "index", self.wells), "mode": Observable("mode", "index", self.mode_of)}

    def references(self) -> dict[str, Reference]:
        return {"exact": Reference("exact", "sampler", "exact sampler (inverse CDF on a 2^16-cell grid per double "
                                   "well, CDF error < 1e-8; Gaussian coordinates exact); exact log Z by quadrature",
                                   lambda: self.sample_exact)}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "n_modes": f"2^{self.n_pairs}",
                "p_deep_well": self.grid.p_positive, "log_z_per_pair": self.log_z / self.n_pairs}


@register("manywell32", summary="32-D many-well, 16 double wells (FAB), exact sampler and log Z, reduced units")
def _manywell32() -> ManyWellSystem:
    return ManyWellSystem(32, **FAB_MANYWELL)

