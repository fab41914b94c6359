"""GMM-40: the 40-mode Gaussian mixture in 2-D of FAB (Midgley et al., ICLR 2023), with its exact references.

Definition, reproducing FAB's ``GMM(dim=2, n_mixes=40, loc_scaling=40, log_var_scaling=1.0)`` built right after
``torch.manual_seed(0)`` (``experiments/gmm/run.py``) and then cast with ``.double()``:

* means: ``(torch.rand((40, 2)) - 0.5) * 2 * 40`` in float32 from a generator seeded with 0 (the same stream as
  the global seed), cast to float64: uniform in [−40, 40]²;
* standard deviation softplus(1) = 1.3132617 per coordinate (computed in float32 as FAB does, then cast);
* equal weights 1/40; u(x) = −log p(x) is normalised, so log Z = 0 exactly.

Some means are close (the nearest pair is 1.18 apart, less than one standard deviation), so the visible modes are
fewer than 40 and the nearest-mean cells do not each hold 1/40 (they hold 0.02433–0.02558);
:meth:`GaussianMixtureSystem.mode_reference` gives their exact probabilities
(:func:`boltzflow.eval.modes.gaussian_voronoi_weights`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from boltzflow.energies.model import GaussianMixtureEnergy
from boltzflow.systems.base import Observable, Reference, System
from boltzflow.systems.registry import register


def fab_gmm_means(n_modes: int = 40, dim: int = 2, loc_scaling: float = 40.0, seed: int = 0) -> Tensor:
    """FAB's GMM means: float32 uniform draws in [−loc_scaling, loc_scaling]^dim, cast to float64, (n_modes, dim)."""
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand((n_modes, dim), generator=g, dtype=torch.float32) - 0.5) * 2 * loc_scaling).double()


def fab_gmm_scale(log_var_scaling: float = 1.0) -> float:
    """softplus(log_var_scaling) evaluated in float32 as FAB does (1.3132616 for 1.0), as a Python float."""
    return float(torch.nn.functional.softplus(torch.tensor(log_var_scaling, dtype=torch.float32)))


class GaussianMixtureSystem(System):
    """An equal-weight isotropic Gaussian mixture with exact sampler, log Z = 0 and exact mode weights.

    Args:
        name: registry name.
        means: shape (K, d), float64.
        scale: standard deviation of every coordinate of every component.
        description: one line for listings.
    """

    log_z = 0.0

    def __init__(self, name: str, means: Tensor, scale: float, description: str = "") -> None:
        self.name = name
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.scale = float(scale)
        self.event_shape = (self.means.shape[1],)
        self.description = description
        self._energy = GaussianMixtureEnergy(self.means, self.scale)

    @property
    def n_modes(self) -> int:
        return len(self.means)

    def energy(self) -> GaussianMixtureEnergy:
        return self._energy

    def sample_exact(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples, shape (n, d), float64: a uniform component, then its Gaussian."""
        return self._energy.sample(int(n), generator)[0]

    def mode_of(self, x: Tensor) -> Tensor:
        """Index of the nearest mean, (n, d) -> (n,) int64."""
        from boltzflow.eval.modes import nearest_mode

        return nearest_mode(x, self.means)

    @cached_property
    def _mode_reference(self) -> Tensor:
        from boltzflow.eval.modes import gaussian_voronoi_weights

        return gaussian_voronoi_weights(self.means, self.scale)

    def mode_reference(self) -> Tensor:
        """Exact probability of each nearest-mean cell, shape (K,), float64 (2-D mixtures only)."""
        return self._mode_reference.clone()

    def observables(self) -> dict[str, Observable]:
        return {"mode": Observable("mode", "index", self.mode_of)}

    def references(self) -> dict[str, Reference]:
        return {"exact": Reference("exact", "sampler", "exact sampler (mixture component, then Gaussian); log Z = 0",
                                   lambda: self.sample_exact)}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "n_modes": self.n_modes, "scale": self.scale}


@register("gmm40", summary="40-mode Gaussian mixture in 2-D (FAB), exact sampler and log Z = 0, reduced units")
def _gmm40() -> GaussianMixtureSystem:
    return GaussianMixtureSystem("gmm40", fab_gmm_means(), fab_gmm_scale(),
                                 "40-mode Gaussian mixture in 2-D, means uniform in [-40, 40]^2 (FAB, seed 0)")
