"""The one evaluation: every metric against a closed form or a constructed answer."""

import math

import numpy as np
import pytest
import torch

from boltzflow.eval.evaluate import (
    Draw,
    clip_log_weights,
    delta_f,
    evaluate,
    mean_sd,
    ramachandran_tv,
    weighted_populations,
)
from boltzflow.eval.weights import ess_fraction
from boltzflow.systems.base import System


class Gaussian1D(System):
    """u = x^2 / 2 on R: log Z = log sqrt(2 pi)."""

    name = "gauss"
    event_shape = (1,)
    log_z = 0.5 * math.log(2 * math.pi)

    def energy(self):
        from boltzflow.energies.base import Energy

        class U(Energy):
            event_shape = (1,)

            def energy(self, x):
                return 0.5 * (x**2).sum(-1)

        return U()


def _draw(gen, n, scale):
    """Samples of N(0, scale^2) with weights against N(0, 1) (exact log q)."""
    x = scale * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    log_q = -0.5 * (x[:, 0] / scale) ** 2 - math.log(scale * math.sqrt(2 * math.pi))
    u = 0.5 * x[:, 0] ** 2
    return Draw(x, -u - log_q, u)


def test_ess_matches_the_gaussian_closed_form():
    # q = N(0, s^2), p = N(0, 1): ESS/n -> 1 / E_q[(p/q)^2] with E_q[(p/q)^2] =
    # s^2 / sqrt(2 s^2 - 1)
    s = 1.3
    gen = torch.Generator().manual_seed(0)
    draws = [_draw(gen, 200_000, s) for _ in range(4)]
    res = evaluate(Gaussian1D(), draws)
    exact = math.sqrt(2 * s**2 - 1) / s**2
    assert res["ess_fraction"]["mean"] == pytest.approx(exact, abs=0.01)
    assert res["ess_fraction"]["sd"] < 0.01 and len(res["ess_fraction"]["values"]) == 4
    assert res["log_z"]["error"] == pytest.approx(0.0, abs=0.01)


def test_clipping_caps_the_top_fraction_only():
    log_w = torch.arange(10_000, dtype=torch.float64)
    clipped = clip_log_weights(log_w, 1e-3)  # k = 10: the 10 largest become the 10th largest (9990)
    assert torch.equal(clipped[:9990], log_w[:9990]) and (clipped[9990:] == 9990).all()
    assert ess_fraction(clipped) > ess_fraction(log_w)


def test_populations_and_delta_f():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 40_000)
    # weights 3:1 for state 0 vs 1 and equal counts: P(0) = 0.75, dF(0) = -ln 3
    log_w = np.where(labels == 0, math.log(3.0), 0.0)
    pops = weighted_populations(labels, log_w, ["a", "b"])
    assert pops["a"]["mean"] == pytest.approx(0.75, abs=0.01)
    assert pops["a"]["lo"] < pops["a"]["mean"] < pops["a"]["hi"]
    assert delta_f(pops["a"])["mean"] == pytest.approx(-math.log(3.0), abs=0.05)


def test_populations_when_one_sample_carries_all_the_weight():
    """ESS of one sample: the estimate is that sample's state; ~37 % of resamples miss it, so no interval."""
    labels = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    log_w = np.array([0.0] + [-2000.0] * 9)  # exp underflows to exactly 0 for the other nine
    pops = weighted_populations(labels, log_w, ["a", "b"])  # warnings are errors: no 0/0
    assert pops["b"] == {"mean": 1.0, "lo": 0.0, "hi": 1.0} and pops["a"] == {"mean": 0.0, "lo": 0.0, "hi": 1.0}
    # two samples carry equal weight out of 400: a resample misses both with probability ~e^-2 (13 %), still > 5 %
    labels, log_w = np.zeros(400, dtype=int), np.full(400, -2000.0)
    log_w[:2], labels[0] = 0.0, 1
    assert weighted_populations(labels, log_w, ["a", "b"])["b"]["mean"] == pytest.approx(0.5)
    # ten equal weight carriers: a miss has probability ~e^-10, the interval is the bootstrap's
    log_w[:10] = 0.0
    pops = weighted_populations(labels, log_w, ["a", "b"])
    assert pops["b"]["mean"] == pytest.approx(0.1) and 0 <= pops["b"]["lo"] < 0.1 < pops["b"]["hi"] < 1


def test_ramachandran_tv_zero_for_identical_and_one_for_disjoint():
    gen = np.random.default_rng(0)
    a = gen.uniform(-3, -2, (1000, 2, 2))
    b = gen.uniform(2, 3, (1000, 2, 2))
    assert ramachandran_tv(a, a) == 0.0
    assert ramachandran_tv(a, b) == pytest.approx(1.0)


def test_mean_sd_and_empty_draws():
    assert mean_sd([1.0, 3.0]) == {"mean": 2.0, "sd": math.sqrt(2.0), "values": [1.0, 3.0]}
    with pytest.raises(ValueError, match="at least one draw"):
        evaluate(Gaussian1D(), [])


def test_samples_without_weights_count_once_each():
    # The same samples scored without weights and with equal log weights give the same populations and the same
    # energy histogram; ESS and log Z, which need weights, are absent instead of a meaningless 100 %.
    gen = torch.Generator().manual_seed(3)
    draws = [_draw(gen, 2000, 1.3) for _ in range(4)]
    states = (lambda x: (x[:, 0] > 0.5).long().numpy(), ["low", "high"])
    plain = evaluate(Gaussian1D(), [d._replace(log_w=None) for d in draws], states=states)
    equal = evaluate(Gaussian1D(), [d._replace(log_w=torch.full_like(d.log_w, -7.0)) for d in draws], states=states)
    assert plain["weighted"] is False and equal["weighted"] is True
    assert not {"ess_fraction", "ess_fraction_clipped", "n_dropped", "log_z"} & set(plain)
    assert plain["populations"] == equal["populations"]
    x = torch.cat([d.x for d in draws])[:, 0]
    assert plain["populations"]["high"]["mean"] == pytest.approx(float((x > 0.5).double().mean()), abs=1e-12)
    assert plain["energy_histogram"]["model"] == equal["energy_histogram"]["model"]
    assert "reweighted" not in plain["energy_histogram"]


def test_draws_must_all_have_weights_or_none():
    gen = torch.Generator().manual_seed(4)
    a, b = _draw(gen, 100, 1.0), _draw(gen, 100, 1.0)
    with pytest.raises(ValueError, match="every draw has log weights or none"):
        evaluate(Gaussian1D(), [a, b._replace(log_w=None)])
