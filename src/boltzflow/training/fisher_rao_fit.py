"""Training and sampling of learned Boltzmann curves (:mod:`boltzflow.training.fisher_rao`).

Points for the residual come from a *source* ``(n, generator) -> (t, x)``:

* :func:`box_source`: t ~ U[0, 1] and x uniform on a box that covers the modes (paper 003, eq. 17);
* :class:`TrajectorySource`: x on the model's own ODE trajectories from the base (Máté & Fleuret), redrawn
  every ``refresh`` steps, positions detached.

Sampling integrates the model's velocity from the base jointly with the log-density (:class:`CNF`), so each
sample has an exact model log-density and an importance weight ``log w = -f_D(x) - log q(x)``; ESS and
``log Z`` follow from :mod:`boltzflow.eval.weights`. The learned C(t) gives a second ``log Z`` estimate
(:func:`log_z_from_rate`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torchdiffeq import odeint

from boltzflow.errors import BoltzflowError
from boltzflow.eval.weights import log_importance_weights
from boltzflow.flows.cnf import CNF, IsotropicNormal, rademacher
from boltzflow.training.fisher_rao import EnergyFn, FisherRaoModel, continuity_loss

Source = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]
"""``(n, generator) -> (t (n,), x (n, d))``: where the residual is evaluated."""


def box_source(lo: Sequence[float], hi: Sequence[float]) -> Source:
    """t ~ U[0, 1], x ~ U(prod_i [lo_i, hi_i]) (float64)."""
    low, high = torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)
    if low.ndim != 1 or low.shape != high.shape or not bool((high > low).all()):
        raise ValueError(f"box needs lo < hi per coordinate, got lo={list(lo)}, hi={list(hi)}")

    def draw(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        t = torch.rand(n, generator=generator, dtype=torch.float64)
        u = torch.rand(n, low.shape[0], generator=generator, dtype=torch.float64)
        return t, low + (high - low) * u

    return draw


def noised_box_source(lo: Sequence[float], hi: Sequence[float], base_scale: float = 1.0) -> Source:
    """t ~ U[0, 1] and ``x = t u + sqrt(1 - t^2) sigma0 z``, u uniform on the box, z ~ N(0, I).

    The box pushed along the OU / variance-preserving path: at each t it covers the support of rho_t of the
    gradient-flow curve for any target inside the box (and of the linear curve, whose modes also contract
    towards the origin for small t), instead of spending most points where rho_t is negligible (far out at
    small t), where the residual is largest and least relevant.
    """
    box = box_source(lo, hi)

    def draw(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        t, u = box(n, generator)
        z = torch.randn(u.shape, generator=generator, dtype=u.dtype)
        return t, t[:, None] * u + (1 - t[:, None] ** 2).sqrt() * base_scale * z

    return draw


def mixed_source(first: Source, second: Source, fraction: float) -> Source:
    """A batch with ``round(fraction * n)`` points from ``first`` and the rest from ``second``."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")

    def draw(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        k = round(fraction * n)
        (t1, x1), (t2, x2) = first(k, generator), second(n - k, generator)
        return torch.cat([t1, t2]), torch.cat([x1, x2])

    return draw


class TrajectorySource:
    """Points on the model's own trajectories x_t from the base (positions detached; Máté & Fleuret).

    Points that leave the box (or are not finite: an untrained field can blow up) are dropped; while no point
    is left, the source draws from the box instead.

    Args:
        model: the curve model whose velocity moves the points.
        lo: lower corner of the box, shape (d,).
        hi: upper corner of the box, shape (d,).
        n_paths: trajectories per refresh.
        steps: RK4 steps per trajectory (every grid time is a candidate t).
        refresh: draws between refreshes.
    """

    def __init__(
        self,
        model: FisherRaoModel,
        lo: Sequence[float],
        hi: Sequence[float],
        n_paths: int = 1024,
        steps: int = 50,
        refresh: int = 20,
    ) -> None:
        self.model, self.n_paths, self.steps, self.refresh = model, n_paths, steps, refresh
        self.box = box_source(lo, hi)
        self.lo, self.hi = torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)
        self._calls, self._t, self._x = 0, None, None

    def __call__(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self._calls % self.refresh == 0:
            self._redraw(generator)
        self._calls += 1
        if self._x is None or self._x.shape[0] == 0:
            return self.box(n, generator)
        i = torch.randint(0, self._x.shape[0], (n,), generator=generator)
        return self._t[i], self._x[i]

    def _redraw(self, generator: torch.Generator) -> None:
        base = IsotropicNormal(self.lo.shape[0], self.model.curve.base_scale)
        z = base.sample(self.n_paths, generator)
        grid = torch.linspace(0.0, 1.0, self.steps + 1, dtype=torch.float64)
        xs = odeint(lambda t, x: self.model.velocity(t, x).detach(), z, grid, method="rk4").detach()
        t = grid[:, None].expand(xs.shape[:2]).reshape(-1)
        x = xs.reshape(-1, xs.shape[-1])
        inside = torch.isfinite(x).all(-1) & (x >= self.lo).all(-1) & (x <= self.hi).all(-1)
        self._t, self._x = t[inside], x[inside]


@dataclass
class FitConfig:
    """Optimiser settings of :func:`fit_curve` (Adam with a cosine learning-rate decay).

    Attributes:
        steps: gradient steps.
        batch_size: residual points per step.
        lr: initial learning rate.
        lr_final: learning rate at the last step.
        grad_clip: gradient-norm clip (0: off).
        hutchinson: use one Rademacher probe per point for the divergence instead of the exact trace.
        log_every: record the loss every this many steps.
    """

    steps: int = 5000
    batch_size: int = 512
    lr: float = 1e-3
    lr_final: float = 1e-5
    grad_clip: float = 100.0
    hutchinson: bool = False
    log_every: int = 100


class FitHistory(NamedTuple):
    """Loss record of :func:`fit_curve`: the step numbers, the mean loss since the previous record, seconds."""

    steps: list[int]
    loss: list[float]
    seconds: float


def fit_curve(
    model: FisherRaoModel,
    source: Source,
    config: FitConfig,
    generator: torch.Generator,
    loss_fn: Callable[..., Tensor] = continuity_loss,
) -> FitHistory:
    """Minimise ``loss_fn(model, t, x, noise)`` over points from ``source``.

    Raises:
        BoltzflowError: the loss became non-finite (lower ``lr``, shrink the box or clip harder).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr)
    decay = config.lr_final / config.lr
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: decay + (1 - decay) * 0.5 * (1 + math.cos(math.pi * k / max(config.steps, 1)))
    )
    steps, losses, window, start = [], [], [], time.perf_counter()
    for step in range(1, config.steps + 1):
        t, x = source(config.batch_size, generator)
        noise = rademacher(x.shape, x, generator) if config.hutchinson else None
        loss = loss_fn(model, t, x, noise)
        value = loss.item()
        if not math.isfinite(value):
            raise BoltzflowError(f"the continuity loss is {value} at step {step}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        sched.step()
        window.append(value)
        if step % config.log_every == 0 or step == config.steps:
            steps.append(step)
            losses.append(float(np.mean(window)))
            window = []
    return FitHistory(steps, losses, time.perf_counter() - start)


class CurveSample(NamedTuple):
    """Samples of a trained curve with their importance weights.

    Attributes:
        x: samples at t = 1, shape (n, d).
        log_prob: model log-density log q(x), shape (n,).
        log_w: ``-f_D(x) - log q(x)``, shape (n,).
        times: times of ``path``, shape (T,).
        path: positions along the ODE at ``times``, shape (T, n, d).
    """

    x: Tensor
    log_prob: Tensor
    log_w: Tensor
    times: Tensor
    path: Tensor


def sample_curve(
    model: FisherRaoModel,
    target_energy: EnergyFn,
    dim: int,
    n: int,
    generator: torch.Generator,
    steps: int = 100,
    times: Sequence[float] | None = None,
    divergence: str = "exact",
) -> CurveSample:
    """Integrate the model's velocity from its base for ``n`` samples, with log q and log weights."""
    base = IsotropicNormal(dim, model.curve.base_scale)
    out = CNF(model.velocity, base, steps=steps, divergence=divergence).sample(n, generator, times)
    with torch.no_grad():
        u = target_energy(out.x)
    return CurveSample(out.x, out.log_prob, log_importance_weights(u, out.log_prob), out.times, out.path)


def log_z_from_rate(model: FisherRaoModel, dim: int, nodes: int = 64) -> float:
    """``log Z_D = log Z_0 + int_0^1 C(t) dt`` (Gauss-Legendre), with log Z_0 that of the base energy."""
    u, wq = np.polynomial.legendre.leggauss(nodes)
    t = torch.as_tensor(0.5 * (u + 1), dtype=torch.float64)
    with torch.no_grad():
        integral = 0.5 * float((torch.as_tensor(wq) * model.log_z_rate(t)).sum())
    return IsotropicNormal(dim, model.curve.base_scale).log_z + integral
