"""Neural spline flow on a vector (Durkan et al. 2019): RealNVP's alternating halves with a rational-quadratic spline.

The coupling layer is the one :class:`~boltzflow.flows.coupling.Coupling`; the elementwise map is
:class:`~boltzflow.flows.elementwise.RQSpline` on ``[-bound, bound]`` (identity tails outside), its K widths, K
heights and K + 1 knot slopes per transformed entry coming from an MLP on the kept half. Unlike RealNVP's affine
map, one spline layer can make a bimodal marginal out of a unimodal one, which is what a target with many
independent double wells (FAB's ManyWell) asks of every coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from boltzflow.flows.base import StandardNormal
from boltzflow.flows.conditioners import MLPConditioner
from boltzflow.flows.core import Compose, Transform
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.elementwise import RQSpline
from boltzflow.flows.flow import Flow
from boltzflow.flows.nets import check_net_config
from boltzflow.flows.realnvp import destandardised, half_masks


@dataclass
class SplineFlowConfig:
    """Architecture of a vector spline flow.

    Attributes:
        dim: event dimension D (>= 2).
        n_layers: coupling layers; the kept half alternates from layer to layer (:func:`half_masks`).
        hidden: hidden widths of every conditioner MLP.
        bins: spline bins K per entry.
        bound: the spline acts on [-bound, bound] of the standardised coordinates; identity outside.
        activation: hidden activation of the MLPs.
    """

    dim: int
    n_layers: int = 8
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    bins: int = 8
    bound: float = 5.0
    activation: str = "silu"


def check_config(cfg: SplineFlowConfig) -> None:
    """Raise ValueError naming the offending field."""
    if isinstance(cfg.dim, bool) or not isinstance(cfg.dim, int) or cfg.dim < 2:
        raise ValueError(f"a spline flow needs dim >= 2, got {cfg.dim!r}")
    check_net_config(n_layers=cfg.n_layers, hidden=cfg.hidden, activation=cfg.activation)
    if isinstance(cfg.bins, bool) or not isinstance(cfg.bins, int) or cfg.bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {cfg.bins!r}")
    if not (isinstance(cfg.bound, int | float) and cfg.bound > 0):
        raise ValueError(f"bound must be a positive number, got {cfg.bound!r}")


def spline_transform(cfg: SplineFlowConfig) -> Transform:
    """The stack of spline coupling layers, latent -> data (each starts as the identity: zero last layers)."""
    check_config(cfg)
    layers = []
    for mask in half_masks(cfg.dim, cfg.n_layers):
        spline = RQSpline(cfg.bins, cfg.bound)
        kept = torch.nonzero(mask).flatten()
        conditioner = MLPConditioner(torch.zeros(0, dtype=torch.long), kept, int((~mask).sum()), spline.param_sizes,
                                     cfg.hidden, cfg.activation)
        layers.append(Coupling(mask, conditioner, spline))
    return Compose(layers)


def spline_flow(cfg: SplineFlowConfig, loc: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> Flow:
    """A spline flow on a standard-normal base, optionally followed by a fixed de-standardisation.

    Args:
        cfg: architecture.
        loc: shift of the last, fixed affine map, shape (D,) (default 0).
        scale: its scale, shape (D,) (default 1).
    """
    return Flow(StandardNormal(cfg.dim), destandardised(spline_transform(cfg), cfg.dim, loc, scale))
