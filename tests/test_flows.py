"""RealNVP and the core transforms: exact log-dets, invertibility, the paper's parameter counts."""

import math

import pytest
import torch

from boltzflow.flows import Affine, AffineCoupling, Compose, Inverse, RealNVPConfig, n_parameters, realnvp
from boltzflow.flows.nets import mlp
from boltzflow.flows.realnvp import half_masks, realnvp_transform
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.flows.torus import CircularShift, CircularSplineCoupling
from transform_checks import check_transform


def _randomise(module: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """Non-trivial weights (the zero-initialised last layers would make every coupling the identity)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _coupling(dim: int, masked: bool, clamp: float | None) -> AffineCoupling:
    mask = half_masks(dim, 1)[0]
    d_in, d_out = (dim, dim) if masked else (int(mask.sum()), int((~mask).sum()))
    return AffineCoupling(mask, mlp(d_in, d_out, [8]), mlp(d_in, d_out, [8]), masked_input=masked, scale_clamp=clamp)


REGISTRY = {
    "coupling-masked": lambda: _coupling(4, True, None),
    "coupling-split": lambda: _coupling(5, False, None),
    "coupling-clamped": lambda: _coupling(4, True, 2.0),
    "coupling-odd-reversed": lambda: AffineCoupling(~half_masks(5, 1)[0], mlp(5, 5, [8]), mlp(5, 5, [8])),
    "affine": lambda: Affine(torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([0.3, 2.0, 1.0, 0.7])),
    "realnvp-masked": lambda: realnvp_transform(RealNVPConfig(dim=4, n_layers=4, hidden=[16, 16])),
    "realnvp-split": lambda: realnvp_transform(RealNVPConfig(dim=3, n_layers=3, hidden=[16], masked_input=False)),
    "inverse-realnvp": lambda: Inverse(realnvp_transform(RealNVPConfig(dim=4, n_layers=2, hidden=[8]))),
    "circular-spline-coupling": lambda: CircularSplineCoupling(torch.tensor([True, False, False]), hidden=[8], bins=5),
    "circular-spline-unconditional": lambda: CircularSplineCoupling(torch.tensor([False, False]), hidden=[8], bins=4),
    "circular-shift": lambda: CircularShift(3),
    "compose-with-affine": lambda: Compose(
        [realnvp_transform(RealNVPConfig(dim=4, n_layers=2, hidden=[8])), Affine(torch.ones(4), 2 * torch.ones(4))]
    ),
}


DIMS = {"coupling-split": 5, "coupling-odd-reversed": 5, "realnvp-split": 3, "circular-spline-coupling": 3,
        "circular-spline-unconditional": 2, "circular-shift": 3}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_transform_invariants(name):
    t = REGISTRY[name]()
    if not isinstance(t, Affine):
        _randomise(t)
    dim = DIMS.get(name, 4)
    if name.startswith("circular"):
        z = (2 * torch.rand(6, dim) - 1) * 3.0  # angles strictly inside (-pi, pi)
    else:
        z = 1.5 * torch.randn(6, dim)
    check_transform(t, z)


def test_coupling_matches_paper_formula():
    """z_b = x_b * exp(s(x_a)) + t(x_a) in the data -> latent direction, log-det = sum s (paper 001 §4)."""
    c = _randomise(_coupling(4, True, None)).double()
    x = torch.randn(5, 4)
    xa = x * c.mask
    s, t = c.s_net(xa)[:, 2:], c.t_net(xa)[:, 2:]
    z, logdet = c.inverse(x)
    torch.testing.assert_close(z[:, :2], x[:, :2])
    torch.testing.assert_close(z[:, 2:], x[:, 2:] * torch.exp(s) + t)
    torch.testing.assert_close(logdet, s.sum(-1))


def test_scale_clamp_bounds_each_layer():
    c = _randomise(_coupling(4, True, 0.5), std=5.0).double()
    _, logdet = c.inverse(10 * torch.randn(100, 4))
    assert logdet.abs().max() <= 2 * 0.5 + 1e-12  # d_b = 2 entries, each |s| < 0.5


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (RealNVPConfig(dim=4, n_layers=8, hidden=[256, 256]), 1_089_600),  # paper 001 §6.1: "1.09M"
        (RealNVPConfig(dim=66, n_layers=12, hidden=[512, 512]), 7_939_632),  # §6.3: "7.9M"
        (RealNVPConfig(dim=2, n_layers=6, hidden=[64], masked_input=False), 2_316),  # §6.2: 2,316
    ],
)
def test_paper_parameter_counts(cfg, expected):
    assert n_parameters(realnvp(cfg)) == expected


def test_alternating_partitions():
    masks = half_masks(5, 3)
    assert masks[0].tolist() == [True, True, False, False, False]
    assert masks[1].tolist() == [False, False, True, True, True]
    assert masks[2].tolist() == masks[0].tolist()


def test_flow_log_prob_matches_sampling_density():
    flow = _randomise(realnvp(RealNVPConfig(dim=3, n_layers=4, hidden=[16]))).double()
    s = flow.sample(50, torch.Generator().manual_seed(0))
    torch.testing.assert_close(flow.log_prob(s.x), s.log_prob, atol=1e-10, rtol=0)


def test_untrained_flow_is_standard_normal():
    flow = realnvp(RealNVPConfig(dim=4, n_layers=4, hidden=[8])).double()
    x = torch.randn(10, 4)
    torch.testing.assert_close(flow.log_prob(x), -0.5 * (x**2).sum(-1) - 2 * math.log(2 * math.pi))


def test_destandardisation_is_exact():
    loc, scale = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    flow = _randomise(realnvp(RealNVPConfig(dim=2, n_layers=2, hidden=[8]), loc, scale)).double()
    inner = flow.transform.transforms[0]
    x = torch.randn(7, 2)
    z, ld = inner.inverse((x - loc) / scale)
    expected = -0.5 * (z**2).sum(-1) - math.log(2 * math.pi) + ld - torch.log(scale).sum()
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_spec_round_trip_rebuilds_the_same_function():
    cfg = RealNVPConfig(dim=4, n_layers=2, hidden=[8])
    spec = realnvp_spec(cfg, loc=[0.0, 1.0, 2.0, 3.0], scale=[1.0, 1.0, 2.0, 2.0])
    a = _randomise(build_flow(spec))
    b = build_flow(spec)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 4)
    torch.testing.assert_close(a.log_prob(x), b.log_prob(x))


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError, match="unknown flow kind"):
        build_flow({"kind": "glow"})
    with pytest.raises(ValueError, match="malformed"):
        build_flow({"kind": "realnvp", "config": {"dim": 4, "layers": 3}})
    with pytest.raises(ValueError, match="dim >= 2"):
        realnvp(RealNVPConfig(dim=1))
    with pytest.raises(ValueError, match="positive"):
        Affine(torch.zeros(2), torch.tensor([1.0, 0.0]))
