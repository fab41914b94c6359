"""Histogram KL and TV against hand-computed masses and scipy."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from boltzflow.eval.histograms import HistogramDivergence, histogram_divergence


def test_identical_samples_give_zero():
    p = np.random.default_rng(0).uniform(-math.pi, math.pi, size=(5000, 2))
    out = histogram_divergence(p, p[::-1])
    assert isinstance(out, HistogramDivergence) and out.bins == 60
    assert out.kl == 0.0 and out.tv == 0.0


def test_disjoint_supports_give_tv_one():
    rng = np.random.default_rng(1)
    p = rng.uniform([-3.0, -3.0], [-0.1, 3.0], size=(2000, 2))
    q = rng.uniform([0.1, -3.0], [3.0, 3.0], size=(2000, 2))
    bins, eps = 20, 1e-10
    out = histogram_divergence(p, q, bins=bins, eps=eps)
    assert out.tv == pytest.approx(1.0, rel=1e-14)
    counts, _ = np.histogramdd(p, bins=bins, range=[(-math.pi, math.pi)] * 2)
    mass = counts[counts > 0] / len(p)
    assert out.kl == pytest.approx(np.sum(mass * np.log(mass / eps)), rel=1e-12)  # every P-bin has Q = 0


def test_hand_computed_2x2_case():
    # bins = 2 on [0, 1]^2. P: 3 points in cell (0, 0), 1 in (1, 1) -> masses .75, .25.
    # Q: 2 in (0, 0), 2 in (0, 1) -> .5, .5.  TV = (|.75-.5| + |0-.5| + |.25-0|) / 2 = 0.5.
    p = np.array([[0.1, 0.1], [0.2, 0.3], [0.4, 0.2], [0.9, 0.8]])
    q = np.array([[0.1, 0.2], [0.3, 0.3], [0.2, 0.7], [0.4, 0.9]])
    eps = 1e-6
    out = histogram_divergence(p, q, bins=2, range=((0, 1), (0, 1)), eps=eps)
    assert out.tv == pytest.approx(0.5, rel=1e-14)
    # The occupied Q-bin is used as is; the empty one gets mass eps inside the log.
    assert out.kl == pytest.approx(0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / eps), rel=1e-14)


def test_matches_scipy_entropy_when_both_cover_all_bins():
    rng = np.random.default_rng(2)
    p = rng.normal(0.0, 1.0, size=20_000)
    q = rng.normal(0.3, 1.2, size=20_000)
    out = histogram_divergence(p, q, bins=8, range=(-1.5, 1.5), eps=0.0)
    pc, _ = np.histogram(p, bins=8, range=(-1.5, 1.5))
    qc, _ = np.histogram(q, bins=8, range=(-1.5, 1.5))
    assert (pc > 0).all() and (qc > 0).all()
    assert out.kl == pytest.approx(entropy(pc, qc), rel=1e-12)
    assert out.tv == pytest.approx(0.5 * np.abs(pc / pc.sum() - qc / qc.sum()).sum(), rel=1e-12)
    assert out.kl > 0.01


def test_torch_input_and_three_dimensions():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(3000, 3, generator=g, dtype=torch.float64)
    out = histogram_divergence(p, p.numpy() * 0.5, bins=2, range=[(0, 1)] * 3, eps=0.0)
    # q lives in the lower octant cell only: TV = 1 - P(lower cell); KL = inf is impossible since P > 0 there.
    lower = float((p < 0.5).all(-1).double().mean())
    assert out.tv == pytest.approx(1 - lower, rel=1e-12)
    assert out.kl == math.inf


def test_input_validation():
    p = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"\(10, 2\) and \(10, 3\)"):
        histogram_divergence(p, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        histogram_divergence(p, np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="one \\(low, high\\) pair per dimension"):
        histogram_divergence(p, p, range=((0, 1),) * 3)
    with pytest.raises(ValueError, match="no q samples fall inside range"):
        histogram_divergence(p, p + 10.0)
    with pytest.raises(ValueError, match="bins must be at least 1"):
        histogram_divergence(p, p, bins=0)
