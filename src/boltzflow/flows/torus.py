"""Flows on the torus T^D = [-pi, pi)^D: a uniform base, circular-spline couplings and a builder.

Angles are in radians. Every layer is a diffeomorphism of the torus: the circular rational-quadratic spline
(:mod:`boltzflow.flows.splines`, equal boundary slopes) fixes ±pi and is C¹ across the seam, and the optional
rotation adds a shift modulo 2 pi, so densities on the torus stay periodic (no mass leaks over ±pi and no
cusp at the seam, unlike a flow on R^D applied to angles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from boltzflow.flows.conditioners import ConstantConditioner, MLPConditioner
from boltzflow.flows.core import Compose, Transform
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.elementwise import CircularRQSpline, wrap
from boltzflow.flows.flow import Flow
from boltzflow.flows.nets import check_net_config

TWO_PI = 2 * math.pi
__all__ = ["CircularShift", "UniformTorus", "circular_spline_coupling", "circular_spline_flow", "torus_masks", "wrap"]


class UniformTorus(nn.Module):
    """The uniform distribution on [-pi, pi)^D, density (2 pi)^-D.

    Args:
        dim: number of angles D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"UniformTorus needs dim >= 1, got {dim}")
        self.dim = dim
        self.register_buffer("_anchor", torch.zeros(()))  # follows .to(device, dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` points, shape (n, D), radians, on the module's device and dtype."""
        a = self._anchor
        u = torch.rand(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)
        return TWO_PI * u - math.pi

    def log_prob(self, z: Tensor) -> Tensor:
        """log density, shape (..., D) -> (...): -D log 2 pi inside [-pi, pi]^D, -inf outside."""
        inside = ((z >= -math.pi) & (z <= math.pi)).all(-1)
        value = z.new_full(z.shape[:-1], -self.dim * math.log(TWO_PI))
        return torch.where(inside, value, torch.full_like(value, -math.inf))


class CircularShift(Transform):
    """A learnable rotation of every angle, ``x = wrap(z + shift)`` (volume preserving).

    Args:
        dim: number of angles D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return wrap(z + self.shift), z.new_zeros(z.shape[:-1])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return wrap(x - self.shift), x.new_zeros(x.shape[:-1])


def circular_spline_coupling(
    mask: Tensor,
    hidden: Sequence[int] = (64, 64),
    bins: int = 8,
    rotate: bool = True,
    activation: str = "silu",
) -> Coupling:
    """Coupling layer on T^D: the angles marked False go through circular RQ splines conditioned on the rest.

    The conditioner sees the kept angles as ``(cos, sin)`` (so the layer is periodic in them) and returns, for
    each transformed angle, K widths, K heights, K knot slopes (the seam slope is shared) and, with ``rotate``,
    a shift: ``x_b = wrap(spline(z_b) + shift(z_a))``. With no kept angle the parameters are free (an
    unconditional circular spline). The zero-initialised last layer makes the layer start as the identity.

    Args:
        mask: bool, shape (D,); True marks the conditioning angles (kept unchanged); at least one False.
        hidden: hidden widths of the conditioner MLP.
        bins: spline bins K.
        rotate: also predict a conditional rotation of each transformed angle.
        activation: hidden activation.
    """
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.all():
        raise ValueError("coupling mask must leave at least one angle to transform")
    spline = CircularRQSpline(bins, rotate)
    idx_a, d_b = torch.nonzero(mask).flatten(), int((~mask).sum())
    if idx_a.numel() > 0:
        cond: nn.Module = MLPConditioner(idx_a, idx_a[:0], d_b, spline.param_sizes, hidden, activation)
    else:
        cond = ConstantConditioner(d_b, spline.param_sizes)
    return Coupling(mask, cond, spline)


def torus_masks(dim: int, n_layers: int) -> list[Tensor]:
    """Alternating partitions of D angles; for D = 1 the single angle is transformed unconditionally."""
    if dim == 1:
        return [torch.zeros(1, dtype=torch.bool)] * n_layers
    first = torch.zeros(dim, dtype=torch.bool)
    first[: dim // 2] = True
    return [first if k % 2 == 0 else ~first for k in range(n_layers)]


def circular_spline_flow(
    dim: int = 2,
    n_layers: int = 4,
    bins: int = 8,
    hidden: Sequence[int] = (64, 64),
    rotate: bool = True,
    activation: str = "silu",
) -> Flow:
    """A circular-spline coupling flow on T^D with a uniform base (neural circular spline flow).

    For D = 2 the layers alternate between transforming φ given ψ and ψ given φ; each transformed angle gets
    a conditional circular spline and (``rotate``) a conditional rotation, so neither angle's seam is fixed.

    Args:
        dim: number of angles D.
        n_layers: coupling layers.
        bins: spline bins per angle.
        hidden: conditioner hidden widths.
        rotate: add conditional rotations.
        activation: conditioner activation.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    check_net_config(n_layers=n_layers, hidden=hidden, activation=activation, bins=(bins, 2))
    layers = [circular_spline_coupling(m, hidden, bins, rotate, activation) for m in torus_masks(dim, n_layers)]
    return Flow(UniformTorus(dim), Compose(layers))
