"""Force matching on internal-coordinate flows: Cartesian forces, the eq. (4) loss, the eq. (5) weights (float64)."""

import pytest
import torch

from boltzflow.flows.ic_flow import ICStats, ic_smooth_flow, ic_spline_flow
from boltzflow.flows.zmatrix import build_zmatrix
from boltzflow.training.energy_fit import pack_forces
from boltzflow.training.force_matching import (
    eq5_objective,
    flow_forces,
    fm_loss,
    force_matching_error,
    forces_in_kt,
)
from boltzflow.training.losses import force_matching, nll

BRANCHED = [(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)]  # 6 atoms: 5 bonds, 4 angles, 3 torsions


def tiny_flow(kind: str = "smooth", seed: int = 0):
    zm = build_zmatrix(BRANCHED, 6)
    loc = torch.tensor([0.15] * 5 + [1.9] * 4 + [2.5, -1.0, 0.3])
    scale = torch.tensor([0.01] * 5 + [0.1] * 4 + [1.0, 0.3, 1.0])  # torsion 10 narrow, 9 and 11 wide
    if kind == "smooth":
        flow = ic_smooth_flow(zm, ICStats(loc, scale), n_layers=1, components=2, hidden=(8,))
    else:
        flow = ic_spline_flow(zm, ICStats(loc, scale), n_layers=1, bins=4, hidden=(8,))
    flow = flow.double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.15 * torch.randn(p.shape, generator=gen))
    return flow


def frames(flow, n: int = 4, seed: int = 3) -> torch.Tensor:
    with torch.no_grad():
        return flow.sample(n, torch.Generator().manual_seed(seed)).x


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_cartesian_flow_force_is_minus_the_gradient_of_minus_log_q(kind):
    flow = tiny_flow(kind)
    x = frames(flow)
    force = flow_forces(flow, x)
    u = lambda v: -flow.log_prob(v)  # noqa: E731  the flow potential, kT
    eps, fd = 1e-6, torch.zeros_like(x)
    with torch.no_grad():
        for k in range(x.shape[1]):
            e = torch.zeros_like(x)
            e[:, k] = eps
            fd[:, k] = -(u(x + e) - u(x - e)) / (2 * eps)
    torch.testing.assert_close(force, fd, rtol=1e-5, atol=1e-5 * float(fd.abs().max()))
    # the IC Jacobian makes q invariant under rigid motions: zero net force and torque
    torch.testing.assert_close(force.unflatten(-1, (6, 3)).sum(1), torch.zeros(len(x), 3), atol=1e-8, rtol=0)
    torque = torch.linalg.cross(x.unflatten(-1, (6, 3)), force.unflatten(-1, (6, 3)), dim=-1).sum(1)
    torch.testing.assert_close(torque, torch.zeros(len(x), 3), atol=1e-7, rtol=0)


def test_fm_loss_is_zero_on_the_flows_own_forces_and_positive_otherwise():
    flow = tiny_flow()
    x = frames(flow, 6)
    own = pack_forces(x, flow_forces(flow, x))
    assert float(fm_loss(x.shape[1])(flow, own).detach()) == pytest.approx(0.0, abs=1e-20)
    assert force_matching_error(flow, x, flow_forces(flow, x), chunk_size=4).fme == pytest.approx(0.0, abs=1e-20)
    shifted = pack_forces(x, flow_forces(flow, x) + 0.5)
    assert float(fm_loss(x.shape[1])(flow, shifted).detach()) == pytest.approx(0.25 * x.shape[1])
    err = force_matching_error(flow, x, flow_forces(flow, x) + 0.5, chunk_size=4)
    assert err.fme == pytest.approx(0.25 * x.shape[1]) and err.rmse == pytest.approx(0.5) and err.n == 6


def test_fm_loss_parameter_gradient_matches_finite_differences():
    flow = tiny_flow()
    x = frames(flow, 3)
    target = pack_forces(x, flow_forces(flow, x) + torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))
    loss_fn = fm_loss(x.shape[1])
    params = [p for p in flow.parameters()]
    grads = torch.autograd.grad(loss_fn(flow, target), params)
    gen = torch.Generator().manual_seed(2)
    direction = [torch.randn(p.shape, generator=gen) for p in params]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))

    def shifted(h: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(h * d)
        value = float(loss_fn(flow, target).detach())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(h * d)
        return value

    eps = 1e-7  # the loss is strongly curved (bond scales of 0.01 nm): larger steps carry O(eps²) bias
    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-6)


def test_eq5_weights_are_a_convex_combination():
    flow = tiny_flow()
    x = frames(flow, 5)
    f = flow_forces(flow, x) + 1.0
    batch = pack_forces(x, f)
    loss = eq5_objective(x.shape[1], kl_weight=0.0, force_weight=0.001)
    expected = 0.999 * nll(flow, x) + 0.001 * force_matching(flow, x, f, reduction="mean")
    torch.testing.assert_close(loss(flow, batch), expected)
    torch.testing.assert_close(eq5_objective(x.shape[1])(flow, batch), nll(flow, x))
    summed = eq5_objective(x.shape[1], force_weight=0.001, force_reduction="sum")
    torch.testing.assert_close(summed(flow, batch), 0.999 * nll(flow, x) + 0.001 * force_matching(flow, x, f))


def test_fm_mean_reduction_is_the_per_component_mse():
    """The default of eq5_objective (paper 004's code): the squared error per Cartesian component; 1 kT/nm off
    in every component gives exactly 1, against D for eq. (4)'s sum."""
    flow = tiny_flow()
    x = frames(flow, 4)
    f = flow_forces(flow, x) + 1.0
    mean = force_matching(flow, x, f, create_graph=False, reduction="mean")
    assert float(mean) == pytest.approx(1.0, rel=1e-9)
    assert float(force_matching(flow, x, f, create_graph=False)) == pytest.approx(x.shape[1], rel=1e-9)
    with pytest.raises(ValueError, match="reduction"):
        force_matching(flow, x, f, reduction="max")


@pytest.mark.parametrize("kw, key", [({"kl_weight": -0.1}, "kl_weight"), ({"force_weight": 1.5}, "force_weight"),
                                     ({"kl_weight": 0.6, "force_weight": 0.6}, "kl_weight \\+ force_weight")])
def test_eq5_rejects_weights_outside_the_simplex(kw, key):
    with pytest.raises(ValueError, match=key):
        eq5_objective(18, **kw)


def test_forces_in_kt_divides_by_kt():
    f = torch.tensor([2.494338785])  # kJ/mol/nm = R * 300 K
    torch.testing.assert_close(forces_in_kt(f, 300.0), torch.tensor([1.0]), rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="temperature_kelvin"):
        forces_in_kt(f, 0.0)
