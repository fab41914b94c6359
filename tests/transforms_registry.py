"""One registry of transform constructors: every elementwise map inside a coupling, and every flow family.

Each entry builds a transform with non-trivial random weights and draws inputs from its domain. Adding an
elementwise map is one line here; ``tests/test_coupling.py`` checks every entry for invertibility both ways and
for log-dets against autograd Jacobians in both directions (float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from boltzflow.flows.conditioners import ConstantConditioner, MLPConditioner
from boltzflow.flows.core import Affine, Compose, Inverse, Transform
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.elementwise import CircularRQSpline, Elementwise, Inverted, RQSpline
from boltzflow.flows.ic_flow import ICStats, NormalQuantile, ic_coupling, ic_smooth_flow, ic_spline_flow
from boltzflow.flows.nets import mlp
from boltzflow.flows.realnvp import RealNVPConfig, affine_coupling, half_masks, realnvp_transform
from boltzflow.flows.smooth import SmoothCircle, SmoothInterval
from boltzflow.flows.torus import CircularShift, circular_spline_flow
from boltzflow.flows.zmatrix import build_zmatrix

PI = math.pi
BRANCHED = [(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)]  # 6 atoms: 5 bonds, 4 angles, 3 torsions


class Entry(NamedTuple):
    """A transform constructor, a sampler of inputs ``(generator, n) -> (n, D)``, the periodic entries, the
    spread of the random weights the tests give it and the round-trip tolerance."""

    make: Callable[[], Transform]
    inputs: Callable[[torch.Generator, int], torch.Tensor]
    periodic: tuple[int, ...] = ()
    std: float = 0.4
    atol: float = 1e-9


def randomise(module: torch.nn.Module, std: float = 0.4, seed: int = 1) -> torch.nn.Module:
    """Non-trivial weights (zero-initialised last layers would make every coupling the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def normal(dim: int, scale: float = 1.5):
    return lambda g, n: scale * torch.randn(n, dim, generator=g)


def unit(dim: int):
    """Points of (0, 1)^D, away from the ends by 1e-3."""
    return lambda g, n: 1e-3 + (1 - 2e-3) * torch.rand(n, dim, generator=g)


def angles(dim: int):
    """Angles strictly inside (-pi, pi)."""
    return lambda g, n: (2 * torch.rand(n, dim, generator=g) - 1) * (PI - 1e-3)


def coupling(mask: list[bool], elementwise: Elementwise, periodic: list[bool] | None = None) -> Coupling:
    """A coupling with an MLP conditioner ((cos, sin) of the periodic kept entries), or free parameters."""
    m = torch.tensor(mask)
    per = torch.tensor(periodic if periodic is not None else [elementwise.periodic] * len(mask))
    idx_a = torch.nonzero(m).flatten()
    d_b = int((~m).sum())
    if idx_a.numel() == 0:
        return Coupling(m, ConstantConditioner(d_b, elementwise.param_sizes), elementwise)
    cond = MLPConditioner(idx_a[per[idx_a]], idx_a[~per[idx_a]], d_b, elementwise.param_sizes, [8], "silu")
    return Coupling(m, cond, elementwise)


def _affine(mask: list[bool], masked: bool, clamp: float | None) -> Coupling:
    m = torch.tensor(mask)
    d_in, d_out = (len(mask), len(mask)) if masked else (int(m.sum()), int((~m).sum()))
    return affine_coupling(m, mlp(d_in, d_out, [8]), mlp(d_in, d_out, [8], "tanh"), masked, clamp)


def _molecule_stats(narrow: bool) -> tuple:
    zm = build_zmatrix(BRANCHED, 6)
    loc = torch.tensor([0.15] * 5 + [1.9] * 4 + [2.5, -1.0, 0.3])
    scale = torch.tensor([0.01] * 5 + [0.1] * 4 + [1.0, 0.3 if narrow else 1.0, 1.0])
    return zm, ICStats(loc, scale)


def latent_part(flow) -> Compose:
    """The square part of an IC flow: latent -> internal coordinates (all layers but InternalCoordinates)."""
    return Compose(list(flow.transform.transforms)[:-1])


def _ic(kind: str, **kw) -> Transform:
    zm, stats = _molecule_stats(narrow=True)
    build = ic_spline_flow if kind == "spline" else ic_smooth_flow
    flow = build(zm, stats, n_layers=1, hidden=(8,), **kw)
    return latent_part(flow)


def _ic_inputs(kind: str):
    def draw(g: torch.Generator, n: int) -> torch.Tensor:
        zm, stats = _molecule_stats(narrow=True)
        build = ic_spline_flow if kind == "spline" else ic_smooth_flow
        return build(zm, stats, n_layers=1, hidden=(8,)).base.sample(n, g)

    return draw


IC_PERIODIC = (9, 11)  # the wide torsions of the molecule above

REGISTRY: dict[str, Entry] = {
    # RealNVP's affine map in both conditioner layouts, contiguous and checkered partitions
    "affine-masked": Entry(lambda: _affine([True, True, False, False], True, None), normal(4)),
    "affine-split": Entry(lambda: _affine([True, True, False, False, False], False, None), normal(5)),
    "affine-clamped": Entry(lambda: _affine([False, False, True, True], True, 2.0), normal(4)),
    "affine-checkered": Entry(lambda: _affine([True, False, True, False, True], True, 1.0), normal(5)),
    "affine-checkered-split": Entry(lambda: _affine([False, True, False, True, True], False, 1.0), normal(5)),
    # splines
    "rq-spline": Entry(lambda: coupling([True, False, True, False], RQSpline(5, 2.0)), normal(4, 1.6)),
    "circular-rq-spline": Entry(lambda: coupling([True, False, False], CircularRQSpline(5)), angles(3), (0, 1, 2)),
    "circular-rq-spline-fixed": Entry(
        lambda: coupling([False, True], CircularRQSpline(4, rotate=False)), angles(2), (0, 1)
    ),
    "circular-rq-spline-free": Entry(lambda: coupling([False, False], CircularRQSpline(4)), angles(2), (0, 1)),
    "mixed-spline": Entry(
        lambda: ic_coupling(torch.tensor([True, False, False]), torch.tensor([1, 2]), RQSpline(4, 2.0), [8], "silu"),
        lambda g, n: torch.cat([angles(1)(g, n), normal(2)(g, n)], -1),
        (0,),
    ),
    # smooth mixtures, both directions analytic or root-found
    "smooth-interval": Entry(lambda: coupling([True, False, False], SmoothInterval(3)), unit(3)),
    "smooth-interval-inverted": Entry(lambda: coupling([False, True, False], Inverted(SmoothInterval(3))), unit(3)),
    "smooth-interval-power2": Entry(lambda: coupling([True, False], SmoothInterval(4, power=2, bins=2)), unit(2)),
    "smooth-interval-wide": Entry(
        lambda: coupling([True, False], SmoothInterval(2, low=-2.0, high=3.0)), lambda g, n: 5 * unit(2)(g, n) - 2
    ),
    "smooth-circle": Entry(lambda: coupling([True, False, False], SmoothCircle(3)), angles(3), (0, 1, 2)),
    "smooth-circle-inverted": Entry(
        lambda: coupling([False, True], Inverted(SmoothCircle(3, power=2))), angles(2), (0, 1)
    ),
    "smooth-circle-official-scale": Entry(
        lambda: coupling([True, False], SmoothCircle(2, rotate=False, fixed_scale=1.3086)), angles(2), (0, 1)
    ),
    "smooth-circle-free": Entry(lambda: coupling([False, False], SmoothCircle(2)), angles(2), (0, 1)),
    "mixed-smooth": Entry(
        lambda: coupling([True, False, True], SmoothInterval(3), [True, False, False]),
        lambda g, n: torch.cat([angles(1)(g, n), unit(2)(g, n)], -1),
        (0,),
    ),
    # whole flows and fixed layers
    "realnvp-masked": Entry(lambda: realnvp_transform(RealNVPConfig(dim=4, n_layers=4, hidden=[16, 16])), normal(4)),
    "realnvp-split": Entry(
        lambda: realnvp_transform(RealNVPConfig(dim=3, n_layers=3, hidden=[16], masked_input=False)), normal(3)
    ),
    "inverse-realnvp": Entry(
        lambda: Inverse(realnvp_transform(RealNVPConfig(dim=4, n_layers=2, hidden=[8]))), normal(4)
    ),
    "realnvp-reversed-mask": Entry(
        lambda: affine_coupling(~half_masks(5, 1)[0], mlp(5, 5, [8]), mlp(5, 5, [8])), normal(5)
    ),
    "fixed-affine": Entry(
        lambda: Affine(torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([0.3, 2.0, 1.0, 0.7])), normal(4)
    ),
    "compose-with-affine": Entry(
        lambda: Compose(
            [realnvp_transform(RealNVPConfig(dim=4, n_layers=2, hidden=[8])), Affine(torch.ones(4), 2 * torch.ones(4))]
        ),
        normal(4),
    ),
    "circular-shift": Entry(lambda: CircularShift(3), angles(3), (0, 1, 2)),
    "torus-flow": Entry(lambda: circular_spline_flow(2, 4, 6, [16]).transform, angles(2), (0, 1)),
    "normal-quantile": Entry(lambda: NormalQuantile(torch.tensor([False, True, False])), unit(3), (1,)),
    # the RQ spline's quadratic-formula inverse loses digits in a deep stack: round trips to 1e-8 there
    "ic-spline-flow": Entry(lambda: _ic("spline", bins=4), _ic_inputs("spline"), IC_PERIODIC, 0.15, 1e-8),
    "ic-smooth-flow": Entry(lambda: _ic("smooth", components=3), _ic_inputs("smooth"), IC_PERIODIC, 0.15),
    "ic-smooth-flow-analytic-sampling": Entry(
        lambda: _ic("smooth", components=2, analytic_density=False, ramp_power=2),
        _ic_inputs("smooth"),
        IC_PERIODIC,
        0.15,
    ),
}
