"""Rational-quadratic splines and torus flows: logdet vs autograd Jacobians, invertibility, circularity."""

import math

import pytest
import torch

from boltzflow.flows.core import Compose
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.splines import rq_spline, spline_parameters
from boltzflow.flows.torus import (
    CircularShift,
    UniformTorus,
    circular_spline_coupling,
    circular_spline_flow,
    wrap,
)

PI = math.pi


def random_params(shape, bins=6, circular=True, scale=1.5):
    g = torch.Generator().manual_seed(1)
    nd = bins if circular else bins + 1
    raw = [scale * torch.randn(*shape, n, generator=g) for n in (bins, bins, nd)]
    return spline_parameters(*raw, circular=circular)


def randomise(module, scale=0.5, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return module


def test_identity_at_zero_parameters():
    p = spline_parameters(torch.zeros(5, 8), torch.zeros(5, 8), torch.zeros(5, 8))
    x = torch.linspace(-PI, PI, 5)
    y, ld = rq_spline(x, *p)
    assert torch.allclose(y, x, atol=1e-12) and torch.allclose(ld, torch.zeros(5), atol=1e-12)


@pytest.mark.parametrize("circular", [True, False])
def test_spline_inverse_and_logdet(circular):
    p = random_params((300,), circular=circular)
    x = torch.linspace(-PI - 1.0, PI + 1.0, 300)  # includes both linear tails and points near ±pi
    x = torch.cat([x[:-4], torch.tensor([-PI, PI, -PI + 1e-9, PI - 1e-9])])
    y, ld = rq_spline(x, *p)
    x2, ld_inv = rq_spline(y, *p, inverse=True)
    assert torch.allclose(x2, x, atol=1e-10)
    assert torch.allclose(ld, -ld_inv, atol=1e-10)
    # elementwise map: diagonal Jacobian from autograd, both directions
    jac = torch.autograd.functional.jacobian(lambda t: rq_spline(t, *p)[0], x).diagonal()
    assert torch.allclose(torch.log(jac), ld, atol=1e-8)
    jac_inv = torch.autograd.functional.jacobian(lambda t: rq_spline(t, *p, inverse=True)[0], y).diagonal()
    assert torch.allclose(torch.log(jac_inv), ld_inv, atol=1e-8)
    shared = random_params((), circular=circular)
    assert torch.all(torch.diff(rq_spline(torch.sort(x).values, *shared)[0]) > 0)  # monotone


def test_circular_spline_is_circle_diffeomorphism():
    p = random_params((), circular=True)
    ends = torch.tensor([-PI, PI])
    y, ld = rq_spline(ends, *p)
    assert torch.allclose(y, ends, atol=1e-12)
    assert torch.allclose(ld[0], ld[1], atol=1e-12)  # same slope on both sides of the seam
    eps = 1e-6
    near = torch.tensor([-PI + eps, PI - eps])
    y_near, ld_near = rq_spline(near, *p)
    assert torch.allclose(wrap(y_near[0] - y_near[1]), 2 * eps * ld[0].exp(), atol=1e-9)
    assert torch.allclose(ld_near[0], ld_near[1], atol=1e-4)


def test_linear_spline_tails_are_c1():
    p = random_params((), circular=False)
    x = torch.tensor([-PI - 1e-7, -PI, PI, PI + 1e-7])
    y, ld = rq_spline(x, *p)
    assert torch.allclose(ld[0], ld[1], atol=1e-5) and torch.allclose(ld[2], ld[3], atol=1e-5)


def test_spline_parameters_bad_shapes():
    with pytest.raises(ValueError, match="derivatives"):
        spline_parameters(torch.zeros(4), torch.zeros(4), torch.zeros(5), circular=True)


TRANSFORMS = {
    "shift": lambda: randomise(CircularShift(3)),
    "coupling": lambda: randomise(circular_spline_coupling(torch.tensor([True, False, True]), [16], bins=5)),
    "no_rotation": lambda: randomise(circular_spline_coupling(torch.tensor([False, True]), [8], 4, False)),
    "unconditional": lambda: randomise(circular_spline_coupling(torch.tensor([False]), [8], bins=5)),
    "flow": lambda: randomise(Compose(list(circular_spline_flow(2, 4, 6, [16]).transform.transforms)), 0.3),
}


def points(dim, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (2 * torch.rand(n, dim, generator=g) - 1) * (PI - 1e-3)
    z[0] = PI - 1e-6  # near the seam
    z[1] = -PI + 1e-6
    return z


def dim_of(t):
    if isinstance(t, CircularShift):
        return t.shift.numel()
    if isinstance(t, Coupling):
        return t.mask.numel()
    return 2


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_inverse_and_logdet(name):
    t = TRANSFORMS[name]()
    z = points(dim_of(t))
    x, ld = t.forward(z)
    z2, ld_inv = t.inverse(x)
    assert torch.allclose(wrap(z2 - z + 1.0) - 1.0, torch.zeros_like(z), atol=1e-8)  # equal modulo 2 pi
    x_any = points(dim_of(t), seed=1)  # the other way round: x -> z -> x
    x_back = t.forward(t.inverse(x_any)[0])[0]
    assert torch.allclose(wrap(x_back - x_any + 1.0) - 1.0, torch.zeros_like(x_any), atol=1e-8)
    assert torch.allclose(ld, -ld_inv, atol=1e-8)
    for zi, xi, ldi, ldi_inv in zip(z, x, ld, ld_inv, strict=True):
        jf = torch.autograd.functional.jacobian(lambda v: t.forward(v)[0], zi)
        assert torch.allclose(torch.linalg.slogdet(jf).logabsdet, ldi, atol=1e-7)
        ji = torch.autograd.functional.jacobian(lambda v: t.inverse(v)[0], xi)
        assert torch.allclose(torch.linalg.slogdet(ji).logabsdet, ldi_inv, atol=1e-7)


def test_coupling_is_continuous_across_the_seam():
    t = randomise(circular_spline_coupling(torch.tensor([True, False]), [16], bins=5)).requires_grad_(False)
    a = torch.tensor(0.7)
    eps = 1e-7
    lo = torch.stack([a, torch.tensor(-PI + eps)])
    hi = torch.stack([a, torch.tensor(PI - eps)])
    (xlo, ldlo), (xhi, ldhi) = t.forward(lo), t.forward(hi)
    assert abs(float(wrap(xlo[1] - xhi[1]))) < 1e-5  # same point of the circle
    assert abs(float(ldlo - ldhi)) < 1e-4  # same slope
    # periodic in the conditioning angle as well
    x1, _ = t.forward(torch.tensor([PI - eps, 0.3]))
    x2, _ = t.forward(torch.tensor([-PI + eps, 0.3]))
    assert abs(float(x1[1] - x2[1])) < 1e-5


def test_uniform_torus_and_flow_density_normalised():
    base = UniformTorus(2)
    g = torch.Generator().manual_seed(0)
    z = base.sample(1000, g)
    assert z.min() >= -PI and z.max() < PI
    assert torch.allclose(base.log_prob(z), torch.full((1000,), -2 * math.log(2 * PI)))
    assert base.log_prob(torch.tensor([[4.0, 0.0]])).isinf().all()
    flow = circular_spline_flow(2, 2, 6, [16])
    randomise(flow, 0.3)
    # integral of q over the torus by a midpoint rule = 1
    m = 200
    grid = (torch.arange(m) + 0.5) / m * 2 * PI - PI
    xy = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = flow.log_prob(xy).exp().sum() * (2 * PI / m) ** 2
    assert abs(float(mass) - 1) < 1e-3
    s = flow.sample(50, g)
    assert torch.allclose(s.log_prob, flow.log_prob(s.x), atol=1e-8)
