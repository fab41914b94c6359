"""The internal-coordinate spline flow: invertibility, log-dets vs autograd, periodicity, specs."""

import json
import math

import pytest
import torch

from boltzflow.flows.core import Compose
from boltzflow.flows.elementwise import CircularRQSpline, RQSpline
from boltzflow.flows.ic_flow import (
    CircleFromLine,
    ICBase,
    ICStats,
    build_ic_spline,
    ic_coupling,
    ic_realnvp_flow,
    ic_realnvp_spec,
    ic_smooth_flow,
    ic_smooth_spec,
    ic_spline_flow,
    ic_spline_spec,
    ic_statistics,
    sibling_torsions,
)
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.zmatrix import build_zmatrix
from transform_checks import check_transform, randomise

BRANCHED = [(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)]  # 6 atoms: 5 bonds, 4 angles, 3 torsions


def molecule_flow(seed: int = 0, n_layers: int = 2):
    zm = build_zmatrix(BRANCHED, 6)
    ic = InternalCoordinates(zm)
    periodic = torch.zeros(ic.dim, dtype=torch.bool)
    periodic[ic.periodic_idx] = True
    loc = torch.where(periodic, torch.tensor(2.5), torch.tensor(0.15))
    loc[ic.angle_idx] = 1.9
    scale = torch.where(periodic, torch.tensor(1.0), torch.tensor(0.01))
    scale[ic.angle_idx] = 0.1
    flow = ic_spline_flow(zm, ICStats(loc, scale), n_layers=n_layers, bins=5, hidden=(16,)).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.15 * torch.randn(p.shape, generator=gen))  # non-trivial but well conditioned
    return flow, zm, periodic


def test_narrow_torsions_are_scaled_charts_with_exact_logdets():
    flow, zm, periodic = molecule_flow()
    std = flow.transform.transforms[-2]
    scale = torch.exp(std.log_scale).where(~periodic, torch.ones_like(std.loc))
    scale[torch.nonzero(periodic).flatten()[0]] = 0.2  # one narrow torsion
    narrow = ic_spline_flow(zm, ICStats(std.loc, scale), n_layers=1, bins=5, hidden=(16,)).double()
    with torch.no_grad():
        for p in narrow.parameters():
            p.copy_(0.15 * torch.randn(p.shape, generator=torch.Generator().manual_seed(9)))
    assert int(narrow.base.periodic.sum()) == int(periodic.sum()) - 1
    z = narrow.base.sample(4, torch.Generator().manual_seed(1))
    check_transform(latent_part(narrow), z, atol=1e-8)
    s = narrow.sample(20, torch.Generator().manual_seed(2))
    torch.testing.assert_close(narrow.log_prob(s.x), s.log_prob, atol=1e-8, rtol=0)


def latent_part(flow):
    """The square part latent -> internal coordinates (all layers but InternalCoordinates)."""
    return Compose(list(flow.transform.transforms)[:-1])


def test_latent_to_internal_invertible_with_exact_logdets():
    flow, _, _ = molecule_flow()
    z = flow.base.sample(4, torch.Generator().manual_seed(1))
    check_transform(latent_part(flow), z, atol=1e-8)


@pytest.mark.parametrize("circular", [True, False])
def test_single_coupling_matches_autograd(circular):
    periodic = torch.tensor([True, True, False, False, False])
    idx_b = torch.tensor([0, 1]) if circular else torch.tensor([2, 4])
    spline = CircularRQSpline(4) if circular else RQSpline(4, 2.0)
    layer = ic_coupling(periodic, idx_b, spline, hidden=(8,), activation="silu").double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.7)
    z = ICBase(periodic).sample(5)
    z[:, 2] = torch.tensor([-3.0, -1.0, 0.0, 1.5, 2.5])  # includes both linear tails
    check_transform(layer, z)


def test_full_flow_round_trip_and_log_prob_consistent():
    flow, _, _ = molecule_flow()
    s = flow.sample(50, torch.Generator().manual_seed(2))
    assert s.x.shape == (50, 18) and torch.isfinite(s.log_prob).all()
    torch.testing.assert_close(flow.log_prob(s.x), s.log_prob, atol=1e-8, rtol=0)
    z_back, _ = flow.transform.inverse(s.x)
    diff = torch.remainder(z_back - s.z + math.pi, 2 * math.pi) - math.pi  # torsions compare modulo 2 pi
    assert diff.abs().max() < 1e-8


def test_density_is_rigid_motion_invariant():
    flow, _, _ = molecule_flow()
    x = flow.sample(10, torch.Generator().manual_seed(3)).x.detach()
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    moved = (
        x.unflatten(-1, (6, 3)) @ q.T * torch.sign(torch.det(q)) + torch.tensor([1.0, -2.0, 0.5])
    ).flatten(-2)
    torch.testing.assert_close(flow.log_prob(moved), flow.log_prob(x), atol=1e-8, rtol=0)


def test_torsions_stay_periodic():
    flow, _, periodic = molecule_flow()
    part = latent_part(flow)
    z = flow.base.sample(20, torch.Generator().manual_seed(4))
    shifted = z + 2 * math.pi * periodic.to(z.dtype) * torch.tensor([1, -1] * 6)[: z.shape[1]]
    a, la = part.forward(z)
    b, lb = part.forward(shifted)  # the same point of the torus: same image and same density
    torch.testing.assert_close(
        torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi, torch.zeros_like(a), atol=1e-9, rtol=0
    )
    torch.testing.assert_close(la, lb)
    # log density is continuous across the seam of every torsion
    x = part.forward(z[:1])[0].detach()
    ident = flow.transform.transforms[-2].forward(z[:1])[0].detach()  # standardisation only
    assert float((x - ident).abs().max()) > 0.05  # the couplings are not the identity
    for i in torch.nonzero(periodic).flatten():
        lo, hi = x.clone(), x.clone()
        lo[0, i], hi[0, i] = -math.pi + 1e-7, math.pi - 1e-7
        dl = part.inverse(lo)[1] + flow.base.log_prob(part.inverse(lo)[0])
        dh = part.inverse(hi)[1] + flow.base.log_prob(part.inverse(hi)[0])
        assert float((dl - dh).detach().abs()) < 1e-4


def test_statistics_use_circular_means():
    periodic = torch.tensor([False, True])
    q = torch.tensor(
        [[0.1, math.pi - 0.1], [0.3, -math.pi + 0.1], [0.2, math.pi - 0.05], [0.2, -math.pi + 0.05]]
    )
    stats = ic_statistics(q, periodic)
    assert abs(abs(float(stats.loc[1])) - math.pi) < 1e-12
    assert float(stats.loc[0]) == pytest.approx(0.2)
    r = math.hypot(float(torch.sin(q[:, 1]).mean()), float(torch.cos(q[:, 1]).mean()))
    assert float(stats.scale[1]) == pytest.approx(math.sqrt(-2 * math.log(r)))  # narrow: modelled on the line
    wide = ic_statistics(torch.tensor([[0.0, -2.0], [0.1, 0.0], [0.2, 2.0], [0.3, 3.0]]), periodic)
    assert float(wide.scale[1]) == 1.0
    with pytest.raises(ValueError):
        ic_statistics(q[:1], periodic)


def test_spec_round_trip_rebuilds_the_same_flow():
    flow, zm, _ = molecule_flow()
    last = flow.transform.transforms[-2]
    stats = ICStats(last.loc, torch.exp(last.log_scale).where(~last.periodic, torch.ones_like(last.loc)))
    spec = ic_spline_spec(zm, stats, n_layers=2, bins=5, hidden=(16,), molecule="test")
    rebuilt = build_ic_spline(spec["config"], spec["loc"], spec["scale"]).double()
    rebuilt.load_state_dict(flow.state_dict())
    x = flow.sample(8, torch.Generator().manual_seed(5)).x.detach()
    torch.testing.assert_close(rebuilt.log_prob(x), flow.log_prob(x))
    assert spec["info"] == {"molecule": "test"}


def test_bad_inputs_raise():
    periodic = torch.tensor([True, False, False])
    with pytest.raises(ValueError, match="all periodic"):
        ic_coupling(periodic, torch.tensor([0, 1]), RQSpline(), (8,), "silu")
    with pytest.raises(ValueError, match="stats must have shape"):
        ic_spline_flow(build_zmatrix(BRANCHED, 6), ICStats(torch.zeros(3), torch.ones(3)))


def test_sibling_torsions_are_relative_and_round_trip():
    zm = build_zmatrix([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (4, 6), (4, 7)], 8)  # a methyl group on 4
    rel = sibling_torsions(zm)
    rows = {int(r[0]): tuple(int(v) for v in r[1:]) for r in rel.rows}
    old = {int(r[0]): tuple(int(v) for v in r[1:]) for r in zm.rows}
    siblings = [a for a in rows if a in old and old[a][:2] == rows[a][:2] and old[a][2] != rows[a][2]]
    assert sorted(siblings) == [6, 7]
    for a in siblings:  # the torsion partner is now an earlier atom placed from the same (j, k)
        h = rows[a][2]
        assert rows[h][:2] == rows[a][:2]
    ic = InternalCoordinates(rel)
    x = torch.randn(5, 24) * 0.1
    q, _ = ic.inverse(x)
    x_back, _ = ic.forward(q)
    q_back, _ = ic.inverse(x_back)
    torch.testing.assert_close(q_back, q)


def smooth_molecule_flow(analytic_density: bool = True, seed: int = 0):
    zm = build_zmatrix(BRANCHED, 6)
    ic = InternalCoordinates(zm)
    loc = torch.tensor([0.15] * 5 + [1.9] * 4 + [2.5, -1.0, 0.3])
    scale = torch.tensor([0.01] * 5 + [0.1] * 4 + [1.0, 0.3, 1.0])  # torsion 10 narrow, 9 and 11 wide
    assert ic.dim == 12
    flow = ic_smooth_flow(
        zm, ICStats(loc, scale), n_layers=1, components=3, hidden=(8,), analytic_density=analytic_density
    ).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.15 * torch.randn(p.shape, generator=gen))
    return flow, zm, ICStats(loc, scale)


@pytest.mark.parametrize("analytic_density", [True, False])
def test_smooth_flow_sample_log_prob_matches_density(analytic_density):
    flow, _, _ = smooth_molecule_flow(analytic_density)
    s = flow.sample(30, torch.Generator().manual_seed(2))
    assert s.x.shape == (30, 18) and torch.isfinite(s.log_prob).all()
    torch.testing.assert_close(flow.log_prob(s.x), s.log_prob, atol=1e-8, rtol=0)
    assert flow.base.unit_interval and flow.base.periodic.tolist() == [False] * 9 + [True, False, True]


def test_untrained_smooth_flow_has_gaussian_tails_and_full_support():
    """Far outside the data every coordinate still has a finite log density (no box as in paper 004)."""
    flow, _, _ = smooth_molecule_flow()
    x = flow.sample(4, torch.Generator().manual_seed(3)).x.detach()
    q, _ = flow.transform.transforms[-1].inverse(x)
    q[:, 0] += 0.08  # a bond 8 standard deviations long
    far, _ = flow.transform.transforms[-1].forward(q)
    assert torch.isfinite(flow.log_prob(far)).all()


def test_smooth_spec_round_trip_and_kind():
    from boltzflow.flows.spec import build_flow

    flow, zm, stats = smooth_molecule_flow()
    spec = ic_smooth_spec(zm, stats, n_layers=1, components=3, hidden=(8,), molecule="test")
    assert spec["kind"] == "ic_smooth" and spec["info"] == {"molecule": "test"}
    rebuilt = build_flow(json.loads(json.dumps(spec))).double()
    rebuilt.load_state_dict(flow.state_dict())
    x = flow.sample(5, torch.Generator().manual_seed(5)).x.detach()
    torch.testing.assert_close(rebuilt.log_prob(x), flow.log_prob(x))


@pytest.mark.parametrize(
    "kind, change, key",
    [
        ("ic_spline", {"bins": 1}, "bins"),
        ("ic_spline", {"n_layers": 0}, "n_layers"),
        ("ic_spline", {"hidden": [-4]}, "hidden"),
        ("ic_spline", {"activation": "swish"}, "activation"),
        ("ic_spline", {"tail_bound": 0.0}, "tail_bound"),
        ("ic_smooth", {"components": 0}, "components"),
        ("ic_smooth", {"ramp_power": 3}, "ramp_power"),
        ("ic_smooth", {"fixed_periodic_scale": 0.5}, "fixed_scale"),
        ("ic_smooth", {"n_layers": -1}, "n_layers"),
        ("ic_realnvp", {"scale_clamp": 0.0}, "scale_clamp"),
        ("ic_realnvp", {"hidden": [0]}, "hidden"),
    ],
)
def test_bad_ic_flow_configs_name_the_key(kind, change, key):
    from boltzflow.flows.spec import build_flow

    _, zm, stats = smooth_molecule_flow()
    spec = {"ic_spline": ic_spline_spec, "ic_smooth": ic_smooth_spec, "ic_realnvp": ic_realnvp_spec}[kind](zm, stats)
    spec["config"].update(change)
    with pytest.raises(ValueError, match=key) as err:
        build_flow(spec)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("unit_interval", [False, True])
def test_base_log_prob_is_exact_in_float64_when_the_default_dtype_is_float32(unit_interval):
    """A float64 base built while the default dtype is float32 (a user's session) keeps every constant in
    float64: its log-density equals the closed form to 1e-14, and is -inf outside the support."""
    periodic = torch.tensor([True, False, True])
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        base = ICBase(periodic, unit_interval=unit_interval).double()
        z = torch.tensor([[0.3, 0.2, -3.0], [1.0, 0.9, 3.1], [3.2, 0.5, 0.0]], dtype=torch.float64)
        got = base.log_prob(z)
    finally:
        torch.set_default_dtype(old)
    circle = -2 * math.log(2 * math.pi)
    line = [0.0, 0.0] if unit_interval else [-0.5 * 0.2**2 - 0.5 * math.log(2 * math.pi),
                                             -0.5 * 0.9**2 - 0.5 * math.log(2 * math.pi)]
    assert got.dtype == torch.float64
    torch.testing.assert_close(got[:2], torch.tensor(line, dtype=torch.float64) + circle, rtol=0, atol=1e-14)
    assert got[2] == -math.inf  # 3.2 > pi


def realnvp_molecule_flow(seed: int = 0):
    _, zm, stats = smooth_molecule_flow()
    flow = ic_realnvp_flow(zm, stats, n_layers=2, hidden=(8,)).double()
    return randomise(flow, 0.15, seed), zm, stats


def test_circle_from_line_maps_the_standard_normal_to_the_uniform_circle_exactly():
    """Closed form: N(0, 1) pushed through t = 2 pi Phi(z) - pi has density 1 / (2 pi) on (-pi, pi)."""
    layer = CircleFromLine(torch.tensor([True, False]))
    z = torch.tensor([[-3.0, 0.4], [0.0, -1.0], [1.7, 2.0], [6.0, 0.0]], dtype=torch.float64)
    check_transform(layer, z[:3], atol=1e-12)
    t, logdet = layer.forward(z)
    assert (t[:, 0] > -math.pi).all() and (t[:, 0] < math.pi).all() and torch.equal(t[:, 1], z[:, 1])
    log_normal = -0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(log_normal - logdet, torch.full((4,), -math.log(2 * math.pi), dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_realnvp_ic_flow_is_invertible_with_exact_logdets_and_matching_density():
    flow, _, _ = realnvp_molecule_flow()
    assert flow.base.periodic.tolist() == [False] * 12 and not flow.base.unit_interval  # every latent on the line
    z = flow.base.sample(4, torch.Generator().manual_seed(1))
    check_transform(latent_part(flow), z, atol=1e-8, periodic=(9, 10, 11))
    s = flow.sample(30, torch.Generator().manual_seed(2))
    assert s.x.shape == (30, 18) and torch.isfinite(s.log_prob).all()
    torch.testing.assert_close(flow.log_prob(s.x), s.log_prob, atol=1e-8, rtol=0)


def test_untrained_realnvp_ic_flow_is_the_gaussian_uniform_model_of_the_statistics():
    """Zero-initialised couplings are the identity: wide torsions uniform, the rest Gaussian about the stats."""
    _, zm, stats = smooth_molecule_flow()
    flow = ic_realnvp_flow(zm, stats, n_layers=1, hidden=(8,)).double()
    x = flow.sample(2000, torch.Generator().manual_seed(3)).x.detach()
    q, _ = flow.transform.transforms[-1].inverse(x)
    wide = q[:, [9, 11]]
    assert abs(float(torch.cos(wide).mean())) < 0.1 and abs(float(torch.sin(wide).mean())) < 0.1
    torch.testing.assert_close(q[:, :5].mean(0), stats.loc[:5].double(), atol=3e-3, rtol=0)
    torch.testing.assert_close(q[:, :5].std(0), stats.scale[:5].double(), atol=2e-3, rtol=0)


def test_realnvp_spec_round_trip_and_kind():
    from boltzflow.flows.spec import build_flow

    flow, zm, stats = realnvp_molecule_flow()
    spec = ic_realnvp_spec(zm, stats, n_layers=2, hidden=(8,), molecule="test")
    assert spec["kind"] == "ic_realnvp" and spec["info"] == {"molecule": "test"}
    rebuilt = build_flow(json.loads(json.dumps(spec))).double()
    rebuilt.load_state_dict(flow.state_dict())
    x = flow.sample(5, torch.Generator().manual_seed(5)).x.detach()
    torch.testing.assert_close(rebuilt.log_prob(x), flow.log_prob(x))
