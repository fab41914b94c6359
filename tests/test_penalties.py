"""Collision penalties (paper 001 eq. (17)), their loss factory and rejection: closed forms and autograd."""

import math

import numpy as np
import pytest
import torch

from boltzflow.flows.realnvp import RealNVPConfig, realnvp
from boltzflow.training import penalties as P
from boltzflow.training.losses import nll

PAIRS = np.array([[0, 1], [0, 2], [1, 2]])


def _three_atoms(d01: float, d02: float) -> torch.Tensor:
    """Atoms 0 at the origin, 1 on x at d01, 2 on y at d02 (so r12 = sqrt(d01^2 + d02^2))."""
    return torch.tensor([[0.0, 0.0, 0.0], [d01, 0.0, 0.0], [0.0, d02, 0.0]])


def test_hinge_value_and_gradient_closed_form():
    x = _three_atoms(0.1, 0.05).requires_grad_(True)
    eps = 0.17
    r12 = math.hypot(0.1, 0.05)
    pen = P.collision_penalty(x, PAIRS, eps)
    assert float(pen.detach()) == pytest.approx(((eps - 0.1) + (eps - 0.05) + (eps - r12)) / 3, rel=1e-12)
    (grad,) = torch.autograd.grad(pen, x)
    # d/dx1 of -(r01 + r12)/3: -(unit(x1 - x0) + unit(x1 - x2)) / 3
    u10 = np.array([1.0, 0.0, 0.0])
    u12 = np.array([0.1, -0.05, 0.0]) / r12
    np.testing.assert_allclose(grad[1].numpy(), -(u10 + u12) / 3, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad.sum(0).numpy(), 0.0, atol=1e-14)  # translation invariance


def test_hinge_zero_beyond_eps_and_batched():
    far = _three_atoms(0.3, 0.2)
    near = _three_atoms(0.1, 0.3)  # only pair (0, 1) is inside eps
    x = torch.stack([far, near])
    pen = P.collision_penalty(x, PAIRS, 0.17)
    assert pen.shape == (2,)
    assert float(pen[0]) == 0.0
    assert float(pen[1]) == pytest.approx(0.07 / 3, rel=1e-12)
    xg = far.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(P.collision_penalty(xg, PAIRS, 0.17), xg)
    assert float(g.abs().max()) == 0.0


def test_smooth_penalties_closed_form():
    x = _three_atoms(0.1, 0.3)
    r = np.array([0.1, 0.3, math.hypot(0.1, 0.3)])
    sq = P.squared_hinge_penalty(x, PAIRS, 0.17)
    assert float(sq) == pytest.approx(np.mean(np.maximum(0.17 - r, 0) ** 2) / 0.17, rel=1e-12)
    w = 0.01
    sp = P.softplus_penalty(x, PAIRS, 0.17, width=w)
    assert float(sp) == pytest.approx(np.mean(w * np.log1p(np.exp((0.17 - r) / w))), rel=1e-12)
    # the softplus hinge tends to eq. (17) as the width shrinks
    assert float(P.softplus_penalty(x, PAIRS, 0.17, width=1e-5)) == pytest.approx(
        float(P.collision_penalty(x, PAIRS, 0.17)), rel=1e-3
    )


def test_schedules():
    s = P.linear_anneal(5.0, 10)
    assert [s(0), s(5), s(10), s(20)] == [5.0, 2.5, 0.0, 0.0]
    assert P.constant(2.0)(123) == 2.0
    with pytest.raises(ValueError):
        P.linear_anneal(1.0, 0)


def _flow():
    torch.manual_seed(0)
    return realnvp(RealNVPConfig(dim=9, n_layers=2, hidden=[8]))


def test_loss_is_nll_plus_penalty_on_generated_samples():
    flow = _flow()
    batch = torch.randn(16, 9, generator=torch.Generator().manual_seed(1))
    loss_fn = P.nll_with_collision_penalty(PAIRS, lam=5.0, eps=2.0)  # eps large: every pair penalised
    torch.manual_seed(3)
    loss = loss_fn(flow, batch)
    torch.manual_seed(3)
    x_gen = flow.sample(16).x.reshape(16, 3, 3)
    expected = nll(flow, batch) + 5.0 * P.collision_penalty(x_gen, PAIRS, 2.0).mean()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    assert float(loss.detach()) > float(nll(flow, batch).detach())
    loss.backward()  # gradients reach the weights through the sampling path
    assert all(p.grad is not None for p in flow.parameters())


def test_annealed_loss_counts_training_epochs():
    flow = _flow()
    batch = torch.randn(8, 9, generator=torch.Generator().manual_seed(1))
    loss_fn = P.PenalisedNLL(
        PAIRS,
        P.linear_anneal(1.0, 2),
        2.0,
        P.collision_penalty,
        lambda x: x.reshape(-1, 3, 3),
        steps_per_epoch=2,
    )
    lams = []
    for _ in range(5):
        lams.append(loss_fn.lam)
        loss_fn(flow, batch)
    assert lams == [1.0, 1.0, 0.5, 0.5, 0.0]
    flow.eval()
    loss_fn(flow, batch)  # validation calls do not advance the epoch
    assert loss_fn.train_calls == 5
    with torch.no_grad():
        assert float(loss_fn(flow, batch)) == pytest.approx(
            float(nll(flow, batch)), rel=1e-12
        )  # lambda 0: pure NLL
    loss_fn.start_at(1)
    assert loss_fn.epoch == 1 and loss_fn.lam == 0.5


def test_reject_collisions():
    x = torch.stack([_three_atoms(0.3, 0.2), _three_atoms(0.1, 0.3), torch.full((3, 3), float("nan"))])
    rej = P.reject_collisions(x, PAIRS, 0.15)
    assert rej.accepted.tolist() == [True, False, False]
    assert rej.acceptance == pytest.approx(1 / 3)
    assert torch.equal(rej.x, x[:1])


def test_summed_hinge_closed_form():
    x = _three_atoms(0.1, 0.05)
    r12 = math.hypot(0.1, 0.05)
    expected = (0.17 - 0.1) + (0.17 - 0.05) + (0.17 - r12)
    assert float(P.collision_penalty_sum(x, PAIRS, 0.17)) == pytest.approx(expected, rel=1e-12)
    assert float(P.collision_penalty_sum(_three_atoms(0.3, 0.2), PAIRS, 0.17)) == 0.0


def test_summed_hinge_is_174_times_the_mean_reading_on_alanine():
    from boltzflow.systems import alanine_cartesian as ac

    pairs = ac.nonbonded_pairs()
    assert len(pairs) == 174
    rng = np.random.default_rng(0)
    x = torch.as_tensor(ac.reference_structure()[None] + 0.05 * rng.normal(size=(64, 22, 3))).requires_grad_(True)
    mean, total = P.collision_penalty(x, pairs, 0.3), P.collision_penalty_sum(x, pairs, 0.3)
    assert mean.shape == total.shape == (64,) and bool((mean > 0).all())
    torch.testing.assert_close(total, 174 * mean, rtol=1e-14, atol=0.0)
    (g_mean,) = torch.autograd.grad(mean.sum(), x)
    (g_sum,) = torch.autograd.grad(total.sum(), x)
    torch.testing.assert_close(g_sum, 174 * g_mean, rtol=1e-13, atol=1e-15)


def test_penalty_sum_model_adds_174_times_the_mean_models_penalty():
    from boltzflow.experiments.alanine_cartesian import CartesianScale
    from boltzflow.experiments.cartesian_training import make_loss
    from boltzflow.systems import alanine_cartesian as ac

    torch.manual_seed(0)
    flow = realnvp(RealNVPConfig(dim=66, n_layers=2, hidden=[8]), torch.zeros(66), torch.full((66,), 0.05))
    batch = 0.05 * torch.randn(32, 66, generator=torch.Generator().manual_seed(1))
    pairs, sc = ac.nonbonded_pairs(), CartesianScale()
    extra = {}
    for name in ("penalty", "penalty_sum"):
        torch.manual_seed(7)  # the same generated batch for both readings
        extra[name] = make_loss(name, pairs, sc, steps_per_epoch=1)(flow, batch) - nll(flow, batch)
    assert float(extra["penalty"].detach()) > 0
    torch.testing.assert_close(extra["penalty_sum"], 174 * extra["penalty"], rtol=1e-12, atol=0.0)
