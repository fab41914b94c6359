"""C-infinity mixture transforms (paper 004 §4, notes §3.1-3.4): closed forms, slow twins, smoothness."""

import math

import pytest
import torch

from boltzflow.flows.conditioners import split_params
from boltzflow.flows.elementwise import RQSpline
from boltzflow.flows.smooth import (
    ALPHA0,
    OFFICIAL_PERIODIC_SCALE,
    SmoothCircle,
    SmoothInterval,
    circle_mixture,
    interval_mixture,
    log_smooth_step_slope,
    smooth_ramp,
    smooth_step,
)
from boltzflow.flows.splines import spline_parameters


def _derivatives(fn, x: torch.Tensor, order: int) -> list[torch.Tensor]:
    """fn(x) and its first ``order`` derivatives, elementwise, by repeated autograd."""
    x = x.clone().requires_grad_(True)
    out = [fn(x)]
    for _ in range(order):
        out.append(torch.autograd.grad(out[-1].sum(), x, create_graph=True)[0])
    return [o.detach() for o in out]


def test_smooth_step_is_the_ramp_ratio_and_symmetric():
    z = torch.linspace(0.05, 0.95, 19)
    for power in (1, 2):
        alpha = 0.7 + power
        rho = smooth_ramp(z, alpha, power)
        torch.testing.assert_close(rho, torch.exp(-alpha / z**power))
        expected = rho / (rho + smooth_ramp(1 - z, alpha, power))  # eq. (6)
        torch.testing.assert_close(smooth_step(z, alpha, power), expected)
        torch.testing.assert_close(smooth_step(1 - z, alpha, power), 1 - smooth_step(z, alpha, power))
    outside = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    assert smooth_step(outside, 1.0).tolist() == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("power", [1, 2])
def test_log_slope_matches_autograd_and_the_quotient_rule(power):
    """Where sigma' does not underflow (autograd's sigmoid slope is 0 once sigma rounds to 1; ours is not)."""
    # |t| <= 13 there, so 1 - sigma keeps its digits in the naive formulas we compare with
    z = torch.linspace(0.15, 0.85, 25) if power == 1 else torch.linspace(0.3, 0.7, 25)
    alpha = torch.full_like(z, 2.3 if power == 1 else 1.0)
    _, slope = _derivatives(lambda v: smooth_step(v, alpha, power), z, 1)
    log_slope = log_smooth_step_slope(z, alpha, power)
    torch.testing.assert_close(log_slope, torch.log(slope))
    a = float(alpha[0])
    rho = lambda v: smooth_ramp(v, a, power)  # noqa: E731
    drho = lambda v: power * a * v ** -(power + 1) * rho(v)  # noqa: E731
    quotient = (drho(z) * rho(1 - z) + rho(z) * drho(1 - z)) / (rho(z) + rho(1 - z)) ** 2  # notes §3.1
    torch.testing.assert_close(log_slope, torch.log(quotient))


@pytest.mark.parametrize("power, peak", [(1, 2.0), (2, 8.0)])
def test_unimodality_threshold_and_peak_of_the_bump(power, peak):
    """The bump sigma' peaks at 1/2 with height 2 alpha (k=1) / 8 alpha (k=2); it is unimodal iff alpha > a0."""
    half = torch.tensor([0.5])
    for alpha in (ALPHA0[power], 3.0):
        torch.testing.assert_close(log_smooth_step_slope(half, alpha, power).exp(), torch.tensor([peak * alpha]))
    for scale, sign in ((1.02, -1), (0.98, 1)):
        # sigma''' (1/2): negative (a maximum of the bump at 1/2) above a0, positive (a dip) below
        alpha = scale * ALPHA0[power]
        third = _derivatives(lambda v, a=alpha: smooth_step(v, a, power), half, 3)[3]
        assert sign * float(third) > 0


def test_all_derivatives_of_the_step_vanish_at_the_ends():
    for end in (0.0, 1.0):
        for side in (-1e-3, 1e-3):
            x = torch.tensor([end + side])
            derivs = _derivatives(lambda v: smooth_step(v, 1.0, 1), x, 4)
            assert all(abs(float(d)) < 1e-100 for d in derivs[1:])


def _raw(n: int, k: int, gen: torch.Generator, scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    return tuple(scale * torch.randn(n, k, generator=gen) for _ in range(5))


def test_interval_mixture_is_eq7_with_the_linear_admixture():
    """Slow twin of eq. (7): f(x) = (1 - c)(g(x) - g(0)) / (g(1) - g(0)) + c x, mixed with softmax weights."""
    gen = torch.Generator().manual_seed(0)
    m = SmoothInterval(3)
    raw = _raw(7, 3, gen)
    p = m._constrain(raw)
    u = torch.rand(7, generator=gen)
    value, log_slope = interval_mixture(u, p, 1)
    ref = torch.zeros(7)
    for k in range(3):
        a, b, c, alpha = p["s"][:, k], p["b"][:, k], p["c"][:, k], p["alpha"][:, k]
        g = lambda x: smooth_step(a * (x - b) + 0.5, alpha)  # noqa: B023, E731
        zero, one = torch.zeros(7), torch.ones(7)
        ref = ref + p["w"][:, k] * ((1 - c) * (g(u) - g(zero)) / (g(one) - g(zero)) + c * u)
    torch.testing.assert_close(value, ref)
    _, slope = _derivatives(lambda v: interval_mixture(v, p, 1)[0], u, 1)
    torch.testing.assert_close(log_slope, torch.log(slope))


def test_circle_component_equals_the_official_mod_form():
    """Our sum of three shifted steps equals notes §3.3:

    sigma(a u) - sigma(a((-b') mod 1)) + floor(x - b') + [b' != 0], b' = (b - 1/(2a)) mod 1, u = (x - b') mod 1.
    """
    gen = torch.Generator().manual_seed(1)
    a = 1 + 1.5 * torch.rand(50, generator=gen)
    b = torch.rand(50, generator=gen)
    x = torch.rand(50, generator=gen)
    alpha = torch.full((50,), 1.7)
    p = {"w": torch.ones(50, 1), "log_w": torch.zeros(50, 1), "s": a[:, None], "b": b[:, None],
         "c": torch.zeros(50, 1), "log_c": torch.full((50, 1), -math.inf), "log_1mc": torch.zeros(50, 1),
         "alpha": alpha[:, None]}
    ours, _ = circle_mixture(x, p, 1)
    left = torch.remainder(b - 0.5 / a, 1.0)
    u = torch.remainder(x - left, 1.0)
    official = (smooth_step(a * u, alpha) - smooth_step(a * torch.remainder(-left, 1.0), alpha)
                + torch.floor(x - left) + (left != 0).double())
    torch.testing.assert_close(ours, official)


@pytest.mark.parametrize("mixture", [interval_mixture, circle_mixture])
def test_mixtures_fix_the_ends_and_are_increasing(mixture):
    gen = torch.Generator().manual_seed(2)
    m = SmoothCircle(4) if mixture is circle_mixture else SmoothInterval(4)
    p = m._constrain(_raw(5, 4, gen, 2.0))
    ends, _ = mixture(torch.tensor([0.0, 1.0]).expand(5, 2).T.contiguous(), {k: v[None] for k, v in p.items()}, 1)
    torch.testing.assert_close(ends, torch.tensor([[0.0] * 5, [1.0] * 5]), atol=1e-15, rtol=0)
    grid = torch.linspace(0, 1, 2001)[:, None].expand(2001, 5)
    values, log_slope = mixture(grid, {k: v[None] for k, v in p.items()}, 1)
    assert (torch.diff(values, dim=0) > 0).all() and torch.isfinite(log_slope).all()
    assert (log_slope.exp() >= 1e-6 * 0.999).all()  # the admixture bounds the slope below


def test_circle_map_is_smooth_across_the_seam():
    """Value and the first three derivatives of the circle mixture agree at 0 and 1 (a C-infinity circle map)."""
    gen = torch.Generator().manual_seed(3)
    p = SmoothCircle(3)._constrain(_raw(4, 3, gen, 2.0))
    for order in range(4):
        at0 = _derivatives(lambda v: circle_mixture(v, p, 1)[0], torch.zeros(4), 3)[order]
        at1 = _derivatives(lambda v: circle_mixture(v, p, 1)[0], torch.ones(4), 3)[order]
        expected = at0 + 1 if order == 0 else at0
        torch.testing.assert_close(at1, expected, atol=1e-9, rtol=1e-9)


def test_periodic_scale_is_learned_in_one_to_e_and_can_be_fixed_to_the_official_value():
    raw = torch.tensor([-50.0, -1.0, 0.0, 50.0])
    scale = SmoothCircle(1)._scale(raw)
    assert float(scale[0]) == pytest.approx(1.0) and float(scale[-1]) == pytest.approx(math.e)
    assert float(scale[1]) == pytest.approx(OFFICIAL_PERIODIC_SCALE, abs=1e-12)  # exp(sigmoid(-1)) = 1.3086
    assert OFFICIAL_PERIODIC_SCALE == pytest.approx(1.3086, abs=1e-4)
    fixed = SmoothCircle(1, fixed_scale=OFFICIAL_PERIODIC_SCALE)._scale(raw)
    torch.testing.assert_close(fixed, torch.full_like(raw, OFFICIAL_PERIODIC_SCALE))


def _second_derivative_jump(fn, points: torch.Tensor, delta: float) -> torch.Tensor:
    """|f''(p + delta) - f''(p - delta)| at each point p."""
    left = _derivatives(fn, points - delta, 2)[2]
    right = _derivatives(fn, points + delta, 2)[2]
    return (right - left).abs()


def test_second_derivative_jumps_at_spline_knots_and_not_for_the_smooth_map():
    """The RQ spline is C¹ only: f'' jumps at its knots. The smooth mixture's f'' is continuous there.

    The jump |f''(p + d) - f''(p - d)| is measured at d = 1e-5 and 1e-7: where f'' is continuous it shrinks
    with d (by about 100 here), where f'' jumps it stays.
    """
    gen = torch.Generator().manual_seed(4)
    spline = RQSpline(6, 1.0)
    raw_spline = split_params(torch.randn(1, spline.n_params, generator=gen), 1, spline.param_sizes)
    widths = spline_parameters(*raw_spline, low=-1.0, high=1.0, circular=False).widths.flatten()
    knots = (-1.0 + torch.cumsum(widths, -1))[:-1]  # the K - 1 inner knots
    mids = -1.0 + torch.cumsum(widths, -1) - widths / 2
    smooth = SmoothInterval(4, low=-1.0, high=1.0)
    raw_smooth = split_params(torch.randn(1, smooth.n_params, generator=gen), 1, smooth.param_sizes)

    def along(m, raw):
        return lambda v: m.forward(v[:, None], tuple(r.expand(len(v), 1, -1) for r in raw))[0][:, 0]

    def shrink(fn, points):
        coarse, fine = _second_derivative_jump(fn, points, 1e-5), _second_derivative_jump(fn, points, 1e-7)
        return fine, fine / coarse

    jump, ratio = shrink(along(spline, raw_spline), knots)
    assert jump.min() > 1e-3 and ratio.min() > 0.5, (jump, ratio)  # jumps of order one that do not shrink
    for fn, points in ((along(smooth, raw_smooth), knots), (along(spline, raw_spline), mids)):
        jump, ratio = shrink(fn, points)
        assert ratio.max() < 0.05, (jump, ratio)  # continuous: the jump is O(d f''') and shrinks


@pytest.mark.parametrize("circle", [False, True])
def test_the_linear_form_bisection_evaluates_equals_the_mixture(circle):
    from boltzflow.flows.smooth import circle_linear_form, circle_value, interval_linear_form, interval_value

    gen = torch.Generator().manual_seed(5)
    m = SmoothCircle(3) if circle else SmoothInterval(3)
    p = m._constrain(_raw(6, 3, gen, 1.5))
    u = torch.rand(6, generator=gen)
    form, value = (circle_linear_form, circle_value) if circle else (interval_linear_form, interval_value)
    mixture = circle_mixture if circle else interval_mixture
    torch.testing.assert_close(value(u, *form(p, 2), power=2), mixture(u, p, 2)[0], atol=1e-14, rtol=0)
