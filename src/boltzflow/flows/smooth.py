"""C-infinity mixture transforms on the interval and on the circle (paper 004 §4; notes §3.1-3.4).

Building blocks, all on the unit interval:

* ramp ``rho_a(z) = exp(-a z^-k)`` for z > 0, 0 otherwise (k = ``power`` in {1, 2}; C-infinity, all
  derivatives vanish at 0). Paper 004 writes ``exp(-1 / (a z^k))``; we follow the official code's ``a``;
* smooth step ``sigma(z) = rho(z) / (rho(z) + rho(1 - z))``: 0 for z <= 0, 1 for z >= 1, C-infinity. Computed
  as ``sigmoid(t)`` with ``t = a((1 - z)^-k - z^-k)`` (the two ramps' log-ratio), and its log-slope as
  ``logsigmoid(t) + logsigmoid(-t) + log t'``, so nothing under- or overflows inside (0, 1);
* a *component* on [0, 1], ``S(u) = sigma(s (u - b) + 1/2)``: a smooth step of width 1/s centred at b;
  - interval: ``g(u) = (S(u) - S(0)) / (S(1) - S(0))`` (eq. 7 before the admixture);
  - circle: ``g(u) = sum_{j=-1,0,1} [S(u + j) - S(j)]``, the distribution function of the bump wrapped onto
    the circle, which needs s >= 1 (the bump fits on the circle). Every derivative of g agrees at u = 0 and 1,
    so the map is a C-infinity diffeomorphism of the circle. This sum of three shifted steps is smooth in the
    centre b too, unlike the official code's ``(u - b) mod 1`` form (notes §3.3), and gives the same function;
* the linear admixture ``(1 - c) g(u) + c u`` (so the slope is >= c > 0) and the mixture
  ``F(u) = sum_k w_k [(1 - c_k) g_k(u) + c_k u]``, whose log-slope is a logsumexp (eq. 7 and notes §3.4).

Parameter constraints (notes §3.4), from K raw outputs each per entry and parameter, in this order:
weights ``w = softmax``; centres ``b = cumsum(softmax)`` in (0, 1]; scale ``s = exp(tanh)`` in [1/e, e] on
the interval and ``s = exp(sigmoid)`` in [1, e] on the circle; admixture ``c = 1e-6 + (1 - 1e-6) sigmoid(raw + 3)``
(the official code has no offset; with it, the all-zero raw output of a zero-initialised conditioner gives
c = 0.953, a near-identity start like the splines', and the range of c is unchanged);
steepness ``a = a0 + 10 sigmoid`` with ``a0`` the unimodality threshold of the bump (0.8656721 for k = 1,
0.3052033 for k = 2).

The periodic scale (notes §3.3): the official code overwrites the conditioner's scale of every periodic
component with the constant ``exp(sigmoid(-1)) = 1.3086``. We learn it instead, over [1, e] (the constant
is the value at raw output -1): nothing in the paper asks for a fixed width, and the width caps how sharp one
component can be (peak density 2 a s for k = 1: at most 28 with s = 1.31, 59 with s = e), which matters for
narrow torsion modes. ``fixed_scale=1.3086`` reproduces the official runs.

:class:`SmoothInterval` and :class:`SmoothCircle` are elementwise maps for
:class:`~boltzflow.flows.coupling.Coupling`. Their forward direction is the analytic mixture; the inverse is
found by multi-bin bisection (:mod:`boltzflow.flows.bisection`), differentiable twice. Wrap one in
:class:`~boltzflow.flows.elementwise.Inverted` to put the analytic direction on the density side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from boltzflow.flows.bisection import invert
from boltzflow.flows.elementwise import CircleMap, Elementwise, Params

ALPHA_MAX = 10.0
ALPHA0 = {1: 0.8656721, 2: 0.3052033}  # bump of the smooth step unimodal above these (notes §3.1)
MIN_ADMIXTURE = 1e-6
ADMIXTURE_OFFSET = 3.0  # raw admixture 0 -> c = 0.953: a zero-initialised conditioner starts near the identity
OFFICIAL_PERIODIC_SCALE = math.exp(1 / (1 + math.e))  # exp(sigmoid(-1)) = 1.3086


def _clamped(z: Tensor) -> Tensor:
    """z clamped into (0, 1) at a distance where the step is 0 or 1 to machine precision for any alpha >= a0."""
    eps = torch.finfo(z.dtype).eps ** 0.5
    return z.clamp(eps, 1 - eps)


def _logit(z: Tensor, alpha: Tensor, power: int) -> Tensor:
    """t = log rho(z) - log rho(1 - z), so that sigma(z) = sigmoid(t); z clamped into (0, 1)."""
    zc = _clamped(z)
    return alpha * ((1 - zc) ** -power - zc**-power)


def _logit_and_slope(z: Tensor, alpha: Tensor, power: int) -> tuple[Tensor, Tensor]:
    """t = log rho(z) - log rho(1 - z) and log dt/dz, for z in (0, 1)."""
    zc = _clamped(z)
    log_dt = torch.log(alpha * power) + torch.log(zc ** -(power + 1) + (1 - zc) ** -(power + 1))
    return _logit(z, alpha, power), log_dt


def smooth_ramp(z: Tensor, alpha: Tensor | float, power: int = 1) -> Tensor:
    """rho(z) = exp(-alpha z^-power) for z > 0, else 0; shape of z (for reference and tests)."""
    zc = z.clamp_min(torch.finfo(z.dtype).tiny ** (1 / (power + 1)))
    return torch.where(z > 0, torch.exp(-alpha * zc**-power), torch.zeros_like(z))


def smooth_step(z: Tensor, alpha: Tensor | float, power: int = 1) -> Tensor:
    """sigma(z) = rho(z) / (rho(z) + rho(1 - z)): 0 for z <= 0, 1 for z >= 1, C-infinity."""
    t, _ = _logit_and_slope(z, torch.as_tensor(alpha, dtype=z.dtype, device=z.device), power)
    return torch.sigmoid(t)


def log_smooth_step_slope(z: Tensor, alpha: Tensor | float, power: int = 1) -> Tensor:
    """log sigma'(z); about -1/eps^power (an underflowed density) outside (0, 1)."""
    t, log_dt = _logit_and_slope(z, torch.as_tensor(alpha, dtype=z.dtype, device=z.device), power)
    return F.logsigmoid(t) + F.logsigmoid(-t) + log_dt


def _admix(u: Tensor, g: Tensor, log_dg: Tensor, p: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Mixture over the last axis of components g (..., K) with log-slopes log_dg: F(u) and log F'(u)."""
    value = (p["w"] * ((1 - p["c"]) * g + p["c"] * u)).sum(-1)
    # logaddexp via logsumexp: torch's logaddexp backward, 1 / (1 + exp(b - a)), gives nan in double backward
    # where a bump underflows (exp(b - a) = inf); logsumexp's exp(x - max) does not
    log_1mc, log_c = torch.broadcast_tensors(p["log_1mc"] + log_dg, p["log_c"])
    log_slope = torch.logsumexp(torch.stack([log_1mc, log_c]), dim=0)
    return value, torch.logsumexp(p["log_w"] + log_slope, dim=-1)


def interval_mixture(u: Tensor, p: dict[str, Tensor], power: int) -> tuple[Tensor, Tensor]:
    """F(u) and log F'(u) of the interval mixture; u in [0, 1], shape S; parameters S + (K,)."""
    ue, s, b, alpha = u.unsqueeze(-1), p["s"], p["b"], p["alpha"]
    step0, step1 = smooth_step(torch.stack([0.5 - s * b, s * (1 - b) + 0.5]), alpha, power)
    t, log_dt = _logit_and_slope(s * (ue - b) + 0.5, alpha, power)
    norm = step1 - step0
    g = (torch.sigmoid(t) - step0) / norm
    log_dg = F.logsigmoid(t) + F.logsigmoid(-t) + log_dt + torch.log(s) - torch.log(norm)
    return _admix(ue, g, log_dg, p)


def _shifts(like: Tensor) -> Tensor:
    return torch.tensor([-1.0, 0.0, 1.0], dtype=like.dtype, device=like.device)


def circle_mixture(u: Tensor, p: dict[str, Tensor], power: int) -> tuple[Tensor, Tensor]:
    """F(u) and log F'(u) of the circle mixture; u in [0, 1], shape S; parameters S + (K,)."""
    shifts = _shifts(u)
    ue, s, b, alpha = u.unsqueeze(-1), p["s"].unsqueeze(-1), p["b"].unsqueeze(-1), p["alpha"].unsqueeze(-1)
    anchors = smooth_step(s * (shifts - b) + 0.5, alpha, power)
    t, log_dt = _logit_and_slope(s * ((ue - p["b"]).unsqueeze(-1) + shifts) + 0.5, alpha, power)
    g = (torch.sigmoid(t) - anchors).sum(-1)
    log_dg = torch.logsumexp(F.logsigmoid(t) + F.logsigmoid(-t) + log_dt, dim=-1) + torch.log(p["s"])
    return _admix(ue, g, log_dg, p)


def interval_linear_form(p: dict[str, Tensor], power: int) -> tuple[Tensor, ...]:
    """(A, s, b, alpha, C, D) with F(u) = sum_k A_k sigma(s_k (u - b_k) + 1/2) + C u + D (interval)."""
    s, b = p["s"], p["b"]
    step0, step1 = smooth_step(torch.stack([0.5 - s * b, s * (1 - b) + 0.5]), p["alpha"], power)
    a = p["w"] * (1 - p["c"]) / (step1 - step0)
    return a, s, b, p["alpha"], (p["w"] * p["c"]).sum(-1, keepdim=True), -(a * step0).sum(-1, keepdim=True)


def circle_linear_form(p: dict[str, Tensor], power: int) -> tuple[Tensor, ...]:
    """(A, s, b, alpha, C, D) with F(u) = sum_k A_k sum_j sigma(s_k (u + j - b_k) + 1/2) + C u + D (circle)."""
    s, b, alpha = p["s"], p["b"], p["alpha"]
    anchors = smooth_step(s.unsqueeze(-1) * (_shifts(s) - b.unsqueeze(-1)) + 0.5, alpha.unsqueeze(-1), power)
    a = p["w"] * (1 - p["c"])
    return a, s, b, alpha, (p["w"] * p["c"]).sum(-1, keepdim=True), -(a * anchors.sum(-1)).sum(-1, keepdim=True)


def interval_value(u: Tensor, a: Tensor, s: Tensor, b: Tensor, alpha: Tensor, c: Tensor, d: Tensor, power: int):
    """F(u) from :func:`interval_linear_form` (the cheap form the bisection evaluates on its grids)."""
    t = _logit(s * (u.unsqueeze(-1) - b) + 0.5, alpha, power)
    return (a * torch.sigmoid(t)).sum(-1) + c[..., 0] * u + d[..., 0]


def circle_value(u: Tensor, a: Tensor, s: Tensor, b: Tensor, alpha: Tensor, c: Tensor, d: Tensor, power: int):
    """F(u) from :func:`circle_linear_form` (the cheap form the bisection evaluates on its grids)."""
    z = s.unsqueeze(-1) * ((u.unsqueeze(-1) - b).unsqueeze(-1) + _shifts(u)) + 0.5
    return (a * torch.sigmoid(_logit(z, alpha.unsqueeze(-1), power)).sum(-1)).sum(-1) + c[..., 0] * u + d[..., 0]


def _check(components: int, power: int) -> None:
    if isinstance(components, bool) or not isinstance(components, int) or components < 1:
        raise ValueError(f"components must be an integer >= 1, got {components!r}")
    if power not in ALPHA0:
        raise ValueError(f"ramp_power must be 1 or 2, got {power!r}")


class _Mixture:
    """Parameter constraints and the bisection inverse shared by the two smooth maps."""

    components: int
    power: int
    _mixture = staticmethod(interval_mixture)

    def _constrain(self, raw: Params) -> dict[str, Tensor]:
        w, b, s, c, alpha = raw
        c = c + ADMIXTURE_OFFSET
        sig_c = torch.sigmoid(c)
        return {
            "w": torch.softmax(w, -1),
            "log_w": torch.log_softmax(w, -1),
            "b": torch.cumsum(torch.softmax(b, -1), -1),
            "s": self._scale(s),
            "c": MIN_ADMIXTURE + (1 - MIN_ADMIXTURE) * sig_c,
            "log_c": torch.log(MIN_ADMIXTURE + (1 - MIN_ADMIXTURE) * sig_c),
            "log_1mc": math.log1p(-MIN_ADMIXTURE) + F.logsigmoid(-c),
            "alpha": ALPHA0[self.power] + ALPHA_MAX * torch.sigmoid(alpha),
        }

    def _scale(self, raw: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def _unit(self, u: Tensor, raw: Params, inverse: bool, bins: int | None) -> tuple[Tensor, Tensor]:
        """The mixture on [0, 1] (u of shape S, raw params S + (K,)): value or root, and its log-slope."""
        p = self._constrain(raw)
        if not inverse:
            value, log_slope = self._mixture(u, p, self.power)
            return value.clamp(0.0, 1.0), log_slope
        circle = self._mixture is circle_mixture
        form = (circle_linear_form if circle else interval_linear_form)(p, self.power)
        value, power = (circle_value if circle else interval_value), self.power

        def fn(x: Tensor, *params: Tensor) -> Tensor:
            return value(x, *params, power=power)

        root = invert(fn, u, form, 0.0, 1.0, bins=bins, cost=self.components * (3 if circle else 1))
        return root, -self._mixture(root, p, self.power)[1]


class SmoothInterval(_Mixture, Elementwise):
    """C-infinity mixture of K smooth-step components on ``[low, high]``, identity outside.

    Params: K raw each of weights, centres, scales, admixtures and steepnesses (module docstring).

    Args:
        components: mixture components K.
        low: lower end of the interval.
        high: upper end.
        power: ramp exponent k, 1 or 2.
        bins: bisection bins for the inverse (None: chosen by size).
    """

    def __init__(self, components: int = 8, low: float = 0.0, high: float = 1.0, power: int = 1,
                 bins: int | None = None) -> None:
        super().__init__()
        _check(components, power)
        if not high > low:
            raise ValueError(f"smooth interval needs low < high, got [{low}, {high}]")
        self.components, self.power, self.low, self.high, self.bins = components, power, float(low), float(high), bins
        self.param_sizes = (components,) * 5

    def _scale(self, raw: Tensor) -> Tensor:
        return torch.exp(torch.tanh(raw))

    def _map(self, v: Tensor, params: Params, inverse: bool) -> tuple[Tensor, Tensor]:
        span = self.high - self.low
        u = (v - self.low) / span
        inside = (u >= 0) & (u <= 1)
        out, log_slope = self._unit(u.clamp(0.0, 1.0), params, inverse, self.bins)
        return torch.where(inside, self.low + span * out, v), torch.where(inside, log_slope, 0.0)

    def forward(self, x: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        return self._map(x, params, inverse=False)

    def inverse(self, y: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        return self._map(y, params, inverse=True)


class SmoothCircle(_Mixture, CircleMap):
    """C-infinity mixture of K wrapped bump components on the circle [-pi, pi), optionally rotated.

    Params: K raw each of weights, centres, scales, admixtures and steepnesses, then the shift (``rotate``).

    Args:
        components: mixture components K.
        power: ramp exponent k, 1 or 2.
        rotate: add a conditional rotation after the mixture.
        fixed_scale: use this component scale s >= 1 instead of learning it (1.3086 = the official code).
        bins: bisection bins for the inverse (None: chosen by size).
    """

    _mixture = staticmethod(circle_mixture)

    def __init__(self, components: int = 8, power: int = 1, rotate: bool = True, fixed_scale: float | None = None,
                 bins: int | None = None) -> None:
        _check(components, power)
        if fixed_scale is not None and not fixed_scale >= 1:
            raise ValueError(f"fixed_scale of a periodic component must be >= 1, got {fixed_scale}")
        self._base_sizes = (components,) * 5
        super().__init__(rotate)
        self.components, self.power, self.fixed_scale, self.bins = components, power, fixed_scale, bins

    def _scale(self, raw: Tensor) -> Tensor:
        if self.fixed_scale is not None:
            return torch.full_like(raw, self.fixed_scale)
        return torch.exp(torch.sigmoid(raw))

    def _circle(self, v: Tensor, params: Params, inverse: bool) -> tuple[Tensor, Tensor]:
        u = ((v + math.pi) / (2 * math.pi)).clamp(0.0, 1.0)
        out, log_slope = self._unit(u, params, inverse, self.bins)
        return 2 * math.pi * out - math.pi, log_slope
