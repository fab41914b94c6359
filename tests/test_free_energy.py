"""MBAR over umbrella windows against a 1-D periodic toy with profile and basin population by quadrature."""

import math

import numpy as np
import pytest

from boltzflow.eval.free_energy import ALPHA_L, reduced_bias, thin, umbrella_mbar, wrap

GRID = np.linspace(-math.pi, math.pi, 200_001)


def log_p(theta: np.ndarray) -> np.ndarray:
    """Unnormalised log density: a big basin at -1.4 rad and a small one at +1.0 rad (von Mises mixture)."""
    return np.logaddexp(
        math.log(0.95) + 3.0 * (np.cos(theta + 1.4) - 1.0), math.log(0.05) + 8.0 * (np.cos(theta - 1.0) - 1.0)
    )


def exact_population(lo: float, hi: float) -> float:
    p = np.exp(log_p(GRID))
    inside = (GRID > lo) & (GRID < hi)
    return float(np.trapezoid(p * inside, GRID) / np.trapezoid(p, GRID))


def sample_windows(theta0: np.ndarray, k_kt: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exact independent draws from p(θ) exp(-bias_k(θ)) for every window (inverse CDF on a fine grid)."""
    out = np.empty((theta0.size, n))
    for k, c in enumerate(theta0):
        logq = log_p(GRID) - reduced_bias(GRID, np.array([c]), k_kt)[0]
        q = np.exp(logq - logq.max())
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (q[1:] + q[:-1]) * np.diff(GRID))])
        out[k] = np.interp(rng.uniform(0.0, cdf[-1], n), cdf, GRID)
    return out


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(1)
    theta0 = -math.pi + 2 * math.pi * np.arange(24) / 24
    k_kt = 40.0
    return theta0, k_kt, sample_windows(theta0, k_kt, 400, rng)


def test_mbar_recovers_population_within_error_bar(toy):
    theta0, k_kt, theta = toy
    res = umbrella_mbar(theta, theta0, k_kt, decorrelate=False)
    exact = exact_population(*ALPHA_L)
    assert 0.03 < exact < 0.2  # the toy's small basin is really small
    assert res.alpha_l_population_err > 0
    assert abs(res.alpha_l_population - exact) < 4 * res.alpha_l_population_err
    assert abs(res.alpha_l_population - exact) < 0.01
    assert res.n_samples == res.n_samples_total == theta.size
    assert res.min_neighbour_overlap > 0.01
    want_df = -math.log(exact / (1 - exact))
    assert abs(res.delta_f_kt - want_df) < 4 * res.delta_f_err


def test_mbar_profile_matches_quadrature(toy):
    theta0, k_kt, theta = toy
    res = umbrella_mbar(theta, theta0, k_kt, n_bins=36, decorrelate=False)
    edges = np.linspace(-math.pi, math.pi, 37)
    width = edges[1] - edges[0]
    exact = -np.log([exact_population(a, b) / width for a, b in zip(edges[:-1], edges[1:], strict=True)])
    assert np.all(np.isfinite(res.free_energy_kt)) and np.nanmin(res.free_energy_kt) == 0
    diff = res.free_energy_kt - exact
    w = res.free_energy_err**-2
    diff -= np.sum(w * diff) / np.sum(w)  # F is defined up to a constant
    assert np.max(np.abs(diff / res.free_energy_err)) < 5
    assert np.max(np.abs(diff)) < 0.4  # neighbouring bins share window free energies: errors correlate
    assert exact.max() > 3  # the profile has real barriers


def test_wrong_force_constant_is_detected(toy):
    """A mis-stated bias (half the real κ) shifts the population by many error bars: the test can fail."""
    theta0, k_kt, theta = toy
    res = umbrella_mbar(theta, theta0, 0.5 * k_kt, decorrelate=False)
    assert abs(res.alpha_l_population - exact_population(*ALPHA_L)) > 4 * res.alpha_l_population_err


def test_thin_removes_correlation():
    rng = np.random.default_rng(0)
    x = np.zeros(4000)
    for i in range(1, x.size):  # AR(1) with correlation time ~ 20 samples: g = (1 + a) / (1 - a) ~ 39
        x[i] = 0.95 * x[i - 1] + 0.05 * rng.standard_normal()
    kept, g = thin(x, 0.0)
    assert 20 < g < 70
    assert kept.size == pytest.approx(x.size / g, rel=0.2)


def test_reduced_bias_is_periodic():
    theta0 = np.array([math.pi - 0.1])
    got = reduced_bias(np.array([-math.pi + 0.1, math.pi - 0.1, 0.0]), theta0, 10.0)[0]
    np.testing.assert_allclose(got, [0.5 * 10 * 0.2**2, 0.0, 0.5 * 10 * (math.pi - 0.1) ** 2])
    np.testing.assert_allclose(wrap(np.array([math.pi, 3 * math.pi + 0.5])), [-math.pi, -math.pi + 0.5])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="one series"):
        umbrella_mbar(np.zeros((3, 10)), np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="region"):
        umbrella_mbar(np.zeros((2, 10)), np.zeros(2), 1.0, region=(1.0, 0.0))
