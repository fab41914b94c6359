"""Multi-bin bisection with inverse-function-theorem gradients (paper 004 §5, eqs. 8-11; notes §3.5), float64."""

import math

import pytest
import torch

from boltzflow.flows.bisection import choose_bins, invert, n_rounds
from boltzflow.flows.conditioners import split_params
from boltzflow.flows.ic_flow import ICStats, ic_smooth_flow
from boltzflow.flows.smooth import SmoothCircle, SmoothInterval
from boltzflow.flows.zmatrix import build_zmatrix


def affine(x, a, b):
    """F(x) = a x + b (a > 0), elementwise; params of shape S + (1,)."""
    return a[..., 0] * x + b[..., 0]


def cubic(x, a, b):
    """F(x) = x + a x^3 + b sin(x), increasing for a >= 0 and |b| < 1."""
    return x + a[..., 0] * x**3 + b[..., 0] * torch.sin(x)


@pytest.mark.parametrize("bins", [2, 3, 8, 64, None])
def test_round_trip_to_1e_10(bins):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(200, 1, generator=gen), 0.9 * (2 * torch.rand(200, 1, generator=gen) - 1)
    x = 4 * torch.rand(200, generator=gen) - 2
    root = invert(cubic, cubic(x, a, b), (a, b), -2.0, 2.0, bins=bins)
    torch.testing.assert_close(root, x, atol=1e-10, rtol=0)


def test_rounds_and_bins():
    assert n_rounds(2, 1e-10) == 34 and n_rounds(101, 1e-6) == 3  # the bracket shrinks by K per round
    sizes = [1, 10, 100, 1_000, 10_000, 1_000_000]
    chosen = [choose_bins(n) for n in sizes]
    assert chosen == sorted(chosen, reverse=True) and chosen[0] == 256 and chosen[-1] == 2
    assert choose_bins(100, cost=8) == choose_bins(800)
    assert choose_bins(128, cost=8) == 8 and choose_bins(512, cost=8) == 2  # the CPU optima of bench_bisection
    assert choose_bins(128, cost=8, device="cuda") == 256


def test_targets_outside_the_range_give_the_nearest_end():
    a, b = torch.ones(3, 1), torch.zeros(3, 1)
    root = invert(affine, torch.tensor([-5.0, 0.5, 7.0]), (a, b), 0.0, 1.0, bins=4)
    torch.testing.assert_close(root, torch.tensor([0.0, 0.5, 1.0]))


def test_gradients_match_the_analytic_inverse_of_an_affine_map():
    """x = (y - b) / a: dx/dy = 1/a, dx/da = -(y - b)/a^2, dx/db = -1/a, and second derivatives."""
    gen = torch.Generator().manual_seed(1)
    y = torch.rand(6, generator=gen).requires_grad_()
    a = (0.5 + torch.rand(6, 1, generator=gen)).requires_grad_()
    b = (0.1 * torch.rand(6, 1, generator=gen)).requires_grad_()
    w = torch.randn(6, generator=gen)
    x = invert(affine, y, (a, b), -2.0, 2.0, bins=16)
    exact = (y - b[:, 0]) / a[:, 0]
    torch.testing.assert_close(x, exact, atol=1e-12, rtol=0)
    grads = torch.autograd.grad((w * x).sum(), (y, a, b), create_graph=True)
    exact_grads = torch.autograd.grad((w * exact).sum(), (y, a, b), create_graph=True)
    for g, e in zip(grads, exact_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-12, rtol=1e-10)
    # second order: d/da of (dL/dy) = -w / a^2, through the custom backward
    second = torch.autograd.grad(grads[0].sum(), (a, b), allow_unused=True)
    exact_second = torch.autograd.grad(exact_grads[0].sum(), (a, b), allow_unused=True)
    torch.testing.assert_close(second[0], exact_second[0], atol=1e-12, rtol=1e-10)


def _mixture_inverse(m, n: int = 3, seed: int = 2):
    """(fn(y, *raw) -> (x, log|dx/dy|) of the map's inverse, y, raw params) for gradcheck."""
    gen = torch.Generator().manual_seed(seed)
    raw = split_params(0.8 * torch.randn(n, m.n_params, generator=gen), 1, m.param_sizes)
    raw = tuple(r.squeeze(1).requires_grad_() for r in raw)
    y = (0.05 + 0.9 * torch.rand(n, generator=gen)) * (2 * math.pi if m.periodic else 1.0) - (
        math.pi if m.periodic else 0.0
    )

    def fn(y, *raw):
        x, logdet = m.inverse(y, raw)
        return x, logdet

    return fn, y.requires_grad_(), raw


@pytest.mark.parametrize("make", [lambda: SmoothInterval(3), lambda: SmoothCircle(2, power=2), lambda: SmoothCircle(2)])
def test_inverse_and_its_logdet_have_finite_difference_gradients(make):
    """First derivatives of x(y, params) and of log|dx/dy| (eqs. 8-11) against central finite differences."""
    fn, y, raw = _mixture_inverse(make())
    assert torch.autograd.gradcheck(fn, (y, *raw), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: SmoothInterval(2), lambda: SmoothCircle(2, rotate=False)])
def test_second_derivatives_through_the_inverse_match_finite_differences(make):
    """Double backward: gradients of the first derivatives (the force-matching path) against finite differences."""
    fn, y, raw = _mixture_inverse(make(), n=2)
    assert torch.autograd.gradgradcheck(fn, (y, *raw), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_force_matching_loss_through_the_inverse_has_the_finite_difference_gradient():
    """L(params) = sum (d log|dx/dy| / dy)^2, a force-matching-like loss through root finding, vs finite differences."""
    m = SmoothInterval(3)
    fn, y, raw = _mixture_inverse(m, n=4, seed=5)

    def loss(*raw_):
        _, logdet = fn(y, *raw_)
        force = torch.autograd.grad(logdet.sum(), y, create_graph=True)[0]
        return (force**2).sum()

    grads = torch.autograd.grad(loss(*raw), raw)
    eps = 1e-4  # the roots are exact to ~1e-12, so smaller steps would measure the root noise
    for k, g in enumerate(grads):
        for idx in [(0, 0), (3, 2)]:
            plus = [q.detach().clone() for q in raw]
            minus = [q.detach().clone() for q in raw]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            fd = (loss(*[q.requires_grad_() for q in plus]) - loss(*[q.requires_grad_() for q in minus])) / (2 * eps)
            assert float(g[idx]) == pytest.approx(fd.item(), rel=1e-5, abs=1e-7)


def _small_smooth_flow(analytic_density: bool):
    zm = build_zmatrix([(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)], 6)
    loc = torch.tensor([0.15] * 5 + [1.9] * 4 + [2.5, -1.0, 0.3])
    scale = torch.tensor([0.01] * 5 + [0.1] * 4 + [1.0, 0.3, 1.0])
    flow = ic_smooth_flow(
        zm, ICStats(loc, scale), n_layers=1, components=2, hidden=(8,), analytic_density=analytic_density
    ).double()
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.15 * torch.randn(p.shape, generator=gen))
    return flow


@pytest.mark.parametrize("analytic_density", [True, False])
def test_cartesian_forces_of_a_smooth_ic_flow_match_finite_differences(analytic_density):
    """f = grad_x log q(x) (the force of u = -log q) by autograd vs central differences, in Cartesian x (nm)."""
    flow = _small_smooth_flow(analytic_density)
    with torch.no_grad():
        x = flow.sample(3, torch.Generator().manual_seed(7)).x
    xg = x.clone().requires_grad_()
    force = torch.autograd.grad(flow.log_prob(xg).sum(), xg)[0]
    eps = 1e-6
    fd = torch.zeros_like(x)
    with torch.no_grad():
        for j in range(x.shape[1]):
            step = torch.zeros_like(x)
            step[:, j] = eps
            fd[:, j] = (flow.log_prob(x + step) - flow.log_prob(x - step)) / (2 * eps)
    torch.testing.assert_close(force, fd, rtol=1e-5, atol=1e-4 * float(fd.abs().max()))


def test_sampling_through_bisection_is_differentiable_for_reverse_kl():
    """Samples drawn through root finding carry gradients to every conditioner parameter."""
    flow = _small_smooth_flow(analytic_density=True)
    s = flow.sample(4, torch.Generator().manual_seed(8))
    (s.x.sum() + s.log_prob.sum()).backward()
    grads = [p.grad for p in flow.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: SmoothInterval(8),
        lambda: SmoothInterval(4, power=2),
        lambda: SmoothCircle(8),
        lambda: SmoothCircle(3, power=2),
    ],
)
def test_smooth_maps_round_trip_to_1e_10_with_steep_random_parameters(make):
    m = make()
    gen = torch.Generator().manual_seed(9)
    raw = split_params(2.0 * torch.randn(400, m.n_params, generator=gen), 1, m.param_sizes)
    x = torch.rand(400, 1, generator=gen)
    x = 2 * math.pi * x - math.pi if m.periodic else x
    y, ld = m.forward(x, raw)
    x_back, ld_back = m.inverse(y, raw)
    diff = torch.remainder(x_back - x + math.pi, 2 * math.pi) - math.pi if m.periodic else x_back - x
    assert diff.abs().max() < 1e-10
    torch.testing.assert_close(ld_back, -ld, atol=1e-8, rtol=0)


def test_the_root_keeps_the_dtype_of_y_whatever_the_default_dtype():
    """float32 targets give a float32 root while float64 is the default dtype (as in this suite) and vice versa."""
    fn = lambda x, a: x + a[..., 0] * x**3  # noqa: E731  increasing on [0, 1]
    for dtype in (torch.float32, torch.float64):
        y = torch.linspace(0.1, 1.5, 5, dtype=dtype)
        a = torch.full((5, 1), 0.5, dtype=dtype)
        x = invert(fn, y, (a,), 0.0, 1.0, bins=4)
        assert x.dtype == dtype
        torch.testing.assert_close(fn(x, a), y, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)
