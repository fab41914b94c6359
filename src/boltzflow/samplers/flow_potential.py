"""A trained flow as an MD potential: ``U(x) = kT u_θ(x)`` with ``u_θ = -log q(x)``, forces by autograd.

It lives in ``samplers/`` because it joins a flow to the dynamics of :mod:`boltzflow.samplers.dynamics`; the
flow knows no physics and no energy module imports it (the layering rule of ``docs/architecture.md``).

For an internal-coordinate flow (:mod:`boltzflow.flows.ic_flow`) ``log q`` of flattened Cartesian positions
includes the log-Jacobian of the internal-coordinate map, so ``u_θ`` is a potential of the Cartesian positions
(invariant under rigid motions: the forces have no net force or torque), defined up to the constant
``log(8π²V)`` that no force or energy difference sees (paper 004 §6.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

BOLTZMANN_KJ_PER_MOL_K = 0.008314462618  # k_B N_A, kJ/(mol K)


class FlowPotential:
    """``x (r, *event_shape) -> (U, F)``, kJ/mol and kJ/mol/nm at ``temperature_kelvin`` (a
    :data:`~boltzflow.samplers.dynamics.Potential`); :meth:`reduced` gives u_θ in kT.

    Args:
        flow: the model q on flattened configurations (r, prod(event_shape)) (eval mode; not trained here).
        event_shape: shape of one configuration, e.g. (n_atoms, 3).
        temperature_kelvin: T of the ensemble the flow models (its kT converts u_θ to kJ/mol).
        chunk_size: configurations per flow call.
    """

    def __init__(self, flow: torch.nn.Module, event_shape: Sequence[int], temperature_kelvin: float,
                 chunk_size: int = 4096) -> None:
        if not temperature_kelvin > 0:
            raise ValueError(f"temperature_kelvin must be > 0, got {temperature_kelvin}")
        self.flow, self.event_shape = flow, tuple(int(s) for s in event_shape)
        self.kt = BOLTZMANN_KJ_PER_MOL_K * float(temperature_kelvin)
        self.chunk_size = int(chunk_size)

    def reduced(self, x: Tensor) -> Tensor:
        """u_θ(x) = -log q(x), kT, shape (r,) for x (r, *event_shape) (with the graph when x requires grad)."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (r, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        return -self.flow.log_prob(x.flatten(1))

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        us, fs = [], []
        for chunk in x.split(self.chunk_size):
            with torch.enable_grad():
                xg = chunk.detach().requires_grad_(True)
                u = self.reduced(xg)
                (grad,) = torch.autograd.grad(u.sum(), xg)
            us.append(u.detach())
            fs.append(-grad)
        return self.kt * torch.cat(us), self.kt * torch.cat(fs)


__all__ = ["FlowPotential"]
