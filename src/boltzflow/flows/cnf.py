"""A continuous normalizing flow: x' = v(t, x) integrated jointly with the log-density.

For ``dx/dt = v_t(x)`` started at ``x_0 ~ rho_0``, the instantaneous change of variables gives
``d/dt log q_t(x_t) = -div v_t(x_t)``, so ``log q_1(x_1) = log rho_0(x_0) - int_0^1 div v_t(x_t) dt``
(Chen et al. 2018; FFJORD, Grathwohl et al. 2019). The divergence is exact (one autograd pass per coordinate)
in low dimension, or the Hutchinson estimate ``eps^T (dv/dx) eps`` with ``E[eps eps^T] = I`` and one probe
fixed per trajectory (FFJORD), which is unbiased but makes ``log q`` itself a random variable.

The ODE is solved by torchdiffeq (fixed-step RK4 on a uniform grid by default, or any of its adaptive
solvers such as ``dopri5``): a well-kept solver library, so nothing here is a hand-written integrator. The
flow knows no physics: it takes a velocity callable ``v(t, x)`` and a base distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

Velocity = Callable[[Tensor, Tensor], Tensor]
"""``v(t, x)``: t of shape () or (n,), x of shape (n, d) -> velocity, shape (n, d)."""

DIVERGENCES = ("exact", "hutchinson")


class IsotropicNormal(nn.Module):
    """N(0, scale^2 I) on R^d: the base rho_0 of a CNF, with energy ``|x|^2 / (2 scale^2)``.

    Args:
        dim: event dimension d.
        scale: standard deviation per coordinate (> 0), in the units of x.
    """

    def __init__(self, dim: int, scale: float = 1.0) -> None:
        super().__init__()
        if dim < 1 or not scale > 0:
            raise ValueError(f"IsotropicNormal needs dim >= 1 and scale > 0, got dim={dim}, scale={scale}")
        self.dim, self.scale = int(dim), float(scale)
        self.register_buffer("_anchor", torch.zeros((), dtype=torch.float64))  # follows .to(device, dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples, shape (n, d), on the module's device and dtype (float64 unless moved)."""
        a = self._anchor
        return self.scale * torch.randn(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)

    def energy(self, x: Tensor) -> Tensor:
        """``|x|^2 / (2 scale^2)``, shape (..., d) -> (...): minus the log density up to log_z."""
        return 0.5 * (x**2).sum(-1) / self.scale**2

    @property
    def log_z(self) -> float:
        """``log int exp(-energy) = (d/2) log(2 pi scale^2)``."""
        return 0.5 * self.dim * math.log(2 * math.pi * self.scale**2)

    def log_prob(self, x: Tensor) -> Tensor:
        """Normalised log density, shape (..., d) -> (...)."""
        return -self.energy(x) - self.log_z


def divergence_exact(velocity: Velocity, t: Tensor, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """v(t, x) and its exact divergence sum_i dv_i/dx_i (d autograd passes).

    Args:
        velocity: ``v(t, x)``.
        t: time, shape () or (n,).
        x: positions, shape (n, d).
        create_graph: keep the graph (to differentiate the result, e.g. in a loss); otherwise both results
            are detached.

    Returns:
        ``(v, div)``, shapes (n, d) and (n,).
    """
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        v = velocity(t, x)
        div = x.new_zeros(x.shape[:-1])
        for i in range(x.shape[-1]):
            (g,) = torch.autograd.grad(v[..., i].sum(), x, create_graph=create_graph, retain_graph=True)
            div = div + g[..., i]
    return (v, div) if create_graph else (v.detach(), div.detach())


def divergence_hutchinson(
    velocity: Velocity, t: Tensor, x: Tensor, noise: Tensor, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """v(t, x) and the Hutchinson estimate ``eps^T (dv/dx) eps`` of its divergence (one autograd pass).

    Unbiased when ``E[eps eps^T] = I`` (Rademacher or standard normal probes, see :func:`rademacher`).

    Args:
        velocity: ``v(t, x)``.
        t: time, shape () or (n,).
        x: positions, shape (n, d).
        noise: probes eps, shape (n, d).
        create_graph: keep the graph; otherwise both results are detached.

    Returns:
        ``(v, div_estimate)``, shapes (n, d) and (n,).
    """
    if noise.shape != x.shape:
        raise ValueError(f"noise must have the shape of x {tuple(x.shape)}, got {tuple(noise.shape)}")
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        v = velocity(t, x)
        (g,) = torch.autograd.grad((v * noise).sum(), x, create_graph=create_graph)
        div = (g * noise).sum(-1)
    return (v, div) if create_graph else (v.detach(), div.detach())


def rademacher(shape: Sequence[int], like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random ±1 probes of the given shape, dtype and device of ``like``."""
    bits = torch.randint(0, 2, tuple(shape), generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


class CNFSample(NamedTuple):
    """Samples of a CNF.

    Attributes:
        x: end points x(t1), shape (n, d).
        log_prob: log q(x) of the end points (model density), shape (n,).
        z: start points x(t0) drawn from the base, shape (n, d).
        times: the times at which ``path`` is kept, shape (T,), always starting with t0 and ending with t1.
        path: positions at ``times``, shape (T, n, d).
    """

    x: Tensor
    log_prob: Tensor
    z: Tensor
    times: Tensor
    path: Tensor


class CNF:
    """Continuous normalizing flow from ``base`` at ``t0`` to the model density at ``t1``.

    Args:
        velocity: ``v(t, x)``; evaluated under autograd for the divergence, results detached.
        base: has ``sample(n, generator) -> (n, d)`` and ``log_prob(x) -> (n,)`` (e.g. :class:`IsotropicNormal`).
        t0: start time.
        t1: end time.
        steps: grid steps for fixed-step solvers (and the output grid of adaptive ones).
        method: a torchdiffeq method (``"rk4"``, ``"euler"``, ``"midpoint"``, ``"dopri5"``, ...).
        divergence: ``"exact"`` or ``"hutchinson"`` (one Rademacher probe per trajectory).
        rtol: relative tolerance of adaptive methods.
        atol: absolute tolerance of adaptive methods.
        chunk_size: samples integrated at once (memory bound).
    """

    def __init__(
        self,
        velocity: Velocity,
        base: nn.Module,
        t0: float = 0.0,
        t1: float = 1.0,
        steps: int = 100,
        method: str = "rk4",
        divergence: str = "exact",
        rtol: float = 1e-7,
        atol: float = 1e-9,
        chunk_size: int = 10_000,
    ) -> None:
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if steps < 1 or chunk_size < 1 or t0 == t1:
            raise ValueError(f"CNF needs steps >= 1, chunk_size >= 1 and t0 != t1, got {steps}, {chunk_size}, {t0}")
        self.velocity, self.base = velocity, base
        self.t0, self.t1, self.steps, self.method = float(t0), float(t1), int(steps), method
        self.divergence, self.rtol, self.atol, self.chunk_size = divergence, rtol, atol, int(chunk_size)

    def sample(
        self, n: int, generator: torch.Generator | None = None, times: Sequence[float] | None = None
    ) -> CNFSample:
        """Draw ``n`` samples with their model log-density; keep the path at ``times`` (default t0 and t1)."""
        z = self.base.sample(n, generator=generator)
        x, delta, keep, path = self.transport(z, self.t0, self.t1, generator, times)
        return CNFSample(x, self.base.log_prob(z) - delta, z, keep, path)

    def log_prob(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Model log-density log q(x), shape (n, d) -> (n,), by integrating from t1 back to t0."""
        z, delta, _, _ = self.transport(x, self.t1, self.t0, generator)
        return self.base.log_prob(z) + delta

    def transport(
        self,
        x: Tensor,
        t_from: float,
        t_to: float,
        generator: torch.Generator | None = None,
        times: Sequence[float] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Integrate ``x`` from ``t_from`` to ``t_to`` with ``delta = int div v dt`` along each path.

        Args:
            x: start positions, shape (n, d).
            t_from: start time.
            t_to: end time (either direction).
            generator: for the Hutchinson probes.
            times: extra times at which to keep the path (between t_from and t_to).

        Returns:
            ``(x_end, delta, kept_times, path)``: shapes (n, d), (n,), (T,), (T, n, d); ``log q`` changes by
            ``-delta`` from ``t_from`` to ``t_to`` (so ``log q_to(x_end) = log q_from(x) - delta``).
        """
        ends_t = torch.tensor([t_from, t_to], dtype=x.dtype, device=x.device)
        grid = torch.linspace(min(t_from, t_to), max(t_from, t_to), self.steps + 1, dtype=x.dtype, device=x.device)
        kept = ends_t
        if times is not None:
            extra = torch.as_tensor(list(times), dtype=x.dtype, device=x.device)
            if bool(((extra < grid[0]) | (extra > grid[-1])).any()):
                raise ValueError(f"times must lie between {t_from} and {t_to}, got {extra.tolist()}")
            kept = torch.cat([kept, extra])
        grid = torch.unique(torch.cat([grid, kept]))  # sorted ascending
        if t_to < t_from:
            grid = grid.flip(0)
        mask = torch.isin(grid, kept)
        ends, deltas, paths = [], [], []
        for chunk in x.split(self.chunk_size):
            ys, ds = self._solve(chunk, grid, generator)
            ends.append(ys[-1])
            deltas.append(ds[-1])
            paths.append(ys[mask])
        return torch.cat(ends), torch.cat(deltas), grid[mask], torch.cat(paths, dim=1)

    def _solve(self, x: Tensor, grid: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        noise = rademacher(x.shape, x, generator) if self.divergence == "hutchinson" else None

        def rhs(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            if noise is None:
                v, div = divergence_exact(self.velocity, t, state[0])
            else:
                v, div = divergence_hutchinson(self.velocity, t, state[0], noise)
            return v, div

        state0 = (x.detach(), x.new_zeros(x.shape[0]))
        options = None if self.method in ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2") else {}
        ys, ds = odeint(rhs, state0, grid, method=self.method, rtol=self.rtol, atol=self.atol, options=options)
        return ys.detach(), ds.detach()
