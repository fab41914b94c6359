"""Energy distance against scipy and a closed form; mode coverage counts."""

import math

import pytest
import torch
from scipy import stats

from boltzflow.eval.sample_metrics import (
    energy_distance,
    energy_distance_with_floor,
    mean_pairwise_distance,
    mode_coverage,
)


def test_energy_distance_matches_scipy_in_1d():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, generator=g), 0.5 + 1.5 * torch.randn(200, generator=g)
    ref = stats.energy_distance(x.numpy(), y.numpy()) ** 2
    assert energy_distance(x, y, block=7) == pytest.approx(ref, rel=1e-10)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)


def test_energy_distance_gaussian_closed_form():
    # X ~ N(0, I_2), Y ~ N(mu, I_2): X - Y ~ N(-mu, 2 I), X - X' ~ N(0, 2 I); E|N(m, s^2 I_2)| is a Rice mean
    mu = torch.tensor([1.0, 0.0])

    def rice_mean(nu, s):
        a = nu**2 / (4 * s**2)
        return s * math.sqrt(math.pi / 2) * math.exp(-a) * ((1 + 2 * a) * _i0(a) + 2 * a * _i1(a))

    exact = 2 * rice_mean(1.0, math.sqrt(2)) - 2 * rice_mean(0.0, math.sqrt(2))
    g = torch.Generator().manual_seed(1)
    n = 4000
    x, y = torch.randn(n, 2, generator=g), mu + torch.randn(n, 2, generator=g)
    assert energy_distance(x, y) == pytest.approx(exact, abs=0.05)  # about 3 sd of the estimate at n = 4000


def _i0(a):
    return float(torch.special.i0(torch.tensor(a)))


def _i1(a):
    return float(torch.special.i1(torch.tensor(a)))


def test_floor_and_pairwise_mean():
    g = torch.Generator().manual_seed(2)
    a, b, model = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    out = energy_distance_with_floor(model + 3.0, a, b)
    assert out.value > 100 * out.floor > 0 and out.n == 500
    assert out.value == pytest.approx(energy_distance(model + 3.0, a), rel=1e-12)
    assert out.floor == pytest.approx(energy_distance(b, a), rel=1e-12)
    assert mean_pairwise_distance(torch.zeros(3, 2), torch.tensor([[3.0, 4.0]])) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="same size"):
        energy_distance_with_floor(model[:10], a, b)
    with pytest.raises(ValueError, match="finite"):
        energy_distance(a * math.nan, b)


def test_mode_coverage():
    labels = torch.tensor([0, 0, 0, 1, 1, 2] * 10)
    cov = mode_coverage(labels, torch.tensor([0.25, 0.25, 0.25, 0.25]), min_share=0.5)
    # 60 samples, 15 expected per mode, threshold 7.5: counts 30, 20, 10, 0
    assert cov.covered == 3 and cov.n_modes == 4
    torch.testing.assert_close(cov.counts, torch.tensor([30.0, 20.0, 10.0, 0.0], dtype=torch.float64))
    assert mode_coverage(labels, torch.tensor([0.25] * 4), min_share=0.8).covered == 2
    with pytest.raises(ValueError, match="mode indices"):
        mode_coverage(labels + 5, torch.tensor([0.25] * 4))
