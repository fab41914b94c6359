"""The one coupling layer: every registry entry is invertible both ways with exact log-dets (float64)."""

import math

import pytest
import torch

from boltzflow.flows.conditioners import AffineNets, split_params
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.elementwise import Affine, CircularRQSpline, Inverted, RQSpline, wrap
from boltzflow.flows.nets import check_net_config
from boltzflow.flows.smooth import SmoothCircle, SmoothInterval
from transform_checks import check_transform
from transforms_registry import REGISTRY, coupling, randomise


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_is_invertible_with_exact_logdets(name):
    entry = REGISTRY[name]
    t = randomise(entry.make(), entry.std).double()
    z = entry.inputs(torch.Generator().manual_seed(3), 6)
    check_transform(t, z, atol=entry.atol, periodic=entry.periodic)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_inverts_from_the_data_side(name):
    """x -> z -> x for x drawn from the image of the inputs (the other direction of the round trip)."""
    entry = REGISTRY[name]
    t = randomise(entry.make(), entry.std, seed=2).double()
    with torch.no_grad():
        x = t.forward(entry.inputs(torch.Generator().manual_seed(4), 5))[0]
        z, ld = t.inverse(x)
        x_back, ld_back = t.forward(z)
    diff = x_back - x
    if entry.periodic:
        idx = list(entry.periodic)
        diff[:, idx] = wrap(diff[:, idx])
    assert diff.abs().max() < entry.atol
    torch.testing.assert_close(ld, -ld_back, atol=1e-8, rtol=0)


@pytest.mark.parametrize(
    "elementwise, scale",
    [(Affine(2.0), 1.0), (RQSpline(5, 2.0), 3.0), (CircularRQSpline(5), math.pi), (CircularRQSpline(3, False), 3.1)],
)
def test_affine_and_spline_maps_are_the_identity_at_zero_parameters(elementwise, scale):
    x = scale * (2 * torch.rand(4, 3) - 1)
    params = split_params(x.new_zeros(4, 3 * elementwise.n_params), 3, elementwise.param_sizes)
    y, ld = elementwise.forward(x, params)
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, torch.zeros_like(ld), atol=1e-12, rtol=0)


def test_param_groups_arrive_in_the_declared_layout():
    raw = torch.arange(2 * 2 * 7.0).reshape(2, 14)  # batch 2, d_b 2, sizes (3, 1, 3)
    a, b, c = split_params(raw, 2, (3, 1, 3))
    assert a.shape == (2, 2, 3) and b.shape == (2, 2) and c.shape == (2, 2, 3)
    torch.testing.assert_close(b[0], torch.tensor([3.0, 10.0]))  # entry j owns raw[j * 7 : (j + 1) * 7]


def test_inverted_swaps_directions():
    inner = SmoothInterval(2)
    params = split_params(0.5 * torch.randn(3, 2 * inner.n_params), 2, inner.param_sizes)
    x = torch.rand(3, 2)
    y, ld = Inverted(inner).inverse(x, params)
    y2, ld2 = inner.forward(x, params)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(ld, ld2)


def test_coupling_keeps_the_conditioning_part_and_reads_only_it():
    layer = randomise(coupling([True, False, True, False], RQSpline(4, 2.0)))
    z = torch.randn(5, 4, requires_grad=True)
    x, _ = layer.forward(z)
    torch.testing.assert_close(x[:, [0, 2]], z[:, [0, 2]], rtol=0, atol=0)
    # the b-outputs do not depend on each other: the Jacobian block (b, b) is diagonal
    jac = torch.autograd.functional.jacobian(lambda v: layer.forward(v[None])[0][0], z[0].detach())
    bb = jac[[1, 3]][:, [1, 3]]
    assert bb[0, 1] == 0 and bb[1, 0] == 0


def test_periodic_map_must_match_the_entries():
    from boltzflow.flows.ic_flow import ic_coupling

    with pytest.raises(ValueError, match="periodic exactly"):
        ic_coupling(torch.tensor([True, False]), torch.tensor([0]), RQSpline(), [4], "silu")
    with pytest.raises(ValueError, match="all periodic"):
        ic_coupling(torch.tensor([True, False, False]), torch.tensor([0, 1]), RQSpline(), [4], "silu")
    with pytest.raises(ValueError, match="at least one entry"):
        Coupling(torch.tensor([True, True]), AffineNets(torch.tensor([True, False]), None, None), Affine())


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"n_layers": 0}, "n_layers"),
        ({"n_layers": 2.5}, "n_layers"),
        ({"hidden": [-4]}, "hidden"),
        ({"hidden": 64}, "hidden"),
        ({"activation": "swish"}, "activation"),
        ({"bins": (1, 2)}, "bins"),
    ],
)
def test_net_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key) as err:
        check_net_config(**kwargs)
    assert "\n" not in str(err.value)


def test_elementwise_argument_checks():
    with pytest.raises(ValueError, match="bins"):
        RQSpline(1)
    with pytest.raises(ValueError, match="bins"):
        CircularRQSpline(0)
    with pytest.raises(ValueError, match="scale_clamp"):
        Affine(0.0)
    with pytest.raises(ValueError, match="components"):
        SmoothInterval(0)
    with pytest.raises(ValueError, match="ramp_power"):
        SmoothCircle(2, power=3)
    with pytest.raises(ValueError, match="fixed_scale"):
        SmoothCircle(2, fixed_scale=0.5)
