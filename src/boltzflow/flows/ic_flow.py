"""A spline flow on the internal coordinates of a molecule (Boltzmann-generator architecture, paper 004 §6.3).

Latent space (dimension d = 3n - 6, laid out like :class:`~boltzflow.flows.internal.InternalCoordinates`):
bonds, angles and *narrow* torsions (circular spread < 0.6 rad in the data, see :func:`ic_statistics`) are
standard normal, the other torsions uniform on [-pi, pi). The transform, latent -> Cartesian:

1. ``n_layers`` blocks of :class:`MixedSplineCoupling`, each block transforming in turn the even and the odd
   periodic torsions, the narrow torsions, the bonds and the angles, every group conditioned on all the others
   (periodic torsions enter the conditioner as (cos, sin), the rest as standardised values). Periodic torsions
   go through circular rational-quadratic splines plus a conditional rotation (diffeomorphisms of the circle,
   so periodicity is kept); the other entries through RQ splines on ``[-tail_bound, tail_bound]`` with linear tails.
2. :class:`ICStandardize`: fixed de-standardisation with data statistics, ``b = mean + std * z`` for bonds and
   angles, ``t = wrap(circular mean + spread * z)`` for torsions (spread 1 for the periodic ones).
3. :class:`~boltzflow.flows.internal.InternalCoordinates` (no rigid frame): internal vector -> flattened
   Cartesian positions, shape (..., 3n), nm.

So ``flow.sample(n).x`` has shape (n, 3n) (reshape to (n, n, 3) for an energy) and ``flow.log_prob(x)`` is
the exact log density of the rigid-motion-free configuration; as a density of Cartesian x it is off by the
constant ``log(8 pi^2 V)`` (see :mod:`boltzflow.flows.internal`), which cancels in self-normalised importance
weights, ESS and reweighting. All layers start as the identity, so an untrained flow is the Gaussian/uniform
"mean structure" model of the statistics.

The flow knows no physics: the Z-matrix and statistics come in as numbers (:func:`ic_spline_spec` stores them
in a JSON-able spec, :func:`build_ic_spline` rebuilds the flow from it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from boltzflow.flows.core import Compose, Transform
from boltzflow.flows.flow import Flow
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.nets import mlp
from boltzflow.flows.splines import rq_spline, spline_parameters
from boltzflow.flows.torus import wrap
from boltzflow.flows.zmatrix import ZMatrix

LOG_2PI = math.log(2 * math.pi)


class ICStats(NamedTuple):
    """Per-coordinate statistics of internal coordinates (layout of ``InternalCoordinates``).

    Attributes:
        loc: means (nm, rad) of bonds and angles, circular means of torsions (rad), shape (d,).
        scale: standard deviations of bonds and angles (floored), 1 for torsions, shape (d,).
    """

    loc: Tensor
    scale: Tensor


def ic_statistics(
    q: Tensor, periodic: Tensor, min_scale: float = 1e-4, max_linear_std: float = 0.6
) -> ICStats:
    """Statistics for :class:`ICStandardize` from internal coordinates of data.

    Torsions whose circular standard deviation ``sqrt(-2 ln R)`` (R the mean resultant length) is below
    ``max_linear_std`` are *narrow*: they get ``scale`` = that spread and are modelled on the line, centred on
    their circular mean (the Gaussian latent mass beyond ±pi, i.e. beyond ±pi/scale standard deviations, is
    < 1e-7 for the default and is neglected). The other torsions keep ``scale = 1`` exactly and are modelled
    on the circle. So a torsion is periodic in the flow iff its scale is 1.

    Args:
        q: internal coordinates, shape (m, d), nm and radians.
        periodic: bool mask of the torsions, shape (d,).
        min_scale: floor of the standard deviations (e.g. for bonds held fixed by constraints in the data).
        max_linear_std: spread (rad, < 1) under which a torsion is modelled on the line.
    """
    if q.ndim != 2 or q.shape[0] < 2 or not torch.isfinite(q).all():
        raise ValueError(f"need finite internal coordinates of shape (m >= 2, d), got {tuple(q.shape)}")
    if not 0 <= max_linear_std < 1:
        raise ValueError(f"max_linear_std must be in [0, 1) rad, got {max_linear_std}")
    periodic = torch.as_tensor(periodic, dtype=torch.bool)
    sin, cos = torch.sin(q).mean(0), torch.cos(q).mean(0)
    circ_std = torch.sqrt(-2 * torch.log(torch.sqrt(sin**2 + cos**2).clamp(1e-12, 1.0)))
    narrow = periodic & (circ_std < max_linear_std)
    loc = torch.where(periodic, torch.atan2(sin, cos), q.mean(0))
    scale = torch.where(periodic, torch.ones_like(loc), q.std(0).clamp_min(min_scale))
    scale = torch.where(narrow, circ_std.clamp_min(min_scale), scale)
    return ICStats(loc, scale)


class ICBase(nn.Module):
    """Latent distribution: N(0, 1) on the non-periodic entries, uniform on [-pi, pi) on the periodic ones.

    Args:
        periodic: bool mask, shape (d,).
    """

    def __init__(self, periodic: Tensor) -> None:
        super().__init__()
        periodic = torch.as_tensor(periodic, dtype=torch.bool)
        self.dim = int(periodic.numel())
        self.register_buffer("periodic", periodic)
        self.register_buffer("_anchor", torch.zeros(()))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` latent points, shape (n, d), on the module's device and dtype."""
        a = self._anchor
        normal = torch.randn(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)
        uniform = torch.rand(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)
        return torch.where(self.periodic, 2 * math.pi * uniform - math.pi, normal)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log density, shape (..., d) -> (...); -inf when a periodic entry lies outside [-pi, pi]."""
        gauss = -0.5 * z**2 - 0.5 * LOG_2PI
        inside = (z >= -math.pi) & (z <= math.pi)
        unif = torch.where(inside, torch.full_like(z, -LOG_2PI), torch.full_like(z, -math.inf))
        return torch.where(self.periodic, unif, gauss).sum(-1)


class ICStandardize(Transform):
    """Fixed map ``x = loc + scale * z``, wrapped to [-pi, pi) on the angular (torsion) entries.

    The inverse is ``z = (x - loc) / scale``, with ``x - loc`` wrapped on the angular entries; for wide
    torsions (scale 1) this is a rotation of the circle, for narrow ones a centred, scaled chart.

    Args:
        stats: :class:`ICStats` (loc and scale, shape (d,)).
        periodic: bool mask of the angular entries (torsions), shape (d,).
    """

    def __init__(self, stats: ICStats, periodic: Tensor) -> None:
        super().__init__()
        periodic = torch.as_tensor(periodic, dtype=torch.bool)
        scale = torch.as_tensor(stats.scale)
        if torch.any(scale <= 0):
            raise ValueError("ICStandardize scale must be positive")
        self.register_buffer("periodic", periodic)
        self.register_buffer("loc", torch.as_tensor(stats.loc))
        self.register_buffer("log_scale", torch.log(scale))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = self.loc + z * torch.exp(self.log_scale)
        return torch.where(self.periodic, wrap(x), x), self.log_scale.sum().expand(z.shape[:-1])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d = x - self.loc
        z = torch.where(self.periodic, wrap(d), d) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[:-1])


class MixedSplineCoupling(Transform):
    """Coupling layer on a product of circles and lines: the entries ``idx_b`` (all periodic or all not) go
    through RQ splines whose parameters depend on all other entries.

    Periodic ``b``: circular spline on [-pi, pi] then a conditional rotation, ``x = wrap(s(z) + shift)``.
    Non-periodic ``b``: spline on ``[-tail_bound, tail_bound]`` with linear tails. Conditioner features: (cos,
    sin) of periodic inputs, raw values of the others. The last layer is zero-initialised (identity start).

    Args:
        periodic: bool mask of periodic entries, shape (D,).
        idx_b: indices of the transformed entries (long), all periodic or all non-periodic.
        hidden: conditioner hidden widths.
        bins: spline bins K.
        tail_bound: half-width of the spline interval of non-periodic entries.
        activation: conditioner activation.
    """

    def __init__(
        self,
        periodic: Tensor,
        idx_b: Tensor,
        hidden: Sequence[int] = (64, 64),
        bins: int = 8,
        tail_bound: float = 5.0,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        periodic = torch.as_tensor(periodic, dtype=torch.bool)
        idx_b = torch.as_tensor(idx_b, dtype=torch.long)
        kinds = periodic[idx_b]
        if idx_b.numel() == 0 or bool(kinds.any()) != bool(kinds.all()):
            raise ValueError("idx_b must be non-empty and all periodic or all non-periodic")
        keep = torch.ones_like(periodic)
        keep[idx_b] = False
        idx_a = torch.nonzero(keep).flatten()
        if idx_a.numel() == 0:
            raise ValueError("a coupling layer needs at least one conditioning entry")
        self.circular, self.bins, self.tail_bound = bool(kinds.all()), bins, float(tail_bound)
        self.register_buffer("idx_b", idx_b)
        self.register_buffer("idx_a_per", idx_a[periodic[idx_a]])
        self.register_buffer("idx_a_lin", idx_a[~periodic[idx_a]])
        n_in = 2 * self.idx_a_per.numel() + self.idx_a_lin.numel()
        self.n_out = 3 * bins + 1  # circular: K slopes + rotation; interval: K + 1 slopes
        self.net = mlp(n_in, idx_b.numel() * self.n_out, list(hidden), activation)

    def _params(self, x: Tensor):
        per = x[..., self.idx_a_per]
        feats = torch.cat([torch.cos(per), torch.sin(per), x[..., self.idx_a_lin]], dim=-1)
        raw = self.net(feats).unflatten(-1, (self.idx_b.numel(), self.n_out))
        k = self.bins
        if self.circular:
            p = spline_parameters(raw[..., :k], raw[..., k : 2 * k], raw[..., 2 * k : 3 * k], circular=True)
            return p, raw[..., 3 * k]
        b = self.tail_bound
        p = spline_parameters(
            raw[..., :k], raw[..., k : 2 * k], raw[..., 2 * k :], low=-b, high=b, circular=False
        )
        return p, None

    def _spline(self, v: Tensor, p, inverse: bool) -> tuple[Tensor, Tensor]:
        lo, hi = (-math.pi, math.pi) if self.circular else (-self.tail_bound, self.tail_bound)
        return rq_spline(v, p.widths, p.heights, p.derivatives, inverse=inverse, low=lo, high=hi)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        p, shift = self._params(z)
        zb = z[..., self.idx_b]
        xb, logdet = self._spline(wrap(zb) if self.circular else zb, p, inverse=False)
        if shift is not None:
            xb = wrap(xb + shift)
        return z.index_copy(-1, self.idx_b, xb), logdet.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p, shift = self._params(x)
        xb = x[..., self.idx_b]
        if shift is not None:
            xb = wrap(xb - shift)
        zb, logdet = self._spline(xb, p, inverse=True)
        return x.index_copy(-1, self.idx_b, zb), logdet.sum(-1)


def sibling_torsions(zmatrix: ZMatrix) -> ZMatrix:
    """Re-reference the torsions of sibling atoms to the first sibling (bgflow-style "relative" torsions).

    Atoms placed from the same bond and angle partners ``(j, k)`` (e.g. the three hydrogens of a methyl group,
    or the substituents of a chiral centre) all get torsions about the same ``j-k`` axis that rotate together.
    Defining every later sibling's torsion against the first sibling (``i-j-k-first``) turns those into nearly
    constant offsets (about ±120°), which a coupling flow learns far more easily than a sharp joint
    distribution of co-rotating angles. The first sibling keeps its original torsion partner.

    Args:
        zmatrix: any valid Z-matrix.

    Returns:
        a Z-matrix placing the same atoms from the same bond and angle partners.
    """
    rows = np.array(zmatrix.rows, copy=True)
    first: dict[tuple[int, int], int] = {}
    for r in range(3, len(rows)):
        atom, j, k, _ = (int(v) for v in rows[r])
        if (j, k) in first:
            rows[r, 3] = first[(j, k)]
        else:
            first[(j, k)] = atom
    return ZMatrix(rows)


def coupling_groups(ic: InternalCoordinates, periodic: Tensor) -> list[Tensor]:
    """Groups transformed in turn within a block: even and odd periodic torsions, narrow torsions, bonds, angles.

    Args:
        ic: the internal-coordinate layout.
        periodic: bool mask of the torsions modelled on the circle, shape (d,).
    """
    t = ic.torsion_idx
    wide, narrow = t[periodic[t]], t[~periodic[t]]
    groups = [wide[0::2], wide[1::2], narrow, ic.bond_idx, ic.angle_idx]
    return [g.clone() for g in groups if g.numel() > 0]


def ic_spline_flow(
    zmatrix: ZMatrix,
    stats: ICStats,
    n_layers: int = 4,
    bins: int = 8,
    hidden: Sequence[int] = (128, 128),
    tail_bound: float = 5.0,
    activation: str = "silu",
) -> Flow:
    """Spline flow latent (d = 3n - 6) -> flattened Cartesian positions (3n, nm), see the module docstring.

    Args:
        zmatrix: placement order of the atoms.
        stats: :func:`ic_statistics` of training data (shapes (d,)).
        n_layers: coupling blocks (each transforms all four groups once).
        bins: spline bins K.
        hidden: conditioner hidden widths.
        tail_bound: spline interval half-width for standardised bonds and angles.
        activation: conditioner activation.
    """
    ic = InternalCoordinates(zmatrix)
    angular = torch.zeros(ic.dim, dtype=torch.bool)
    angular[ic.periodic_idx] = True
    if stats.loc.shape != (ic.dim,) or stats.scale.shape != (ic.dim,):
        raise ValueError(f"stats must have shape ({ic.dim},) for this Z-matrix, got {tuple(stats.loc.shape)}")
    periodic = angular & (torch.as_tensor(stats.scale) == 1.0)  # wide torsions (see ic_statistics)
    layers: list[Transform] = []
    for _ in range(n_layers):
        for group in coupling_groups(ic, periodic):
            layers.append(MixedSplineCoupling(periodic, group, hidden, bins, tail_bound, activation))
    layers += [ICStandardize(stats, angular), ic]
    return Flow(ICBase(periodic), Compose(layers))


def ic_spline_spec(
    zmatrix: ZMatrix,
    stats: ICStats,
    n_layers: int = 4,
    bins: int = 8,
    hidden: Sequence[int] = (128, 128),
    tail_bound: float = 5.0,
    activation: str = "silu",
    **info: Any,
) -> dict[str, Any]:
    """JSON-able spec of :func:`ic_spline_flow` (kind ``"ic_spline"``); ``info`` is stored as is (molecule)."""
    config = {
        "zmatrix": np.asarray(zmatrix.rows).tolist(),
        "n_layers": n_layers,
        "bins": bins,
        "hidden": list(hidden),
        "tail_bound": tail_bound,
        "activation": activation,
    }
    as_list = lambda v: [float(a) for a in torch.as_tensor(v).flatten()]  # noqa: E731
    return {
        "kind": "ic_spline",
        "config": config,
        "loc": as_list(stats.loc),
        "scale": as_list(stats.scale),
        **({"info": info} if info else {}),
    }


def build_ic_spline(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    """Builder for ``boltzflow.flows.spec.BUILDERS["ic_spline"]``: the flow of an :func:`ic_spline_spec`."""
    config = dict(config)
    zmatrix = ZMatrix(np.asarray(config.pop("zmatrix"), dtype=np.int64))
    dtype = torch.get_default_dtype()
    stats = ICStats(torch.as_tensor(loc, dtype=dtype), torch.as_tensor(scale, dtype=dtype))
    return ic_spline_flow(zmatrix, stats, **config)
