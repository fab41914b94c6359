"""RealNVP builder (paper 001 §4, §6)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from boltzflow.flows.base import StandardNormal
from boltzflow.flows.conditioners import AffineNets
from boltzflow.flows.core import Affine, Compose, Transform
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.elementwise import Affine as AffineMap
from boltzflow.flows.flow import Flow
from boltzflow.flows.nets import check_net_config, mlp


@dataclass
class RealNVPConfig:
    """Architecture of a RealNVP flow.

    Attributes:
        dim: event dimension D.
        n_layers: number of coupling layers; partitions alternate from layer to layer.
        hidden: hidden widths of every s and t MLP.
        masked_input: nets on the masked full vector (D -> D) rather than on the kept half (d_a -> d_b).
        activation: hidden activation of the MLPs. tanh (default) keeps s and t bounded far from the data, so
            latent tail samples are not flung to huge |x| (with SiLU/ReLU and loose scale bounds a few samples in
            10^4 landed at |x| ~ 10^2 on the two-particle system).
        scale_clamp: soft bound on |s| per layer, s = c tanh(raw / c) (None = unbounded); default 2.
    """

    dim: int
    n_layers: int = 8
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    masked_input: bool = True
    activation: str = "tanh"
    scale_clamp: float | None = 2.0


def affine_coupling(
    mask: torch.Tensor,
    s_net: torch.nn.Module,
    t_net: torch.nn.Module,
    masked_input: bool = True,
    scale_clamp: float | None = None,
) -> Coupling:
    """RealNVP's affine coupling layer (paper 001 §4) as a :class:`~boltzflow.flows.coupling.Coupling`.

    Args:
        mask: bool, shape (D,); True marks the kept part ``a``; both parts non-empty.
        s_net: scale network.
        t_net: shift network.
        masked_input: nets on the masked D-vector (True) or on ``x_a`` (see
            :class:`~boltzflow.flows.conditioners.AffineNets`).
        scale_clamp: soft bound ``c`` on ``|s|`` per layer, or None.
    """
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.all() or not mask.any():
        raise ValueError("coupling mask must split the dimensions into two non-empty parts")
    return Coupling(mask, AffineNets(mask, s_net, t_net, masked_input), AffineMap(scale_clamp))


def check_config(cfg: RealNVPConfig) -> None:
    """Raise ValueError naming the offending field of a RealNVP config."""
    if isinstance(cfg.dim, bool) or not isinstance(cfg.dim, int) or cfg.dim < 2:
        raise ValueError(f"RealNVP needs dim >= 2, got {cfg.dim!r}")
    check_net_config(n_layers=cfg.n_layers, hidden=cfg.hidden, activation=cfg.activation)
    if cfg.scale_clamp is not None and not (isinstance(cfg.scale_clamp, int | float) and cfg.scale_clamp > 0):
        raise ValueError(f"scale_clamp must be a positive number or None, got {cfg.scale_clamp!r}")


def half_masks(dim: int, n_layers: int) -> list[torch.Tensor]:
    """Alternating partitions: d_a = floor(D/2) leading entries are kept in even layers, the rest in odd ones."""
    if dim < 2:
        raise ValueError(f"RealNVP needs dim >= 2, got {dim}")
    d_a = dim // 2
    first = torch.zeros(dim, dtype=torch.bool)
    first[:d_a] = True
    return [first if k % 2 == 0 else ~first for k in range(n_layers)]


def realnvp_transform(cfg: RealNVPConfig) -> Transform:
    """The stack of coupling layers, latent -> data."""
    check_config(cfg)
    layers = []
    for mask in half_masks(cfg.dim, cfg.n_layers):
        d_in, d_out = (cfg.dim, cfg.dim) if cfg.masked_input else (int(mask.sum()), int((~mask).sum()))
        layers.append(
            affine_coupling(
                mask,
                mlp(d_in, d_out, cfg.hidden, cfg.activation),
                mlp(d_in, d_out, cfg.hidden, cfg.activation),
                masked_input=cfg.masked_input,
                scale_clamp=cfg.scale_clamp,
            )
        )
    return Compose(layers)


def realnvp(cfg: RealNVPConfig, loc: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> Flow:
    """A RealNVP flow on a standard-normal base, optionally followed by a fixed de-standardisation.

    Args:
        cfg: architecture.
        loc: data mean, shape (D,); with ``scale`` the flow models standardised data and maps back exactly.
        scale: data standard deviation, shape (D,).
    """
    return Flow(StandardNormal(cfg.dim), destandardised(realnvp_transform(cfg), cfg.dim, loc, scale))


def destandardised(
    transform: Transform, dim: int, loc: torch.Tensor | None = None, scale: torch.Tensor | None = None
) -> Transform:
    """``transform`` followed by the fixed map ``y -> loc + scale * y`` (each shape (D,); default 0 and 1), or
    ``transform`` alone when both are None."""
    if loc is None and scale is None:
        return transform
    dtype = torch.get_default_dtype()
    loc = torch.zeros(dim) if loc is None else torch.as_tensor(loc, dtype=dtype)
    scale = torch.ones(dim) if scale is None else torch.as_tensor(scale, dtype=dtype)
    return Compose([transform, Affine(loc, scale)])


def n_parameters(module: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
