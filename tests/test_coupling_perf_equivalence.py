"""The fast paths of RealNVP's coupling (AffineNets + Affine) equal a plain, obvious implementation of paper 001 §4."""

import pytest
import torch

from boltzflow.flows.coupling import Coupling
from boltzflow.flows.nets import mlp
from boltzflow.flows.realnvp import affine_coupling


def reference(layer: Coupling, y: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Slow twin: masked full vector into both nets, b-entries picked by the mask, joined by where."""
    mask, nets, clamp = layer.mask, layer.conditioner, layer.elementwise.scale_clamp
    if nets.masked_input:
        ym = y * mask
        s_full, t_full = nets.s_net(ym), nets.t_net(ym)
    else:
        ya = y[..., mask]
        s_full = y.new_zeros(y.shape).masked_scatter(~mask, nets.s_net(ya))
        t_full = y.new_zeros(y.shape).masked_scatter(~mask, nets.t_net(ya))
    if clamp is not None:
        s_full = clamp * torch.tanh(s_full / clamp)
    s_full = torch.where(mask, torch.zeros_like(s_full), s_full)
    t_full = torch.where(mask, torch.zeros_like(t_full), t_full)
    if direction == "inverse":  # data -> latent, z_b = x_b exp(s) + t
        out = torch.where(mask, y, y * torch.exp(s_full) + t_full)
        return out, s_full.sum(-1)
    out = torch.where(mask, y, (y - t_full) * torch.exp(-s_full))
    return out, -s_full.sum(-1)


MASKS = {
    "leading": [True, True, False, False, False],
    "trailing": [False, False, True, True, True],
    "checkered": [True, False, True, False, True],
}


def _layer(mask: list[bool], masked_input: bool, hidden: list[int], clamp: float | None) -> Coupling:
    m = torch.tensor(mask)
    d_a, d_b = int(m.sum()), int((~m).sum())
    d_in, d_out = (len(mask), len(mask)) if masked_input else (d_a, d_b)
    layer = affine_coupling(
        m, mlp(d_in, d_out, hidden, "tanh"), mlp(d_in, d_out, hidden, "silu"), masked_input, clamp
    )
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    return layer


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("masked_input", [True, False])
@pytest.mark.parametrize("hidden", [[7, 6], []])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_fast_path_matches_reference(mask, masked_input, hidden, direction):
    layer = _layer(MASKS[mask], masked_input, hidden, clamp=2.0)
    y = torch.randn(4, 3, 5, requires_grad=True)
    out, logdet = getattr(layer, direction)(y)
    ref_out, ref_logdet = reference(layer, y, direction)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logdet, ref_logdet, rtol=1e-12, atol=1e-12)
    # gradients with respect to inputs and to every parameter, including the skipped weight entries (zero)
    w = torch.randn_like(out)
    params = [y, *layer.parameters()]
    grads = torch.autograd.grad((out * w).sum() + logdet.sum(), params)
    ref_grads = torch.autograd.grad((ref_out * w).sum() + ref_logdet.sum(), params)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_generic_nets_take_the_masked_reference_path():
    """A net that is not a plain Sequential MLP gets the masked vector; its output is sliced after."""

    class Square(torch.nn.Module):
        def forward(self, v):
            return 0.3 * v**2 + v.flip(-1)

    layer = affine_coupling(torch.tensor(MASKS["checkered"]), Square(), Square(), True, None)
    x = torch.randn(6, 5)
    for direction in ("forward", "inverse"):
        out, logdet = getattr(layer, direction)(x)
        ref_out, ref_logdet = reference(layer, x, direction)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(logdet, ref_logdet)


def test_state_dict_holds_the_two_nets_only_in_order():
    """Parameters in the old order (s_net, then t_net), so old optimizer states still line up."""
    layer = _layer(MASKS["leading"], True, [8, 8], clamp=None)
    keys = list(layer.state_dict())
    nets, layers, kinds = ("s_net", "t_net"), (0, 2, 4), ("weight", "bias")
    assert keys == [f"conditioner.{net}.{i}.{w}" for net in nets for i in layers for w in kinds]
    assert [p.shape for p in layer.parameters()] == [layer.state_dict()[k].shape for k in keys]
