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

from boltzflow.flows.core import Compose, Transform
from boltzflow.flows.flow import Flow
from boltzflow.flows.nets import mlp
from boltzflow.flows.splines import rq_spline, spline_parameters

TWO_PI = 2 * math.pi


def wrap(x: Tensor) -> Tensor:
    """Angles (radians) mapped to [-pi, pi)."""
    return torch.remainder(x + math.pi, TWO_PI) - math.pi


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


class CircularSplineCoupling(Transform):
    """Coupling layer on T^D: the angles marked ``b`` go through circular RQ splines conditioned on the rest.

    The conditioner sees the kept angles ``a`` as features ``(cos a, sin a)`` (so it is periodic in them) and
    returns, for each transformed angle, K widths, K heights, K knot slopes (the seam slope is shared) and,
    with ``rotate``, a shift: ``x_b = wrap(spline(z_b) + shift(z_a))``. The zero-initialised last layer makes
    the layer start as the identity. log|det| is the sum of the splines' log slopes.

    Args:
        mask: bool, shape (D,); True marks the conditioning angles ``a`` (kept unchanged); at least one False.
        hidden: hidden widths of the conditioner MLP.
        bins: spline bins K.
        rotate: also predict a conditional rotation of each transformed angle.
        activation: hidden activation.
    """

    def __init__(
        self,
        mask: Tensor,
        hidden: Sequence[int] = (64, 64),
        bins: int = 8,
        rotate: bool = True,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.all():
            raise ValueError("coupling mask must leave at least one angle to transform")
        self.register_buffer("mask", mask)
        self.register_buffer("idx_a", torch.nonzero(mask).flatten())
        self.register_buffer("idx_b", torch.nonzero(~mask).flatten())
        self.bins = bins
        self.rotate = rotate
        self.n_out = 3 * bins + int(rotate)
        d_a, d_b = int(mask.sum()), int((~mask).sum())
        if d_a > 0:
            self.net: nn.Module | None = mlp(2 * d_a, d_b * self.n_out, list(hidden), activation)
            self.const = None
        else:  # nothing to condition on: free parameters (an unconditional circular spline)
            self.net = None
            self.const = nn.Parameter(torch.zeros(d_b * self.n_out))

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        d_b = self.idx_b.numel()
        if self.net is not None:
            xa = x[..., self.idx_a]
            raw = self.net(torch.cat([torch.cos(xa), torch.sin(xa)], dim=-1))
        else:
            raw = self.const.expand(*x.shape[:-1], -1)
        raw = raw.reshape(*x.shape[:-1], d_b, self.n_out)
        k = self.bins
        p = spline_parameters(raw[..., :k], raw[..., k : 2 * k], raw[..., 2 * k : 3 * k], circular=True)
        shift = raw[..., 3 * k] if self.rotate else None
        return p.widths, p.heights, p.derivatives, shift

    def _assemble(self, x: Tensor, yb: Tensor) -> Tensor:
        full = torch.zeros_like(x).index_copy(-1, self.idx_b, yb)
        return torch.where(self.mask, x, full)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        w, h, d, shift = self._params(z)
        xb, logdet = rq_spline(wrap(z[..., self.idx_b]), w, h, d)
        if shift is not None:
            xb = wrap(xb + shift)
        return self._assemble(z, xb), logdet.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        w, h, d, shift = self._params(x)
        xb = x[..., self.idx_b]
        if shift is not None:
            xb = xb - shift
        zb, logdet = rq_spline(wrap(xb), w, h, d, inverse=True)
        return self._assemble(x, zb), logdet.sum(-1)


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
    layers = [CircularSplineCoupling(m, hidden, bins, rotate, activation) for m in torus_masks(dim, n_layers)]
    return Flow(UniformTorus(dim), Compose(layers))
