"""W2 against closed forms, an independent assignment solver, and its own slow twins."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm

from boltzflow.errors import BoltzflowError
from boltzflow.eval import wasserstein as wmod
from boltzflow.eval.wasserstein import (
    W2Stats,
    cost_matrix,
    w2,
    w2_noise_floor,
    w2_subsampled,
    w2_with_floor,
)


def gaussian_quantiles(m: float, s: float, n: int) -> np.ndarray:
    """Deterministic 'sample' of N(m, s^2): the quantiles at (i + 1/2) / n."""
    return m + s * norm.ppf((np.arange(n) + 0.5) / n)


def assignment_w2(x: np.ndarray, y: np.ndarray, metric: str, period: float = 2 * math.pi) -> float:
    """Slow twin for equal-size sets: W2 is a minimum-cost perfect matching on a brute-force cost."""
    diff = np.abs(x[:, None, :] - y[None, :, :])
    if metric == "torus":
        diff = np.minimum(np.mod(diff, period), period - np.mod(diff, period))
    cost = (diff**2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return math.sqrt(cost[rows, cols].mean())


@pytest.mark.parametrize("path", ["sorted", "emd"])
def test_1d_gaussians_match_closed_form(path):
    m1, s1, m2, s2, n = 0.3, 1.0, -0.5, 1.7, 1000
    x, y = gaussian_quantiles(m1, s1, n), gaussian_quantiles(m2, s2, n)
    np.random.default_rng(1).shuffle(y)
    if path == "sorted":
        got = w2(x, y)
    else:
        got = math.sqrt(wmod._w2_sq_emd(cost_matrix(x[:, None], y[:, None]), 10**8))
    exact = math.sqrt((m1 - m2) ** 2 + (s1 - s2) ** 2)
    # The quantile grid has second moment c = mean(Phi^-1(u_i)^2) < 1, so the discrete value is
    # sqrt(dm^2 + c ds^2) exactly; the only deviation from the closed form is that (1 - c) term.
    c = np.mean(norm.ppf((np.arange(n) + 0.5) / n) ** 2)
    assert got == pytest.approx(math.sqrt((m1 - m2) ** 2 + c * (s1 - s2) ** 2), rel=1e-10)
    assert abs(got - exact) < 2e-3


def test_1d_gaussians_random_samples_within_sampling_error():
    m1, s1, m2, s2, n = 1.0, 0.5, 0.2, 1.3, 200_000
    rng = np.random.default_rng(7)
    x, y = rng.normal(m1, s1, n), rng.normal(m2, s2, n)
    exact = math.sqrt((m1 - m2) ** 2 + (s1 - s2) ** 2)
    # Leading error: the sample means and standard deviations; W2 is 1-Lipschitz in (dm, ds).
    sigma = math.sqrt((s1**2 + s2**2) / n) + math.sqrt((s1**2 + s2**2) / (2 * n))
    assert abs(w2(x, y) - exact) < 5 * sigma


def test_sorted_1d_formula_equals_emd_for_unequal_sizes():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=157), rng.gamma(2.0, size=101)
    sorted_sq = wmod._w2_sq_sorted_1d(x, y)
    emd_sq = wmod._w2_sq_emd(cost_matrix(x[:, None], y[:, None]), 10**8)
    assert sorted_sq == pytest.approx(emd_sq, rel=1e-10)
    assert w2(x, y) == pytest.approx(math.sqrt(emd_sq), rel=1e-10)


@pytest.mark.parametrize("metric", ["euclidean", "torus"])
def test_emd_equals_optimal_assignment(metric):
    rng = np.random.default_rng(3)
    x = rng.uniform(-math.pi, math.pi, size=(40, 2))
    y = rng.uniform(-math.pi, math.pi, size=(40, 2)) + np.array([1.0, 0.0])
    assert w2(x, y, metric=metric) == pytest.approx(assignment_w2(x, y, metric), rel=1e-10)


def test_self_distance_is_zero():
    x = np.random.default_rng(4).normal(size=(300, 2))
    assert w2(x, x) < 1e-7
    assert w2(x, x[::-1], metric="torus") < 1e-7


def test_translate_by_v_has_distance_norm_v():
    x = np.random.default_rng(5).normal(size=(250, 2))
    v = np.array([0.3, -0.4])
    y = (x + v)[np.random.default_rng(6).permutation(250)]
    assert w2(x, y) == pytest.approx(0.5, rel=1e-10)


def test_torus_shift_by_a_period_is_zero():
    x = np.random.default_rng(8).uniform(-math.pi, math.pi, size=(200, 2))
    shifted = x + np.array([2 * math.pi, 0.0])
    assert w2(x, shifted, metric="torus") < 1e-7
    assert w2(x, shifted) == pytest.approx(2 * math.pi, rel=1e-10)  # Euclidean sees the shift
    assert w2(x, x + np.array([0.0, 1.0]), metric="torus", period=1.0) < 1e-7


def test_torus_pair_across_the_seam():
    delta = 0.1
    a, b = np.array([-math.pi + delta]), np.array([math.pi - delta])
    assert w2(a, b, metric="torus") == pytest.approx(2 * delta, rel=1e-10)
    assert w2(a, b) == pytest.approx(2 * math.pi - 2 * delta, rel=1e-10)


def test_torus_cost_matrix_chunks_match_brute_force(monkeypatch):
    monkeypatch.setattr(wmod, "_CHUNK_ELEMENTS", 10)  # forces many row blocks
    rng = np.random.default_rng(9)
    x, y = rng.uniform(-4, 4, size=(23, 3)), rng.uniform(-4, 4, size=(17, 3))
    diff = x[:, None, :] - y[None, :, :]
    # Independent form: the shortest of the images diff + k * period, k in {-2..2}.
    images = diff[..., None] + 2 * math.pi * np.arange(-2, 3)
    expected = (np.abs(images).min(-1) ** 2).sum(-1)
    np.testing.assert_allclose(cost_matrix(x, y, "torus"), expected, rtol=1e-12, atol=1e-12)


def test_disjoint_subsets_are_disjoint():
    i, j = wmod._disjoint_subsets(100, 50, np.random.default_rng(0))
    assert len(i) == len(j) == 50
    assert set(i).isdisjoint(j)
    assert set(i) | set(j) == set(range(100))


def test_noise_floor_uses_disjoint_halves():
    # 2n distinct integers: any two disjoint n-subsets differ by >= 1 at every quantile, so W2 >= 1;
    # overlapping subsets could pair equal points and go below that.
    n = 50
    stats = w2_noise_floor(np.arange(2 * n, dtype=float), n=n, draws=4, generator=1)
    assert isinstance(stats, W2Stats) and stats.n == n and len(stats.values) == 4
    assert min(stats.values) >= 1.0 - 1e-12
    with pytest.raises(ValueError, match=r"needs 2\*n = 100 reference points.*got 99"):
        w2_noise_floor(np.arange(2 * n - 1, dtype=float), n=n, draws=1, generator=1)


def test_noise_floor_matches_two_independent_samples():
    rng = np.random.default_rng(10)
    ref = rng.normal(size=(4000, 2))
    floor = w2_noise_floor(ref, n=400, draws=3, generator=11)
    independent = [w2(rng.normal(size=(400, 2)), rng.normal(size=(400, 2))) for _ in range(3)]
    assert floor.mean == pytest.approx(np.mean(independent), rel=0.3)
    assert floor.mean > 0.05  # two samples of 400 points in 2-D are never close to W2 = 0


def test_subsampled_stats_on_a_translated_copy():
    x = np.random.default_rng(12).normal(size=(120, 2))
    v = np.array([0.6, 0.8])
    stats = w2_subsampled(x, x + v, n=120, draws=3, generator=np.random.default_rng(0))
    np.testing.assert_allclose(stats.values, 1.0, rtol=1e-10)
    assert stats.mean == pytest.approx(1.0, rel=1e-10) and stats.sd < 1e-9 and stats.n == 120
    sub = w2_subsampled(x, x + v, n=60, draws=3, generator=5)
    assert sub == w2_subsampled(x, x + v, n=60, draws=3, generator=5)  # reproducible from the seed
    assert sub.sd == pytest.approx(np.std(sub.values, ddof=1))


def test_with_floor_report_is_json_ready():
    rng = np.random.default_rng(13)
    ref, gen = rng.uniform(-3, 3, size=(400, 2)), rng.uniform(-3, 3, size=(300, 2)) + 1.0
    report = w2_with_floor(ref, gen, n=150, draws=2, generator=0, metric="torus")
    assert set(report) == {"w2", "w2_sd", "w2_floor", "w2_floor_sd", "n", "draws"}
    assert report["n"] == 150 and report["draws"] == 2
    assert report["w2"] > report["w2_floor"] > 0
    json.dumps(report, allow_nan=False)


def test_torch_input_matches_numpy():
    x = torch.randn(80, 2, dtype=torch.float32, requires_grad=True)
    y = torch.randn(90, 2, dtype=torch.float32)
    assert w2(x, y) == pytest.approx(w2(x.detach().double().numpy(), y.double().numpy()), rel=1e-12)


def test_input_validation():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        w2(x, np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="NaN or inf"):
        w2(np.array([0.0, np.inf]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(10, 2\) and \(10, 3\)"):
        w2(x, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="shape"):
        w2(np.zeros((2, 2, 2)), x)
    with pytest.raises(ValueError, match="empty"):
        w2(np.zeros((0, 2)), x)
    with pytest.raises(ValueError, match="unknown metric"):
        w2(x, x, metric="manhattan")
    with pytest.raises(ValueError, match="fewer than the subsample size"):
        w2_subsampled(x, x, n=11, draws=1, generator=0)


def test_solver_that_stops_early_raises_instead_of_returning():
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=(200, 2)), rng.normal(size=(200, 2))
    with pytest.raises(BoltzflowError, match="num_iter_max=10 "):
        w2(x, y, num_iter_max=10)
