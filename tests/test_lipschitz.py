"""Jacobians and bi-Lipschitz estimates against linear maps, closed-form derivatives and a RealNVP."""

import numpy as np
import pytest
import torch

from boltzflow.eval.lipschitz import (
    LipschitzEstimate,
    ball_supremum,
    bi_lipschitz,
    gaussian_ball_radius,
    jacobian_singular_values,
    jacobians,
)
from boltzflow.flows.core import Inverse
from boltzflow.flows.realnvp import RealNVPConfig, realnvp


def random_realnvp(dim: int, seed: int):
    """A RealNVP whose coupling nets are far from their identity initialisation."""
    flow = realnvp(RealNVPConfig(dim=dim, n_layers=4, hidden=[16], scale_clamp=2.0))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def forward_map(transform):
    """The transform's forward map, row-wise."""
    return lambda v: transform.forward(v)[0]


def test_linear_map_gives_extreme_singular_values_everywhere():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64) + 2 * torch.eye(3, dtype=torch.float64)
    z = torch.randn(50, 3, generator=g, dtype=torch.float64)
    jac = jacobians(lambda v: v @ a.T, z, chunk_size=7)
    assert jac.shape == (50, 3, 3)
    torch.testing.assert_close(jac, a.expand(50, 3, 3), rtol=0, atol=1e-14)
    s = np.linalg.svd(a.numpy(), compute_uv=False)
    fwd, inv = bi_lipschitz(lambda v: v @ a.T, z)
    assert isinstance(fwd, LipschitzEstimate) and fwd.n == 50 and fwd.q == 0.999
    assert fwd.max == pytest.approx(s[0], rel=1e-12) and fwd.quantile == pytest.approx(s[0], rel=1e-12)
    assert inv.max == pytest.approx(1 / s[-1], rel=1e-12)
    assert inv.quantile == pytest.approx(1 / s[-1], rel=1e-12)


def test_elementwise_map_with_known_derivative():
    # f(z) = z + 0.5 tanh(z): diagonal Jacobian 1 + 0.5 / cosh(z)^2, in (1, 1.5], equal to 1.5 at z = 0.
    g = torch.Generator().manual_seed(1)
    z = 2 * torch.randn(300, 2, generator=g, dtype=torch.float64)
    z[0] = 0.0

    def fn(v):
        return v + 0.5 * torch.tanh(v)

    deriv = 1 + 0.5 / torch.cosh(z) ** 2
    torch.testing.assert_close(jacobians(fn, z), torch.diag_embed(deriv), rtol=1e-13, atol=1e-14)
    fwd, inv = bi_lipschitz(fn, z, q=0.9)
    fwd_pts, inv_pts = deriv.max(-1).values.numpy(), 1 / deriv.min(-1).values.numpy()
    assert fwd.max == pytest.approx(1.5, rel=1e-13)
    assert fwd.quantile == pytest.approx(np.quantile(fwd_pts, 0.9), rel=1e-12)
    assert inv.max == pytest.approx(inv_pts.max(), rel=1e-12) and inv.max < 1.0
    assert inv.quantile == pytest.approx(np.quantile(inv_pts, 0.9), rel=1e-12)


def test_realnvp_jacobian_against_autograd_and_finite_differences():
    flow = random_realnvp(4, seed=2)
    fn = forward_map(flow.transform)
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    jac = jacobians(fn, z, chunk_size=4)
    for k in range(len(z)):
        slow = torch.autograd.functional.jacobian(lambda p: fn(p[None])[0], z[k])
        torch.testing.assert_close(jac[k], slow, rtol=1e-12, atol=1e-12)
        h = 1e-6
        fd = torch.stack(
            [(fn(z[k : k + 1] + h * e) - fn(z[k : k + 1] - h * e))[0] / (2 * h) for e in torch.eye(4)], -1
        )
        torch.testing.assert_close(jac[k], fd, rtol=1e-6, atol=1e-7)
    assert (jac - torch.eye(4)).abs().max() > 0.1  # the flow is not the identity


def test_realnvp_singular_values_give_logdet_and_inverse_constant():
    flow = random_realnvp(4, seed=4)
    fn = forward_map(flow.transform)
    inverse_fn = forward_map(Inverse(flow.transform))
    z = torch.randn(40, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    sv = jacobian_singular_values(fn, z, chunk_size=16)
    with torch.no_grad():
        x, logdet = flow.transform.forward(z)
    torch.testing.assert_close(sv.log().sum(-1), logdet, rtol=1e-10, atol=1e-10)
    # 1 / sigma_min(J_f(z)) is sigma_max of the inverse map's Jacobian at x = f(z).
    sv_inverse = jacobian_singular_values(inverse_fn, x)
    torch.testing.assert_close(1 / sv[:, -1], sv_inverse[:, 0], rtol=1e-10, atol=1e-12)
    fwd, inv = bi_lipschitz(fn, z, chunk_size=16)
    assert inv.max == pytest.approx(float(sv_inverse[:, 0].max()), rel=1e-10)
    assert fwd.max == pytest.approx(float(sv[:, 0].max()), rel=1e-14)
    assert fwd.max > 1.05 and inv.max > 1.05


def test_chunking_does_not_change_the_result():
    flow = random_realnvp(3, seed=6)
    fn = forward_map(flow.transform)
    z = torch.randn(25, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(
        jacobians(fn, z, chunk_size=4), jacobians(fn, z, chunk_size=1000), rtol=0, atol=1e-14
    )


def test_input_validation():
    fn = torch.clone
    with pytest.raises(ValueError, match=r"shape \(n, D\)"):
        jacobians(fn, torch.zeros(5))
    with pytest.raises(ValueError, match="NaN or inf"):
        jacobians(fn, torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"must map shape \(n, 2\) to \(n, 2\)"):
        jacobians(lambda v: v[:, :1], torch.zeros(3, 2))
    with pytest.raises(ValueError, match="q must be in"):
        bi_lipschitz(fn, torch.zeros(3, 2), q=1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        jacobians(fn, torch.zeros(3, 2), chunk_size=0)


def test_ball_supremum_finds_an_interior_maximum_the_samples_miss():
    # f_i(z) = z_i + 0.5 sin(2 z_i): J = diag(1 + cos(2 z_i)), sigma_max = 1 + max_i cos(2 z_i), sup 2 at z_i = 0.
    fn = lambda v: v + 0.5 * torch.sin(2 * v)  # noqa: E731
    g = torch.Generator().manual_seed(1)
    z = 1.0 + 0.3 * torch.rand(40, 3, generator=g, dtype=torch.float64)  # all far from 0: sample max < 1 - cos... < 2
    sample_max = float(jacobian_singular_values(fn, z)[:, 0].max())
    sup = ball_supremum(fn, z, radius=5.0, n_starts=4, steps=300, lr=0.05)
    assert sample_max < 1.0 + np.cos(2.0) + 1e-12 < 1.6
    assert sup.start_value == pytest.approx(sample_max)
    assert sup.value == pytest.approx(2.0, abs=1e-6)
    assert sup.n_starts == 4 and sup.z.shape == (3,)


def test_ball_supremum_stays_in_the_ball_on_a_map_growing_outwards():
    # f(z) = z * exp(|z|^2 / 2): sigma_max grows with |z| without bound; on the ball |z| <= R the sup is at the
    # boundary, sigma_max = (1 + R^2) exp(R^2 / 2) (radial direction).
    fn = lambda v: v * torch.exp(0.5 * (v**2).sum(-1, keepdim=True))  # noqa: E731
    radius = 1.5
    g = torch.Generator().manual_seed(2)
    z = 0.5 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    z = torch.cat([z, torch.tensor([[10.0, 0.0]], dtype=torch.float64)])  # outside the ball: ignored
    sup = ball_supremum(fn, z, radius=radius, n_starts=8, steps=300, lr=0.05)
    exact = (1 + radius**2) * np.exp(radius**2 / 2)
    assert sup.value == pytest.approx(exact, rel=1e-6)
    assert float(sup.z.norm()) <= radius + 1e-9


def test_ball_supremum_rejects_bad_input():
    fn = lambda v: 2 * v  # noqa: E731
    with pytest.raises(ValueError, match="radius must be positive"):
        ball_supremum(fn, torch.zeros(3, 2), radius=0.0)
    with pytest.raises(ValueError, match="inside the ball"):
        ball_supremum(fn, torch.full((3, 2), 5.0), radius=1.0)


def test_gaussian_ball_radius_matches_the_chi_distribution():
    assert gaussian_ball_radius(1, 0.95) == pytest.approx(1.959964, abs=1e-6)
    assert gaussian_ball_radius(2, 1 - np.exp(-2.0)) == pytest.approx(2.0, abs=1e-9)  # chi2_2 cdf = 1 - e^{-r²/2}
    with pytest.raises(ValueError):
        gaussian_ball_radius(4, 1.0)


def test_ball_supremum_of_the_inverse_map():
    # f_i(z) = z_i + 0.4 sin(z_i): sigma_min = 1 + 0.4 min_i cos(z_i) is smallest at |z_i| = pi, so the inverse
    # constant 1 / sigma_min has sup 1 / 0.6 there; inside |z| <= 2 it is 1 / (1 + 0.4 cos 2) on the boundary.
    fn = lambda v: v + 0.4 * torch.sin(v)  # noqa: E731
    g = torch.Generator().manual_seed(3)
    z = 0.3 * torch.randn(50, 2, generator=g, dtype=torch.float64)
    big = ball_supremum(fn, z, radius=4.0, n_starts=8, steps=400, lr=0.05, inverse=True)
    small = ball_supremum(fn, z, radius=2.0, n_starts=8, steps=400, lr=0.05, inverse=True)
    assert big.value == pytest.approx(1 / 0.6, rel=1e-6)
    assert small.value == pytest.approx(1 / (1 + 0.4 * np.cos(2.0)), rel=1e-6)


def test_ball_supremum_leaves_the_parameters_of_the_map_alone():
    flow = random_realnvp(2, seed=4).double()
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    before = [q.detach().clone() for q in flow.parameters()]
    sup = ball_supremum(forward_map(flow.transform), z, radius=3.0, n_starts=4, steps=20)
    assert sup.value >= sup.start_value > 0
    assert all(q.grad is None for q in flow.parameters())
    assert all(torch.equal(a, q) for a, q in zip(before, flow.parameters(), strict=True))
