"""Metrics of the model systems against closed forms: energy distance, mode weights, log Z error, particle W2."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from boltzflow.eval.energy_distance import (
    energy_distance,
    energy_distance_with_floor,
    gaussian_mean_norm,
    weighted_pair_sum,
)
from boltzflow.eval.log_z import log_z_error
from boltzflow.eval.modes import gaussian_voronoi_weights, mode_coverage, mode_weights, nearest_mode
from boltzflow.eval.particles import particle_w2
from boltzflow.systems.registry import get_system

# --- energy distance ------------------------------------------------------------------------------------------


def _naive_energy_distance(x, y, wx=None):
    """The defining double sums in NumPy (slow obvious twin)."""
    wx = np.full(len(x), 1 / len(x)) if wx is None else wx
    wy = np.full(len(y), 1 / len(y))
    d = lambda a, b: np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)  # noqa: E731
    return wx @ d(x, y) @ wy - 0.5 * wx @ d(x, x) @ wx - 0.5 * wy @ d(y, y) @ wy


def test_chunked_pair_sums_match_the_naive_double_sum():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(37, 3)), rng.normal(1.0, 2.0, size=(23, 3))
    wx = rng.random(37)
    wx /= wx.sum()
    for block in (1, 50, 10**6):  # one row at a time, a few rows, everything at once
        assert energy_distance(x, y, block_elements=block) == pytest.approx(_naive_energy_distance(x, y), rel=1e-12)
        got = energy_distance(x, y, log_w=torch.as_tensor(np.log(wx)), block_elements=block)
        assert got == pytest.approx(_naive_energy_distance(x, y, wx), rel=1e-12)
    xt = torch.as_tensor(x)
    w = torch.full((37,), 1.0)
    naive = np.linalg.norm(x[:, None] - x[None], axis=-1).sum()
    assert weighted_pair_sum(xt, None, w, block_elements=40) == pytest.approx(naive, rel=1e-12)


def test_energy_distance_in_1d_equals_the_cdf_l2_distance_exactly():
    """Székely: for empirical distributions, E = ∫ (F_n − G_m)² dt exactly (V-statistics)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=300), rng.normal(0.5, 1.5, size=200)
    t = np.sort(np.concatenate([x, y]))
    f = np.searchsorted(np.sort(x), t[:-1], side="right") / len(x)
    g = np.searchsorted(np.sort(y), t[:-1], side="right") / len(y)
    assert energy_distance(x, y) == pytest.approx(float(np.sum((f - g) ** 2 * np.diff(t))), rel=1e-10)


def test_integer_weights_equal_duplicated_samples():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 2)), rng.normal(size=(15, 2))
    counts = rng.integers(1, 4, size=10)
    dup = np.repeat(x, counts, axis=0)
    log_w = torch.as_tensor(np.log(counts.astype(float)))
    assert energy_distance(x, y, log_w=log_w) == pytest.approx(energy_distance(dup, y), rel=1e-12)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-14)


def test_gaussian_mean_norm_against_quadrature():
    assert gaussian_mean_norm(0.0, 2.0, 1) == pytest.approx(2 * math.sqrt(2 / math.pi), rel=1e-12)
    for m, s, d in ((1.5, math.sqrt(2), 2), (3.0, 0.7, 3), (0.4, 1.0, 5)):
        # ‖Z‖² / s² is non-central chi-square with d degrees of freedom and non-centrality (m/s)²
        chi2 = stats.ncx2(d, (m / s) ** 2)
        mean = integrate.quad(lambda q, chi2=chi2, s=s: s * math.sqrt(q) * chi2.pdf(q), 0, np.inf)[0]
        assert gaussian_mean_norm(m, s, d) == pytest.approx(mean, rel=1e-7)


def test_energy_distance_of_two_gaussians_against_the_closed_form():
    g = torch.Generator().manual_seed(3)
    n, shift = 4000, 1.5
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(n, 2, generator=g, dtype=torch.float64) + torch.tensor([shift, 0.0], dtype=torch.float64)
    exact = gaussian_mean_norm(shift, math.sqrt(2), 2) - gaussian_mean_norm(0.0, math.sqrt(2), 2)
    # the estimator's sd at n = 4000 is about 0.014 (measured over seeds); allow 4 sd
    assert energy_distance(x, y, unbiased=True) == pytest.approx(exact, abs=0.06)


def test_energy_distance_floor_of_exact_gmm_samples():
    system = get_system("gmm40")
    g = torch.Generator().manual_seed(4)
    ref, same = system.sample_exact(1000, g), system.sample_exact(500, g)
    more = system.sample_exact(2000, g)
    collapsed = more[system.mode_of(more) < 20][:500]  # a model that found half of the modes
    out = energy_distance_with_floor(ref, same, n=500, draws=2, generator=0)
    bad = energy_distance_with_floor(ref, collapsed, n=500, draws=2, generator=0)
    assert set(out) == {"energy_distance", "energy_distance_sd", "energy_distance_floor", "energy_distance_floor_sd",
                        "n", "draws"}
    assert out["energy_distance"] < 3 * out["energy_distance_floor"] < bad["energy_distance"]
    with pytest.raises(ValueError, match="2n"):
        energy_distance_with_floor(ref, same, n=600)


# --- modes ----------------------------------------------------------------------------------------------------


def test_mode_weights_counts_and_reweighting():
    labels = torch.tensor([0, 0, 1, 2])
    torch.testing.assert_close(mode_weights(labels, 4), torch.tensor([0.5, 0.25, 0.25, 0.0], dtype=torch.float64))
    log_w = torch.log(torch.tensor([1.0, 1.0, 2.0, 0.0], dtype=torch.float64))  # last one: weight zero
    cov = mode_coverage(labels, torch.full((4,), 0.25, dtype=torch.float64), log_w)
    torch.testing.assert_close(cov.weights, torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64))
    assert cov.n_covered == 2 and cov.coverage == 0.5
    assert cov.tv == pytest.approx(0.5) and cov.max_abs_error == pytest.approx(0.25)
    assert mode_coverage(labels, torch.full((4,), 0.25, dtype=torch.float64), min_count=2).n_covered == 1
    with pytest.raises(ValueError, match="labels must lie"):
        mode_weights(torch.tensor([5]), 4)


def test_nearest_mode_matches_brute_force():
    means = torch.randn(7, 2, dtype=torch.float64) * 5
    x = torch.randn(300, 2, dtype=torch.float64) * 6
    brute = torch.stack([((x - m) ** 2).sum(-1) for m in means], -1).argmin(-1)
    assert torch.equal(nearest_mode(x, means, block=64), brute)


def test_voronoi_weights_of_two_components_and_of_four_quadrants_in_closed_form():
    sigma, dist = 1.3, 1.7
    w = torch.tensor([0.3, 0.7], dtype=torch.float64)
    two = gaussian_voronoi_weights(torch.tensor([[0.0, 0.0], [dist, 0.0]]), sigma, w, n_angles=512)
    phi = stats.norm.cdf(dist / (2 * sigma))
    torch.testing.assert_close(two, torch.tensor([0.3 * phi + 0.7 * (1 - phi), 0.3 * (1 - phi) + 0.7 * phi],
                                                 dtype=torch.float64), rtol=0, atol=1e-12)
    # means at (±a, ±a): the cells are the quadrants, where a Gaussian's mass is a product of two Φ's
    a = 0.8
    means = torch.tensor([[a, a], [-a, a], [-a, -a], [a, -a]], dtype=torch.float64)
    w4 = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    p, q = stats.norm.cdf(a / sigma), stats.norm.cdf(-a / sigma)
    mass = torch.tensor([[p * p, q * p, q * q, p * q], [q * p, p * p, p * q, q * q],
                         [q * q, p * q, p * p, q * p], [p * q, q * q, q * p, p * p]], dtype=torch.float64)
    got = gaussian_voronoi_weights(means, sigma, w4, n_angles=8192)
    torch.testing.assert_close(got, w4 @ mass, rtol=0, atol=1e-7)


def test_gmm40_mode_reference_against_exact_samples():
    system = get_system("gmm40")
    ref = system.mode_reference()
    assert float(ref.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float((ref - 1 / 40).abs().max()) > 1e-4  # close groups of means: the cells are not all 1/40
    fine = gaussian_voronoi_weights(system.means, system.scale, n_angles=8192)
    assert float((fine - ref).abs().max()) < 1e-6
    x = system.sample_exact(200_000, torch.Generator().manual_seed(5))
    freq = mode_weights(system.mode_of(x), 40)
    se = torch.sqrt(ref * (1 - ref) / len(x))
    assert float(((freq - ref) / se).abs().max()) < 5
    cov = mode_coverage(system.mode_of(x), ref)
    assert cov.n_covered == 40 and cov.tv < 0.01


# --- log Z error ----------------------------------------------------------------------------------------------


def test_log_z_error_is_zero_for_the_exact_proposal_and_unbiased_within_its_error_bar():
    g = torch.Generator().manual_seed(6)
    exact = 0.5 * math.log(2 * math.pi)  # u(x) = x² / 2
    x = torch.randn(1000, generator=g, dtype=torch.float64)
    log_q = -0.5 * x**2 - exact
    out = log_z_error(-0.5 * x**2 - log_q, exact)
    assert out.error == pytest.approx(0.0, abs=1e-12) and out.stderr == pytest.approx(0.0, abs=1e-6)
    s = 1.5
    y = s * torch.randn(100_000, generator=g, dtype=torch.float64)
    log_q = -0.5 * (y / s) ** 2 - math.log(s) - exact
    out = log_z_error(-0.5 * y**2 - log_q, exact)
    assert out.log_z_exact == exact and abs(out.error) < 4 * out.stderr and out.stderr > 0
    with pytest.raises(ValueError, match="exact log Z"):
        log_z_error(-0.5 * y**2 - log_q, None)


# --- particle W2 ----------------------------------------------------------------------------------------------


def test_particle_w2_of_distances_and_energies_against_the_gaussian_closed_form():
    """Two particles on a line at distance r ~ N(m, s²): both W2 are the 1-D Gaussian sqrt(Δm² + Δs²)."""
    g = torch.Generator().manual_seed(7)

    def configs(m, s, n):
        r = m + s * torch.randn(n, generator=g, dtype=torch.float64)
        x = torch.zeros(n, 2, 1, dtype=torch.float64)
        x[:, 1, 0] = r
        return x

    def energy(x):
        return x[..., 1, 0] - x[..., 0, 0]  # u = r (signed), so the energy W2 is the same Gaussian W2

    ref, gen = configs(5.0, 1.0, 40_000), configs(5.3, 1.2, 20_000)
    out = particle_w2(ref, gen, energy, n=20_000, draws=2, generator=0)
    exact = math.sqrt(0.3**2 + 0.2**2)
    for key in ("distance_w2", "energy_w2"):
        assert out[key] == pytest.approx(exact, abs=0.03)
        assert out[f"{key}_floor"] < 0.03
    same = particle_w2(ref, configs(5.0, 1.0, 20_000), energy, n=20_000, draws=2)
    assert same["distance_w2"] < 3 * max(same["distance_w2_floor"], 0.01)
    with pytest.raises(ValueError, match="lower n"):
        particle_w2(ref, gen, energy, n=30_000)


# --- all metrics of a model system in one call ----------------------------------------------------------------


def test_model_system_metrics_on_exact_samples_and_on_a_collapsed_model():
    from boltzflow.eval.model_systems import model_system_metrics

    system = get_system("gmm40")
    g = torch.Generator().manual_seed(8)
    x = system.sample_exact(1000, g)
    log_w = torch.zeros(1000, dtype=torch.float64)  # q = p: log w = -u - log p = log Z = 0
    good = model_system_metrics(system, x, log_w, n=500, seed=1)
    assert good["log_z"]["error"] == pytest.approx(0.0, abs=1e-12)
    assert good["modes"]["raw"]["n_covered"] >= 38 and good["modes"]["n_modes"] == 40
    ed = good["energy_distance"]
    assert ed["energy_distance"] < 3 * ed["energy_distance_floor"]
    collapsed = x[system.mode_of(x) < 20]
    bad = model_system_metrics(system, collapsed, n=400, seed=1)
    assert bad["modes"]["raw"]["n_covered"] == 20 and bad["modes"]["raw"]["tv"] > 0.4
    assert bad["energy_distance"]["energy_distance"] > 3 * bad["energy_distance"]["energy_distance_floor"]
    with pytest.raises(ValueError, match="samples must have shape"):
        model_system_metrics(system, torch.zeros(5, 3))
