"""The exact 1-D W2 metric speed: closed forms, the metric's definition, and the teleportation of mass."""

import math

import numpy as np
import pytest
import torch

from boltzflow.eval.teleport import (
    gaussian_mixture_log_density,
    linear_path,
    metric_speed_1d,
    metric_speed_curve,
    ou_path_gaussian_mixture,
    sampled_metric_speed,
)

STD_NORMAL = gaussian_mixture_log_density([1.0], [0.0], [1.0])


def two_mode(m, w=0.2):
    return gaussian_mixture_log_density([1 - w, w], [0.0, m], [1.0, 1.0])


def w2_finite_difference(log_density, t, h, lo, hi, n=400_001):
    """W2(rho_{t-h}, rho_{t+h}) / 2h from quantile functions: the metric speed by its definition."""
    x = np.linspace(lo, hi, n)
    u = np.linspace(1e-9, 1 - 1e-9, 200_001)

    def quantiles(s):
        with torch.no_grad():
            ell = log_density(torch.full((n,), s, dtype=torch.float64), torch.from_numpy(x)).numpy()
        p = np.exp(ell - ell.max())
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]))])
        return np.interp(u, cdf / cdf[-1], x)

    qa, qb = quantiles(t - h), quantiles(t + h)
    return math.sqrt(np.trapezoid((qa - qb) ** 2, u)) / (2 * h)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.8, 1.0])
def test_gaussian_linear_path_closed_form(t):
    m, s = 3.0, 0.5
    path = linear_path(STD_NORMAL, gaussian_mixture_log_density([1.0], [m], [s]))
    # rho_t = N(mu_t, 1/lam_t) with lam_t = (1 - t) + t / s^2, mu_t = t m / (s^2 lam_t)
    lam, dlam = (1 - t) + t / s**2, -1 + 1 / s**2
    dmu = m / s**2 / lam - t * m / s**2 * dlam / lam**2
    dsig = -0.5 * lam**-1.5 * dlam
    assert metric_speed_1d(path, t, -12, 12) == pytest.approx(math.hypot(dmu, dsig), rel=1e-7)


@pytest.mark.parametrize("which", ["linear", "ou"])
def test_speed_is_the_w2_rate_of_change(which):
    m = 4.0
    path = linear_path(STD_NORMAL, two_mode(m)) if which == "linear" else ou_path_gaussian_mixture(
        [0.8, 0.2], [0.0, m], [1.0, 1.0]
    )
    for t in (0.5, 0.9):
        exact = metric_speed_1d(path, t, -12, m + 12)
        assert w2_finite_difference(path, t, 1e-3, -12, m + 12) == pytest.approx(exact, rel=2e-4)


def test_ou_two_mode_speed_closed_form():
    # components N(0, 1) and N(t m, 1): d_t F = -w m phi(x - t m), so speed^2 = int (w m phi(x - tm))^2 / rho_t
    m, w, t = 6.0, 0.2, 0.7
    x = np.linspace(-15, 25, 2_000_001)
    phi = lambda y: np.exp(-0.5 * y**2) / math.sqrt(2 * math.pi)  # noqa: E731
    rho = (1 - w) * phi(x) + w * phi(x - t * m)
    ref = math.sqrt(np.trapezoid((w * m * phi(x - t * m)) ** 2 / rho, x))
    path = ou_path_gaussian_mixture([1 - w, w], [0.0, m], [1.0, 1.0])
    assert metric_speed_1d(path, t, -15, 25) == pytest.approx(ref, rel=1e-8)


def test_teleportation_linear_explodes_ou_does_not():
    times = np.linspace(0.0, 1.0, 21)
    end_ratio = {}
    for m in (4.0, 8.0, 12.0):
        lin = metric_speed_curve(linear_path(STD_NORMAL, two_mode(m)), times, -12, m + 12, 50_001)
        ou = metric_speed_curve(ou_path_gaussian_mixture([0.8, 0.2], [0.0, m], [1.0, 1.0]), times, -12, m + 12, 50_001)
        assert int(lin.argmax()) == len(times) - 1  # the linear path is fastest at the very end
        # separated modes: the OU speed tends to sqrt(w) m (mass w moved a distance m in unit time)
        assert float(ou.max()) <= math.sqrt(0.2) * m * 1.01
        end_ratio[m] = float(lin[-1] / ou[-1])
    assert end_ratio[4.0] < 10 < end_ratio[8.0] < end_ratio[12.0] / 100  # grows like exp(m^2 / 16)


def test_grid_convergence_and_coverage_check():
    path = linear_path(STD_NORMAL, two_mode(12.0))
    coarse, fine = metric_speed_1d(path, 1.0, -12, 24, 50_001), metric_speed_1d(path, 1.0, -12, 24, 200_001)
    assert coarse == pytest.approx(fine, rel=1e-6)
    with pytest.raises(ValueError, match="widen"):
        metric_speed_1d(path, 1.0, -3, 24)


def test_sampled_speed_of_a_translation():
    times = torch.tensor([0.0, 0.5, 1.0])
    path = torch.randn(3, 1000, 2)
    speed = sampled_metric_speed(lambda t, x: x.new_tensor([3.0, 4.0]).expand_as(x) * (1 + t), times, path)
    torch.testing.assert_close(speed, 5 * (1 + times))
    with pytest.raises(ValueError, match="path"):
        sampled_metric_speed(lambda t, x: x, times, path[0])
