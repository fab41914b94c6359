"""Overdamped Langevin dynamics by Euler–Maruyama, for trajectories of toy systems (paper 001 Fig. 2).

dx = −D ∇u(x) dt + sqrt(2 D dt) ξ,  ξ ~ N(0, I),

with u the reduced energy (kT) and D the diffusion constant. Its stationary law is ∝ exp(−u). The paper writes
the same SDE as dX = −∇U dt + sqrt(2/β) dW; with u = βU that is D = 1/β, and t is then the paper's time.
Euler–Maruyama has an O(dt) bias in the sampled distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzflow.energies.base import Energy
from boltzflow.errors import BoltzflowError


def _force_fn(energy: Energy | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if isinstance(energy, Energy):
        return energy.force

    def force(x: Tensor) -> Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x).sum(), x)
        return -grad

    return force


def overdamped_langevin(
    energy: Energy | Callable[[Tensor], Tensor],
    x0: Tensor,
    n_steps: int,
    dt: float,
    diffusion: float = 1.0,
    save_every: int = 1,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """Integrate ``n_chains`` independent overdamped Langevin trajectories.

    Args:
        energy: an :class:`Energy` (its ``force`` is used) or a callable (..., D) -> (...) giving the reduced
            energy (kT), differentiated by autograd.
        x0: starting points, shape (n_chains, D).
        n_steps: number of Euler–Maruyama steps.
        dt: time step (the SDE's time unit; with ``diffusion = 1/β`` the paper's time).
        diffusion: diffusion constant D > 0 (length² per unit time).
        save_every: keep every ``save_every``-th step.
        generator: random source for the noise.
        progress: show a tqdm progress bar.

    Returns:
        Frames at steps 0, save_every, 2·save_every, ..., shape (n_steps // save_every + 1, n_chains, D);
        frame 0 is ``x0``.

    Raises:
        BoltzflowError: when the trajectory becomes non-finite (reduce ``dt``).
    """
    if x0.dim() != 2:
        raise ValueError(f"x0 must have shape (n_chains, D), got {tuple(x0.shape)}")
    if n_steps < 0 or save_every < 1:
        raise ValueError(f"need n_steps >= 0 and save_every >= 1, got {n_steps}, {save_every}")
    if not (dt > 0 and diffusion > 0):
        raise ValueError(f"dt and diffusion must be positive, got dt={dt}, diffusion={diffusion}")
    force = _force_fn(energy)
    drift, noise_scale = diffusion * dt, math.sqrt(2.0 * diffusion * dt)
    x = x0.detach().clone()
    frames = [x]
    for k in tqdm(range(1, n_steps + 1), disable=not progress, desc="langevin"):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + drift * force(x) + noise_scale * noise
        if k % save_every == 0:
            if not torch.isfinite(x).all():
                raise BoltzflowError(
                    f"Langevin trajectory became non-finite by step {k}; reduce dt (now {dt})"
                )
            frames.append(x)
    return torch.stack(frames)
