"""Losses against closed forms: reverse KL of Gaussians, force matching of an exact flow, the combinator."""

import math

import pytest
import torch

from boltzflow.flows.base import StandardNormal
from boltzflow.flows.core import Affine
from boltzflow.flows.flow import Flow
from boltzflow.flows.realnvp import RealNVPConfig, realnvp
from boltzflow.training.losses import (
    StepContext,
    force_matching,
    importance_weighted_nll,
    linlog_cut,
    nll,
    reverse_kl,
    reverse_kl_terms,
    sample_reverse_kl,
    weighted,
    weighted_nll,
)
from boltzflow.training.sources import SampleBatch, draw_samples


def gaussian_flow(loc, scale) -> Flow:
    loc, scale = torch.as_tensor(loc), torch.as_tensor(scale)
    return Flow(StandardNormal(len(loc)), Affine(loc, scale))


class GaussianEnergy:
    """u(x) = sum (x - m)^2 / (2 s^2); log Z = sum log(sqrt(2 pi) s)."""

    def __init__(self, m, s):
        self.m, self.s = torch.as_tensor(m), torch.as_tensor(s)

    def __call__(self, x):
        return (((x - self.m) / self.s) ** 2).sum(-1) / 2

    def force(self, x):
        return -(x - self.m) / self.s**2

    @property
    def log_z(self):
        return float(torch.log(math.sqrt(2 * math.pi) * self.s).sum())


def kl_gauss(mq, sq, mp, sp) -> float:
    """KL(N(mq, sq^2) || N(mp, sp^2)), diagonal, summed over dimensions."""
    mq, sq, mp, sp = map(torch.as_tensor, (mq, sq, mp, sp))
    return float((torch.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum())


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_reverse_kl_matches_closed_form(tau):
    mq, sq, mp, sp = [0.3, -1.0], [0.8, 1.5], [0.0, 0.5], [1.0, 1.2]
    flow, energy = gaussian_flow(mq, sq), GaussianEnergy(mp, sp)
    gen = torch.Generator().manual_seed(1)
    value = float(reverse_kl(flow, energy, 400_000, gen, temperature_factor=tau))
    sp_tau = [s * math.sqrt(tau) for s in sp]  # exp(-u / tau) is N(mp, tau sp^2)
    log_z_tau = GaussianEnergy(mp, sp_tau).log_z
    assert value == pytest.approx(kl_gauss(mq, sq, mp, sp_tau) - log_z_tau, abs=0.01)


def test_reverse_kl_is_minus_log_z_for_the_exact_flow_and_has_gradients():
    net = realnvp(RealNVPConfig(dim=2, n_layers=2, hidden=[8]))
    energy = GaussianEnergy([0.0, 0.0], [1.0, 1.0])
    loss = reverse_kl(net, energy, 1000, torch.Generator().manual_seed(0))
    assert float(loss.detach()) == pytest.approx(
        -energy.log_z, abs=1e-10
    )  # identity flow: u + log q is constant
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_importance_weighted_nll_is_the_cross_entropy_to_the_target(tau):
    # E_p[-log q] for Gaussians: sum log(sqrt(2 pi) sq) + (sp^2 + (mp - mq)^2) / (2 sq^2); q wider than p.
    mq, sq, mp, sp = [0.3, -1.0], [1.6, 2.0], [0.0, 0.5], [0.7, 0.8]
    flow, energy = gaussian_flow(mq, sq), GaussianEnergy(mp, sp)
    value = float(importance_weighted_nll(flow, energy, 400_000, torch.Generator().manual_seed(2), tau))
    mq, sq, mp = map(torch.as_tensor, (mq, sq, mp))
    sp_tau = torch.as_tensor(sp) * math.sqrt(tau)
    exact = float((torch.log(math.sqrt(2 * math.pi) * sq) + (sp_tau**2 + (mp - mq) ** 2) / (2 * sq**2)).sum())
    assert value == pytest.approx(exact, abs=0.02)


def test_importance_weighted_nll_has_gradients_and_skips_nonfinite_energies():
    net = realnvp(RealNVPConfig(dim=2, n_layers=2, hidden=[8]))
    energy = GaussianEnergy([0.5, 0.0], [1.0, 1.0])
    half_bad = lambda v: torch.where(v[:, 0] > 0, energy(v), torch.full(v.shape[:1], math.nan))  # noqa: E731
    loss = importance_weighted_nll(net, half_bad, 500, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    all_bad = importance_weighted_nll(net, lambda v: torch.full(v.shape[:1], math.nan), 10)
    assert math.isnan(float(all_bad))
    with pytest.raises(ValueError, match="n >= 1"):
        importance_weighted_nll(net, energy, 0)


def test_reverse_kl_excludes_and_counts_nonfinite_energies():
    flow = gaussian_flow([0.0], [1.0])

    def energy(x):
        u = x[:, 0] ** 2 / 2
        u = torch.where(x[:, 0] > 1.0, torch.full_like(u, math.inf), u)
        return torch.where(x[:, 0] < -1.5, torch.full_like(u, math.nan), u)

    terms = reverse_kl_terms(flow, energy, 5000, torch.Generator().manual_seed(3))
    x = flow.sample(5000, torch.Generator().manual_seed(3)).x[:, 0]
    bad = (x > 1.0) | (x < -1.5)
    assert terms.n_nonfinite == int(bad.sum()) > 0 and terms.n == 5000
    expected = -0.5 * math.log(2 * math.pi)  # u + log q is constant here
    assert float(terms.loss) == pytest.approx(expected, abs=1e-12)
    all_bad = reverse_kl_terms(flow, lambda v: torch.full(v.shape[:1], math.nan), 10)
    assert all_bad.n_nonfinite == 10 and math.isnan(float(all_bad.loss))


def test_force_matching_zero_for_exact_flow_and_positive_otherwise():
    energy = GaussianEnergy([0.5, -0.2, 1.0], [0.7, 1.3, 0.9])
    x = torch.randn(64, 3)
    exact = gaussian_flow([0.5, -0.2, 1.0], [0.7, 1.3, 0.9])
    assert float(force_matching(exact, x, energy.force(x), create_graph=False)) == pytest.approx(
        0.0, abs=1e-20
    )
    wrong = gaussian_flow([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    expected = ((-x - energy.force(x)) ** 2).sum(-1).mean()  # grad log N(0, I) = -x
    value = force_matching(wrong, x, energy.force(x), create_graph=False)
    assert float(value) > 0.1
    torch.testing.assert_close(value, expected)


def test_force_matching_trains_under_no_grad_context_and_backpropagates():
    net = realnvp(RealNVPConfig(dim=2, n_layers=2, hidden=[8]))
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    x = torch.randn(16, 2)
    loss = force_matching(net, x, -x + 0.3)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    with torch.no_grad():
        v = force_matching(net, x, -x + 0.3, create_graph=False)
    torch.testing.assert_close(v, loss.detach())
    with pytest.raises(ValueError, match="same shape"):
        force_matching(net, x, x[:, :1])


def test_weighted_sums_terms_and_validates():
    flow, x = gaussian_flow([0.0, 0.0], [1.0, 2.0]), torch.randn(32, 2)
    energy = GaussianEnergy([0.0, 0.0], [1.0, 1.0])
    fm = lambda f, b: force_matching(f, b, energy.force(b))  # noqa: E731
    loss = weighted((0.25, nll), (0.75, fm), (0.0, lambda f, b: 1 / 0))
    torch.testing.assert_close(loss(flow, x), 0.25 * nll(flow, x) + 0.75 * fm(flow, x))
    for bad in [(), ((-1.0, nll),), ((0.0, nll),), ((1.0, "nll"),)]:
        with pytest.raises(ValueError):
            weighted(*bad)


def test_linlog_cut():
    u = torch.tensor([-5.0, 10.0, 1e3, 1e3 + math.e - 1, math.inf, math.nan])
    out = linlog_cut(u, high=1e3, max_value=1e9)
    torch.testing.assert_close(out[:4], torch.tensor([-5.0, 10.0, 1e3, 1e3 + 1.0]))
    assert out[4] == 1e9 and math.isnan(float(out[5]))
    assert float(linlog_cut(torch.tensor(1e300), high=10.0, max_value=100.0)) == 100.0


def _ctx(seed=0):
    return StepContext(0, 0, "test", torch.Generator().manual_seed(seed), {})


def test_batch_losses_equal_their_sampling_twins_on_the_same_draw():
    """sample_reverse_kl / weighted_nll on a drawn batch = reverse_kl / importance_weighted_nll on the same draw."""
    flow, energy = gaussian_flow([0.3, -1.0], [1.6, 2.0]), GaussianEnergy([0.0, 0.5], [0.7, 0.8])
    batch = draw_samples(flow, energy, 2000, torch.Generator().manual_seed(4))
    ctx = _ctx()
    torch.testing.assert_close(sample_reverse_kl(flow, batch, ctx),
                               reverse_kl(flow, energy, 2000, torch.Generator().manual_seed(4)))
    torch.testing.assert_close(weighted_nll(flow, batch, ctx),
                               importance_weighted_nll(flow, energy, 2000, torch.Generator().manual_seed(4)))
    w = torch.softmax(batch.log_w, 0)
    assert ctx.metrics["ess_fraction"] == pytest.approx(float(1 / (w**2).sum() / 2000))


def test_weighted_nll_with_equal_weights_is_the_nll_and_skips_bad_rows():
    flow, x = gaussian_flow([0.0, 0.0], [1.0, 2.0]), torch.randn(50, 2)
    torch.testing.assert_close(weighted_nll(flow, SampleBatch(x, torch.zeros(50))), nll(flow, x))
    log_w = torch.zeros(50)
    log_w[:10] = math.nan
    torch.testing.assert_close(weighted_nll(flow, SampleBatch(x, log_w)), nll(flow, x[10:]))
    assert math.isnan(float(weighted_nll(flow, SampleBatch(x, torch.full((50,), -math.inf)))))


def test_sample_reverse_kl_leaves_out_and_counts_nonfinite_values():
    u, log_q = torch.tensor([1.0, math.inf, 3.0, math.nan]), torch.tensor([0.5, 0.5, -1.0, 0.0])
    ctx = _ctx()
    value = sample_reverse_kl(None, SampleBatch(torch.zeros(4, 1), -u - log_q, log_q, u), ctx)
    assert float(value) == pytest.approx((1.5 + 2.0) / 2) and ctx.metrics["n_nonfinite"] == 2


def test_weighted_passes_the_context_and_logs_named_terms():
    flow, x = gaussian_flow([0.0, 0.0], [1.0, 2.0]), torch.randn(32, 2)
    seen = []

    def with_ctx(f, b, ctx):
        seen.append(ctx.stage)
        return nll(f, b) * 2

    loss = weighted((0.5, nll, "nll"), (0.25, with_ctx, "double"), (1.0, nll))
    ctx = _ctx()
    torch.testing.assert_close(loss(flow, x, ctx), 2.0 * nll(flow, x))
    assert seen == ["test"] and ctx.metrics == pytest.approx({"nll": float(nll(flow, x)),
                                                              "double": 2 * float(nll(flow, x))})
    plain = weighted((0.5, nll, "nll"), (0.5, nll))
    torch.testing.assert_close(plain(flow, x), nll(flow, x))  # callable without a context too
