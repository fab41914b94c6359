"""Inertial molecular dynamics in torch: velocity-Verlet (NVE) and BAOAB Langevin (NVT) for any potential.

Written by hand (some 100 lines) because the potentials here are torch functions with autograd forces (a
flow's ``-log q``, paper 004 §6.5), which OpenMM cannot call without a round trip per step; the schemes are the
textbook ones, batched over independent replicas:

* velocity Verlet (symplectic, time reversible, energy error O(dt²) without drift for smooth potentials);
* BAOAB Langevin (Leimkuhler & Matthews 2013): half kick, half drift, exact Ornstein-Uhlenbeck step of the
  velocities, half drift, half kick. Its configurational distribution is exp(-U/kT) up to O(dt²).
  Paper 004's code uses the same splitting without the A halves around O.

Units must be consistent; for molecules: positions nm, velocities nm/ps, time ps, masses amu (g/mol), energies
kJ/mol, forces kJ/mol/nm (1 kJ/mol = 1 amu nm²/ps²). A potential is a function ``x -> (U, F)`` with ``x`` of
shape (r, *event), ``U`` (r,) and ``F = -∇U`` (r, *event) (:func:`autograd_potential` makes one from U alone).

Samplers are functions over a small state (:class:`MDState`, ``step`` functions) with explicit generators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError

Potential = Callable[[Tensor], tuple[Tensor, Tensor]]  # x (r, *event) -> (U (r,), F (r, *event))


class MDState(NamedTuple):
    """Positions, velocities and the potential energy and force at the positions (all detached).

    Attributes:
        x: positions, shape (r, *event).
        v: velocities, shape (r, *event).
        u: potential energy, shape (r,).
        f: force -∇U, shape (r, *event).
    """

    x: Tensor
    v: Tensor
    u: Tensor
    f: Tensor


class Trajectory(NamedTuple):
    """Frames of a run, every ``save_every`` steps (frame 0 is the start).

    Attributes:
        x: positions, shape (t, r, *event).
        potential: potential energies, shape (t, r).
        kinetic: kinetic energies, shape (t, r).
        time: times, shape (t,).
        final: the state after the last step.
    """

    x: Tensor
    potential: Tensor
    kinetic: Tensor
    time: Tensor
    final: MDState

    @property
    def total(self) -> Tensor:
        """Total energy, shape (t, r)."""
        return self.potential + self.kinetic


def autograd_potential(energy: Callable[[Tensor], Tensor]) -> Potential:
    """``x -> (U(x), -∇U(x))`` from an energy function ``x (r, *event) -> (r,)`` by autograd."""

    def potential(x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            u = energy(xg)
            (grad,) = torch.autograd.grad(u.sum(), xg)
        return u.detach(), -grad

    return potential


def _expand(masses: Tensor, x: Tensor) -> Tensor:
    """Masses broadcast against x: (n_atoms,) for (r, n_atoms, 3), or any shape that broadcasts."""
    m = masses.to(x)
    return m[..., None] if m.ndim == 1 and x.ndim == 3 else m


def kinetic_energy(v: Tensor, masses: Tensor) -> Tensor:
    """½ Σ m v², shape (r,) for velocities (r, *event)."""
    return 0.5 * (_expand(masses, v) * v**2).flatten(1).sum(-1)


def maxwell_boltzmann(masses: Tensor, kt: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Velocities drawn from exp(-½ m v² / kT), shape of ``like`` (r, *event)."""
    noise = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    return noise * torch.sqrt(kt / _expand(masses, like))


def init_state(potential: Potential, x: Tensor, v: Tensor) -> MDState:
    """The state at positions ``x`` with velocities ``v`` (evaluates the potential once)."""
    u, f = potential(x.detach())
    return MDState(x.detach(), v.detach(), u.detach(), f.detach())


def verlet_step(state: MDState, potential: Potential, masses: Tensor, dt: float) -> MDState:
    """One velocity-Verlet step of length ``dt``: kick ½, drift, force, kick ½."""
    inv_m = 1.0 / _expand(masses, state.x)
    v = state.v + 0.5 * dt * state.f * inv_m
    x = state.x + dt * v
    u, f = potential(x)
    return MDState(x, v + 0.5 * dt * f * inv_m, u.detach(), f.detach())


def baoab_step(state: MDState, potential: Potential, masses: Tensor, dt: float, friction: float, kt: float,
               generator: torch.Generator | None) -> MDState:
    """One BAOAB Langevin step of length ``dt`` with collision rate ``friction`` (1/time) at ``kt``."""
    m = _expand(masses, state.x)
    v = state.v + 0.5 * dt * state.f / m
    x = state.x + 0.5 * dt * v
    c = math.exp(-friction * dt)
    noise = torch.randn(v.shape, generator=generator, dtype=v.dtype, device=v.device)
    v = c * v + math.sqrt(1 - c * c) * torch.sqrt(kt / m) * noise
    x = x + 0.5 * dt * v
    u, f = potential(x)
    return MDState(x, v + 0.5 * dt * f / m, u.detach(), f.detach())


def run(potential: Potential, state: MDState, masses: Tensor, dt: float, n_steps: int, save_every: int = 1,
        friction: float = 0.0, kt: float | None = None, generator: torch.Generator | None = None,
        t0: float = 0.0, stop_on_nonfinite: bool = True) -> Trajectory:
    """Integrate ``n_steps`` steps: velocity Verlet (NVE) when ``friction`` is 0, BAOAB Langevin otherwise.

    Args:
        potential: ``x -> (U, F)``.
        state: the start (:func:`init_state`).
        masses: (n_atoms,) for molecules (r, n_atoms, 3), or anything broadcasting against x.
        dt: time step; n_steps: steps; save_every: frame interval in steps.
        friction: Langevin collision rate (1/time); 0 gives NVE.
        kt: thermal energy (needed with friction).
        generator: noise source for Langevin.
        t0: time of the start.
        stop_on_nonfinite: raise when a saved frame is not finite; False lets such replicas run on as NaN (the
            replicas are independent, so the others are unaffected), to record which runs fell apart.

    Raises:
        BoltzflowError: the positions or energies became non-finite (names the step; reduce dt).
    """
    if not (dt > 0 and n_steps >= 0 and save_every >= 1 and friction >= 0):
        raise ValueError(f"need dt > 0, n_steps >= 0, save_every >= 1, friction >= 0; got {dt}, {n_steps}, "
                         f"{save_every}, {friction}")
    if friction > 0 and not (kt is not None and kt > 0):
        raise ValueError(f"Langevin dynamics (friction > 0) needs kt > 0, got {kt}")
    frames = [(state.x, state.u, kinetic_energy(state.v, masses), t0)]
    for k in range(1, n_steps + 1):
        if friction > 0:
            state = baoab_step(state, potential, masses, dt, friction, kt, generator)
        else:
            state = verlet_step(state, potential, masses, dt)
        if k % save_every == 0:
            if stop_on_nonfinite and not (torch.isfinite(state.x).all() and torch.isfinite(state.u).all()):
                raise BoltzflowError(f"dynamics became non-finite by step {k} (t = {t0 + k * dt:g}); reduce the "
                                     f"time step (now {dt:g})")
            frames.append((state.x, state.u, kinetic_energy(state.v, masses), t0 + k * dt))
    xs, us, ks, ts = zip(*frames, strict=True)
    return Trajectory(torch.stack(xs), torch.stack(us), torch.stack(ks), torch.tensor(ts, dtype=state.x.dtype), state)


def equilibrated_run(potential: Potential, x0: Tensor, masses: Tensor, kt: float, dt: float, n_equilibrate: int,
                     n_steps: int, save_every: int = 1, friction: float = 0.0, equilibrate_friction: float = 10.0,
                     generator: torch.Generator | None = None, stop_on_nonfinite: bool = True) -> Trajectory:
    """Paper 004 §6.5's protocol: Maxwell-Boltzmann velocities at ``kt``, ``n_equilibrate`` Langevin steps at
    ``equilibrate_friction``, then ``n_steps`` at ``friction`` (0: NVE) saved every ``save_every`` steps.

    Args:
        potential: ``x -> (U, F)``; x0: starts, shape (r, *event); masses: see :func:`run`.
        kt: thermal energy; dt: time step; generator: velocities and noise.

    Returns:
        the production trajectory (its time starts at ``n_equilibrate * dt``).
    """
    state = init_state(potential, x0, maxwell_boltzmann(masses, kt, x0, generator))
    if n_equilibrate > 0:
        state = run(potential, state, masses, dt, n_equilibrate, n_equilibrate, equilibrate_friction, kt,
                    generator, stop_on_nonfinite=stop_on_nonfinite).final
    return run(potential, state, masses, dt, n_steps, save_every, friction, kt, generator, t0=n_equilibrate * dt,
               stop_on_nonfinite=stop_on_nonfinite)


__all__ = ["MDState", "Potential", "Trajectory", "autograd_potential", "baoab_step", "equilibrated_run",
           "init_state", "kinetic_energy", "maxwell_boltzmann", "run", "verlet_step"]
