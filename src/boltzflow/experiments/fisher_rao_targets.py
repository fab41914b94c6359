"""The two targets of the Fisher–Rao runs (issue 16, item 4), built from the registered systems.

* ``gmm40``: FAB's 40-mode mixture in 2-D (:mod:`boltzflow.systems.gmm`); log Z = 0; mode = nearest mean, with
  the exact probability of every nearest-mean cell (close means share mass); the mixture is also handed to the
  evaluation as a :class:`~boltzflow.training.fisher_rao_gmm.GaussianMixture`, whose OU curve is known in closed
  form (the learned gradient-flow field is compared with it).
* ``manywell8``: the first 8 coordinates of FAB's ManyWell (:class:`~boltzflow.systems.manywell.ManyWellSystem`
  with dim = 8): 4 independent (double well, Gaussian) pairs, 16 modes (the signs of the double-well
  coordinates), exact log Z by quadrature and an exact inverse-CDF sampler.

Each target carries what the curve model needs and the systems do not know: the box that covers the modes (the
residual's points) and the typical sizes of x, v, phi and C(t) (the networks' input and output scales).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from boltzflow.systems.manywell import ManyWellSystem
from boltzflow.systems.registry import get_system
from boltzflow.training.fisher_rao_gmm import GaussianMixture

TARGET_NAMES = ("gmm40", "manywell8")


@dataclass
class CurveTarget:
    """A model target: energy, exact sampler, exact log Z, mode labels with their exact probabilities, box, scales.

    Attributes:
        name: ``gmm40`` or ``manywell8``.
        dim: d.
        energy: u on (n, d) -> (n,), kT.
        sample: ``(n, generator) -> (n, d)`` exact samples, float64.
        log_z: exact log Z of exp(-u).
        labels: mode index of each point, (n, d) -> (n,).
        mode_probs: exact probability of each mode, shape (K,).
        box: ``(lo, hi)`` corners of the box of residual points, each of length d.
        scales: ``x_scale``, ``velocity_scale``, ``phi_scale``, ``rate_scale`` for
            :func:`~boltzflow.training.fisher_rao.build_model`.
        mixture: the target as a Gaussian mixture (exact OU curve), or None.
    """

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


def gmm40() -> CurveTarget:
    """GMM-40 from the registry, box [-50, 50]^2."""
    system = get_system("gmm40")
    k = system.n_modes
    mixture = GaussianMixture(torch.ones(k), system.means, torch.full((k,), system.scale))
    scales = {"x_scale": 25.0, "velocity_scale": 30.0, "phi_scale": 50.0, "rate_scale": 50.0}
    return CurveTarget("gmm40", 2, system.flat_energy(), system.sample_exact, system.log_z, system.mode_of,
                       system.mode_reference(), ([-50.0] * 2, [50.0] * 2), scales, mixture)


def manywell8() -> CurveTarget:
    """ManyWell with 8 coordinates (4 pairs, 16 modes), box [-3, 3] x [-4, 4] per pair."""
    system = ManyWellSystem(8, -0.5, -6.0, 1.0)
    p = system.grid.p_positive
    bits = 2 ** torch.arange(system.n_pairs)
    deep = ((torch.arange(2**system.n_pairs)[:, None] // bits) % 2).double()  # 1 where x_{2j} > 0
    probs = (deep * p + (1 - deep) * (1 - p)).prod(-1)
    scales = {"x_scale": 2.0, "velocity_scale": 2.0, "phi_scale": 5.0, "rate_scale": 5.0}
    box = ([-3.0, -4.0] * system.n_pairs, [3.0, 4.0] * system.n_pairs)
    return CurveTarget("manywell8", 8, system.flat_energy(), system.sample_exact, system.log_z, system.mode_of,
                       probs, box, scales)


def get_target(name: str) -> CurveTarget:
    """One of :data:`TARGET_NAMES`.

    Raises:
        ValueError: an unknown name.
    """
    if name not in TARGET_NAMES:
        raise ValueError(f"targets: unknown target {name!r}; known: {', '.join(TARGET_NAMES)}")
    return gmm40() if name == "gmm40" else manywell8()
