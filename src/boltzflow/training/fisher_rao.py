"""Learned Boltzmann curves (paper 003, Chemseddine, Wald, Duong, Steidl; Máté & Fleuret 2023).

A Boltzmann curve is a family of energies f_t(x), t in [0, 1], with rho_t ∝ exp(-f_t), from the base
f_0 = f_Z = |x|^2 / (2 sigma0^2) (rho_Z = N(0, sigma0^2 I)) to the target f_1 = f_D. A velocity v_t moves
rho_t along the curve if the continuity equation holds; divided by rho_t it reads (notes §2.1-2.2)

    r(t, x) = d_t f_t(x) + C(t) - div v_t(x) + <grad f_t(x), v_t(x)> = 0,   C(t) = d_t log Z_t,

and the loss is the mean of r^2 over t ~ U[0, 1] and points x (a box, or the model's own trajectories).
C(t) is unknown (it is -E_rho_t[d_t f_t]) and is learned as a scalar network C_phi(t); integrating it gives
a second log Z estimate, ``log Z_1 = log Z_0 + int_0^1 C(t) dt``.

Three interpolations (notes §2.3), all parametrised as ``f_t = (1 - a_t) f_Z + a_t f_D + t(1-t) phi_theta(t, x)``
(a_t = t, or a_t = t^2 as an option, see :class:`BoltzmannCurve`) so that both ends hold exactly:

* ``linear``: phi = 0; only v_theta (and C_phi) are learned.
* ``learned`` (Máté & Fleuret): phi_theta and v_theta are learned jointly on the same residual.
* ``gradient_flow`` (paper 003): only phi_theta is learned; v is fixed to the probability-flow velocity of the
  Ornstein-Uhlenbeck (variance-preserving) path rho_t = Law(alpha_t X_D + sqrt(1 - alpha_t^2) sigma0 Z) with
  alpha_t = t: ``v_t = (alpha_t'/alpha_t)(x - sigma0^2 grad f_t)`` (the 1/t cancels exactly in this
  parametrisation, so v is regular at t = 0).

The residual needs second derivatives (div v; for the gradient flow, the Laplacian of f), taken by autograd:
exactly (one pass per coordinate) in low dimension, or with a Hutchinson probe in high dimension
(:mod:`boltzflow.flows.cnf`). Everything here is written by hand because no maintained library implements
these residuals; the ODE solving is torchdiffeq's. The networks (v_theta, phi_theta, C_phi) live in
:mod:`boltzflow.training.fisher_rao_nets`, training and sampling in :mod:`boltzflow.training.fisher_rao_fit`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from boltzflow.flows.cnf import divergence_exact, divergence_hutchinson
from boltzflow.training.fisher_rao_nets import GradientVelocity, TimeMLP, TimeScalar, time_column

EnergyFn = Callable[[Tensor], Tensor]
"""A target energy f_D: positions (n, d) -> reduced energies (n,), kT."""

INTERPOLATIONS = ("linear", "learned", "gradient_flow")


SCHEDULES = ("linear", "quadratic")


class BoltzmannCurve(nn.Module):
    """``f_t = (1 - a_t) f_Z + a_t f_D + t (1-t) phi(t, x)`` with a_t = t (``linear``) or t^2 (``quadratic``).

    phi = None and a_t = t is the linear interpolation. The gradient-flow velocity of this curve is
    ``v_t = (x - sigma0^2 grad f_t) / t = (a_t / t) x - sigma0^2 grad g_t`` with
    ``g_t = (a_t / t) f_D + (1 - t) phi``: no division by t is left, so v is regular at t = 0, where it is
    ``x - sigma0^2 grad(f_D + phi)`` (linear) or ``-sigma0^2 grad phi`` (quadratic).

    Args:
        target_energy: f_D, (n, d) -> (n,), kT; not trained.
        base_scale: sigma0 of the base N(0, sigma0^2 I), units of x.
        phi: the learned correction phi_theta(t, x) -> (n,), or None.
        schedule: ``"linear"`` (a_t = t) or ``"quadratic"`` (a_t = t^2).
    """

    def __init__(
        self, target_energy: EnergyFn, base_scale: float = 1.0, phi: nn.Module | None = None, schedule: str = "linear"
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.target_energy, self.base_scale, self.phi, self.schedule = target_energy, float(base_scale), phi, schedule

    def base_energy(self, x: Tensor) -> Tensor:
        """f_Z(x) = |x|^2 / (2 sigma0^2), shape (n, d) -> (n,)."""
        return 0.5 * (x**2).sum(-1) / self.base_scale**2

    def _a_over_t(self, tc: Tensor) -> Tensor:
        return torch.ones_like(tc) if self.schedule == "linear" else tc

    def _correction(self, t: Tensor | float, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0]) if self.phi is None else self.phi(t, x)

    def energy(self, t: Tensor | float, x: Tensor) -> Tensor:
        """f_t(x), t of shape () or (n,), x of shape (n, d) -> (n,), kT."""
        tc = time_column(t, x)[:, 0]
        a = tc * self._a_over_t(tc)
        return (1 - a) * self.base_energy(x) + a * self.target_energy(x) + tc * (1 - tc) * self._correction(t, x)

    def gradient_flow_velocity(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The OU probability-flow velocity ``(a_t/t) x - sigma0^2 grad g_t(x)``, shape (n, d) (differentiable)."""
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            tc = time_column(t, xg)[:, 0]
            ratio = self._a_over_t(tc)
            g = ratio * self.target_energy(xg) + (1 - tc) * self._correction(t, xg)
            (grad_g,) = torch.autograd.grad(g.sum(), xg, create_graph=True)
        return ratio[:, None] * xg - self.base_scale**2 * grad_g


def gradient_flow_velocity(energy: Callable[[Tensor, Tensor], Tensor], base_scale: float = 1.0):
    """``v_t = (x - sigma0^2 grad f_t(x)) / t`` for any curve f_t (alpha_t = t): the generic OU field, t > 0."""

    def velocity(t: Tensor, x: Tensor) -> Tensor:
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            (grad_f,) = torch.autograd.grad(energy(t, xg).sum(), xg, create_graph=True)
        return (xg - base_scale**2 * grad_f) / time_column(t, x)

    return velocity


class FisherRaoModel(nn.Module):
    """What the residual trains: a curve f_t, a velocity v_t and the log Z rate C(t).

    Args:
        curve: a :class:`BoltzmannCurve` (or any module with ``energy(t, x)`` and ``base_scale``, such as the
            exact path of :mod:`boltzflow.training.fisher_rao_gmm`).
        log_z_rate: C_phi(t).
        velocity: v_theta(t, x), or None for the gradient-flow interpolation (v fixed by the curve).
    """

    def __init__(self, curve: BoltzmannCurve, log_z_rate: nn.Module, velocity: nn.Module | None = None) -> None:
        super().__init__()
        self.curve, self.log_z_rate, self.velocity_net = curve, log_z_rate, velocity

    @property
    def interpolation(self) -> str:
        if self.velocity_net is None:
            return "gradient_flow"
        return "linear" if getattr(self.curve, "phi", None) is None else "learned"

    def energy(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.curve.energy(t, x)

    def velocity(self, t: Tensor | float, x: Tensor) -> Tensor:
        """v_t(x), shape (n, d): the network, or the gradient-flow field of the curve."""
        if self.velocity_net is None:
            return self.curve.gradient_flow_velocity(t, x)
        return self.velocity_net(t, x)


def build_model(
    interpolation: str,
    target_energy: EnergyFn,
    dim: int,
    base_scale: float = 1.0,
    hidden: Sequence[int] = (128, 128, 128),
    x_scale: float = 1.0,
    velocity_scale: float = 1.0,
    phi_scale: float = 1.0,
    rate_scale: float = 1.0,
    velocity_form: str = "gradient",
    schedule: str = "linear",
) -> FisherRaoModel:
    """A fresh model for one of :data:`INTERPOLATIONS` (networks in float64).

    Args:
        interpolation: ``"linear"``, ``"learned"`` or ``"gradient_flow"``.
        target_energy: f_D, (n, d) -> (n,), kT.
        dim: d.
        base_scale: sigma0 of the base N(0, sigma0^2 I).
        hidden: hidden widths of every network.
        x_scale: typical size of x, units of x.
        velocity_scale: typical speed, units of x per unit time.
        phi_scale: typical size of phi_theta, kT.
        rate_scale: typical size of C(t) = d/dt log Z_t, kT per unit time.
        velocity_form: ``"gradient"`` (:class:`GradientVelocity`) or ``"free"`` (a plain network, as in
            Máté & Fleuret); unused by the gradient flow, whose velocity is fixed.
        schedule: a_t of the curve, ``"linear"`` (a_t = t) or ``"quadratic"`` (a_t = t^2; for the gradient
            flow it makes v_0 = -sigma0^2 grad phi(0, .), which is linear in x for the exact OU curve, instead of
            asking phi(0, .) to cancel f_D).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if velocity_form not in ("gradient", "free"):
        raise ValueError(f"velocity_form must be 'gradient' or 'free', got {velocity_form!r}")
    phi = None
    if interpolation != "linear":
        phi = TimeMLP(dim, 1, hidden, x_scale=x_scale, out_scale=phi_scale)
    velocity: nn.Module | None = None
    if interpolation != "gradient_flow" and velocity_form == "free":
        velocity = TimeMLP(dim, dim, hidden, x_scale=x_scale, out_scale=velocity_scale)
    elif interpolation != "gradient_flow":
        velocity = GradientVelocity(dim, hidden, x_scale=x_scale, out_scale=velocity_scale * x_scale)
    curve = BoltzmannCurve(target_energy, base_scale, phi, schedule)
    model = FisherRaoModel(curve, TimeScalar(scale=rate_scale), velocity)
    return model.double()


def continuity_residual(
    energy: Callable[[Tensor, Tensor], Tensor],
    velocity: Callable[[Tensor, Tensor], Tensor],
    log_z_rate: Callable[[Tensor], Tensor],
    t: Tensor,
    x: Tensor,
    noise: Tensor | None = None,
) -> Tensor:
    """``r = d_t f_t + C(t) - div v_t + <grad f_t, v_t>`` at points (t_n, x_n) (notes §2.2), differentiable.

    Args:
        energy: f(t, x) -> (n,).
        velocity: v(t, x) -> (n, d).
        log_z_rate: C(t) -> shape of t.
        t: times, shape (n,).
        x: points, shape (n, d).
        noise: Hutchinson probes, shape (n, d), or None for the exact divergence.

    Returns:
        residuals, shape (n,), kT per unit time.
    """
    t = t.detach().requires_grad_(True)
    x = x.detach().requires_grad_(True)
    f = energy(t, x)
    df_dt, grad_f = torch.autograd.grad(f.sum(), (t, x), create_graph=True)
    if noise is None:
        v, div = divergence_exact(velocity, t, x, create_graph=True)
    else:
        v, div = divergence_hutchinson(velocity, t, x, noise, create_graph=True)
    return df_dt + log_z_rate(t) - div + (grad_f * v).sum(-1)


def continuity_loss(model: FisherRaoModel, t: Tensor, x: Tensor, noise: Tensor | None = None) -> Tensor:
    """Mean squared continuity residual of ``model`` at (t_n, x_n): the training loss (scalar)."""
    return continuity_residual(model.energy, model.velocity, model.log_z_rate, t, x, noise).pow(2).mean()
