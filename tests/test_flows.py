"""RealNVP and the core transforms: exact log-dets, invertibility, the paper's parameter counts."""

import math

import pytest
import torch

from boltzflow.flows import Affine, RealNVPConfig, n_parameters, realnvp
from boltzflow.flows.nets import mlp
from boltzflow.flows.realnvp import affine_coupling, half_masks
from boltzflow.flows.spec import build_flow, realnvp_spec
from transform_checks import randomise


def _randomise(module: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    return randomise(module, std, seed=1)


def _coupling(dim: int, masked: bool, clamp: float | None):
    mask = half_masks(dim, 1)[0]
    d_in, d_out = (dim, dim) if masked else (int(mask.sum()), int((~mask).sum()))
    return affine_coupling(mask, mlp(d_in, d_out, [8]), mlp(d_in, d_out, [8]), masked_input=masked, scale_clamp=clamp)


def test_coupling_matches_paper_formula():
    """z_b = x_b * exp(s(x_a)) + t(x_a) in the data -> latent direction, log-det = sum s (paper 001 §4)."""
    c = _randomise(_coupling(4, True, None)).double()
    x = torch.randn(5, 4)
    xa = x * c.mask
    s, t = c.conditioner.s_net(xa)[:, 2:], c.conditioner.t_net(xa)[:, 2:]
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


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"kind": "realnvp", "config": {"dim": 4, "n_layers": 0}}, "n_layers"),
        ({"kind": "realnvp", "config": {"dim": 4, "hidden": [-4]}}, "hidden"),
        ({"kind": "realnvp", "config": {"dim": 4, "activation": "swish"}}, "activation"),
        ({"kind": "realnvp", "config": {"dim": 4, "scale_clamp": -1.0}}, "scale_clamp"),
        ({"kind": "realnvp", "config": {"dim": "4"}}, "dim"),
        ({"kind": "circular_spline", "config": {"dim": 2, "bins": 1}}, "bins"),
        ({"kind": "circular_spline", "config": {"dim": 2, "n_layers": 0}}, "n_layers"),
        ({"kind": "circular_spline", "config": {"dim": 0}}, "dim"),
        ({"kind": "circular_spline", "config": {"dim": 2, "hidden": [8, 0]}}, "hidden"),
        ({"kind": "circular_spline", "config": {"dim": 2, "activation": "gelu"}}, "activation"),
    ],
)
def test_bad_flow_configs_give_one_line_naming_the_key(spec, key):
    with pytest.raises(ValueError, match=key) as err:
        build_flow(spec)
    assert "\n" not in str(err.value)
