"""Theorem 1 of paper 001: a C¹ cap that leaves an energy unchanged below 1/ε and flattens it above 2/ε."""

from __future__ import annotations

import torch
from torch import Tensor

from boltzflow.energies.base import Energy


def smoothstep(t: Tensor) -> Tensor:
    """C¹ ramp h(t): 0 for t ≤ 0, 3t² − 2t³ on [0, 1], 1 for t ≥ 1 (h' = 0 at both ends); any shape."""
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class HighEnergyCap(Energy):
    """U_ε = (1 − ζ) U + ζ · 2/ε with ζ = h((U − 1/ε) / (1/ε)), the regularisation in the proof of Theorem 1.

    The thresholds 1/ε and 2/ε apply to the wrapped energy's *reduced* value u (kT), i.e. to whatever
    ``energy.energy`` returns. Then (paper's labels):

    (i) U_ε is C¹, and Lipschitz wherever U is: |∇U_ε| ≤ 2.5 |∇U| on the band 1/ε < U < 2/ε, 0 above it.
    (ii) U_ε ≥ min(U, 1/ε) ≥ inf U for every ε, a uniform lower bound.
    (iii) U_ε → U pointwise as ε → 0 (U_ε = 2/ε → +inf where U = +inf).
    (iv) U_ε = U exactly wherever U ≤ 1/ε.

    Configurations with U = +inf (collisions) get exactly 2/ε and a zero, finite gradient: capped points are
    re-evaluated with their input detached, so a NaN in the wrapped energy's backward pass cannot leak. A NaN
    energy stays NaN.

    Args:
        energy: any :class:`Energy`.
        epsilon: regularisation ε > 0, in 1/kT; the cap starts at u = 1/ε and is flat from u = 2/ε.
    """

    def __init__(self, energy: Energy, epsilon: float) -> None:
        super().__init__()
        if not epsilon > 0:
            raise ValueError(f"HighEnergyCap needs epsilon > 0, got {epsilon}")
        self.wrapped = energy
        self.epsilon = float(epsilon)
        self.event_shape = tuple(energy.event_shape)

    @property
    def threshold(self) -> float:
        """1/ε: below it the energy is untouched, kT."""
        return 1.0 / self.epsilon

    def energy(self, x: Tensor) -> Tensor:
        """Capped reduced energy, shape (..., *event_shape) -> (...), kT."""
        u = self.wrapped.energy(x)
        capped = u.detach() >= 2.0 * self.threshold
        if capped.any() and torch.is_grad_enabled() and x.requires_grad:
            mask = capped.reshape(capped.shape + (1,) * len(self.event_shape))
            u = self.wrapped.energy(torch.where(mask, x.detach(), x))
        return cap_reduced_energy(u, self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


def cap_reduced_energy(u: Tensor, epsilon: float) -> Tensor:
    """Theorem 1's map u ↦ (1 − ζ) u + ζ · 2/ε with ζ = h(ε u − 1), elementwise, any shape.

    Args:
        u: reduced energies, any shape, kT; +inf allowed.
        epsilon: ε > 0.

    Returns:
        Capped energies, same shape; the gradient w.r.t. ``u`` is 0 (never NaN) where u ≥ 2/ε.
    """
    low, high = 1.0 / epsilon, 2.0 / epsilon
    in_band = u < high
    u_safe = torch.where(in_band, u, torch.full_like(u, low))  # inf never enters the blend or its backward
    zeta = smoothstep((u_safe - low) / low)
    blended = (1.0 - zeta) * u_safe + zeta * high
    return torch.where(in_band, blended, torch.full_like(u, high))
