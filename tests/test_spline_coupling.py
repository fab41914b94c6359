"""The vector spline flow: log-det against autograd in both directions, round trip, identity at init, spec, errors."""

import math

import pytest
import torch

from boltzflow.experiments.cmt_config import CMTFlow
from boltzflow.experiments.cmt_report import build_flow_for
from boltzflow.flows.spec import build_flow, vector_spec
from boltzflow.flows.spline_coupling import SplineFlowConfig, spline_flow, spline_transform
from boltzflow.systems.registry import get_system
from transform_checks import randomise


def _randomise(module: torch.nn.Module, std: float = 0.5) -> torch.nn.Module:
    return randomise(module, std, seed=3)


def test_log_det_matches_autograd_both_ways_and_round_trips():
    t = _randomise(spline_transform(SplineFlowConfig(dim=5, n_layers=3, hidden=[8], bins=4, bound=3.0))).double()
    gen = torch.Generator().manual_seed(0)
    z = 2.0 * torch.randn(6, 5, generator=gen, dtype=torch.float64)  # some entries in the identity tails
    x, ld = t.forward(z)
    back, ld_inv = t.inverse(x)
    torch.testing.assert_close(back, z, atol=1e-8, rtol=0)  # the inverse solves a quadratic per bin
    torch.testing.assert_close(ld_inv, -ld, atol=1e-8, rtol=0)
    for i in range(z.shape[0]):
        jf = torch.autograd.functional.jacobian(lambda v: t.forward(v[None])[0][0], z[i])
        ji = torch.autograd.functional.jacobian(lambda v: t.inverse(v[None])[0][0], x[i])
        torch.testing.assert_close(torch.linalg.slogdet(jf).logabsdet, ld[i], atol=1e-9, rtol=0)
        torch.testing.assert_close(torch.linalg.slogdet(ji).logabsdet, ld_inv[i], atol=1e-9, rtol=0)


def test_one_layer_makes_a_bimodal_marginal():
    """What RealNVP's affine map cannot do in one layer: a spline's density has two peaks in one coordinate."""
    flow = spline_flow(SplineFlowConfig(dim=2, n_layers=1, hidden=[4], bins=8, bound=4.0)).double()
    layer = flow.transform.transforms[0]
    with torch.no_grad():
        last = layer.conditioner.net[-1]
        last.weight.zero_()
        bias = torch.zeros_like(last.bias)  # widths, heights, slopes of the one transformed entry
        bias[8:16] = torch.tensor([-3.0, -3.0, 3.0, -3.0, -3.0, 3.0, -3.0, -3.0])  # mass onto bins 2 and 5
        last.bias.copy_(bias)
    x = torch.stack([torch.zeros(801, dtype=torch.float64), torch.linspace(-4, 4, 801, dtype=torch.float64)], -1)
    dens = flow.log_prob(x).exp()
    peaks = ((dens[1:-1] > dens[:-2]) & (dens[1:-1] > dens[2:])).sum()
    assert int(peaks) >= 2


def test_untrained_flow_is_the_destandardised_normal():
    loc, scale = torch.tensor([1.0, -2.0, 0.0]), torch.tensor([0.5, 3.0, 1.0])
    flow = spline_flow(SplineFlowConfig(dim=3, n_layers=2, hidden=[8]), loc, scale).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    z = (x - loc) / scale
    expected = -0.5 * (z**2).sum(-1) - 1.5 * math.log(2 * math.pi) - torch.log(scale).sum()
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-10, rtol=0)


def test_spec_round_trip_and_cmt_flow():
    spec = vector_spec("spline", SplineFlowConfig(dim=4, n_layers=2, hidden=[8], bins=5), [0.0] * 4, [2.0] * 4)
    a = _randomise(build_flow(spec)).double()
    b = build_flow(spec).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(a.log_prob(x), b.log_prob(x))
    flow, spec = build_flow_for(get_system("manywell32"), CMTFlow(kind="spline", n_layers=2, hidden=[8]), 0)
    assert spec["kind"] == "spline" and spec["config"]["dim"] == 32 and flow.sample(3).x.shape == (3, 32)


@pytest.mark.parametrize(
    ("config", "key"),
    [({"dim": 1}, "dim"), ({"dim": 4, "bins": 1}, "bins"), ({"dim": 4, "bound": 0.0}, "bound"),
     ({"dim": 4, "n_layers": 0}, "n_layers"), ({"dim": 4, "hidden": [-3]}, "hidden")],
)
def test_bad_configs_name_the_key(config, key):
    with pytest.raises(ValueError, match=key):
        build_flow({"kind": "spline", "config": config})
