"""The fixed pieces of the internal-coordinate flows: data statistics, the latent base, the standardisation.

See :mod:`boltzflow.flows.ic_flow` for how they are put together. Layout of the internal vector: that of
:class:`~boltzflow.flows.internal.InternalCoordinates` (bonds, angles, torsions; nm and radians).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from boltzflow.flows.core import Transform
from boltzflow.flows.elementwise import wrap
from boltzflow.flows.internal import InternalCoordinates
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
    """Latent distribution: uniform on [-pi, pi) on the periodic entries; on the others N(0, 1), or, with
    ``unit_interval``, uniform on [0, 1] (the latent of the smooth flows).

    Args:
        periodic: bool mask, shape (d,).
        unit_interval: non-periodic entries uniform on [0, 1] instead of standard normal.
    """

    def __init__(self, periodic: Tensor, unit_interval: bool = False) -> None:
        super().__init__()
        periodic = torch.as_tensor(periodic, dtype=torch.bool)
        self.dim = int(periodic.numel())
        self.unit_interval = bool(unit_interval)
        self.register_buffer("periodic", periodic)
        self.register_buffer("_anchor", torch.zeros(()))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` latent points, shape (n, d), on the module's device and dtype."""
        a = self._anchor
        if self.unit_interval:
            uniform = torch.rand(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)
            return torch.where(self.periodic, 2 * math.pi * uniform - math.pi, uniform)
        normal = torch.randn(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)
        uniform = torch.rand(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)
        return torch.where(self.periodic, 2 * math.pi * uniform - math.pi, normal)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log density, shape (..., d) -> (...); -inf when an entry lies outside its support."""
        # full_like keeps z's dtype: torch.where on two Python scalars gives the default dtype (float32), which
        # rounds log(2 pi) and put a 2e-8 per-angle error into float64 log-densities.
        on_circle = torch.full_like(z, -LOG_2PI).masked_fill((z < -math.pi) | (z > math.pi), -math.inf)
        if self.unit_interval:
            other = torch.zeros_like(z).masked_fill((z < 0) | (z > 1), -math.inf)
        else:
            other = -0.5 * z**2 - 0.5 * LOG_2PI
        return torch.where(self.periodic, on_circle, other).sum(-1)


class NormalQuantile(Transform):
    """Fixed map ``x = Phi^-1(u)`` (standard normal quantile) on the non-periodic entries, identity on the rest.

    It turns the unit interval of the smooth flows into the line, so an identity stack of couplings is the
    standard normal, as in the spline flow, and the density has full support and is C-infinity. ``u`` is
    clamped into (0, 1) first (``torch.rand`` can return 0, and float32 rounds 1 - 1e-8 to 1), so the sample
    extremes are about -13 and +5.3 in float32, -37 and +8.3 in float64.

    Args:
        periodic: bool mask of the entries left alone, shape (d,).
    """

    def __init__(self, periodic: Tensor) -> None:
        super().__init__()
        self.register_buffer("periodic", torch.as_tensor(periodic, dtype=torch.bool), persistent=False)

    def _log_phi(self, x: Tensor) -> Tensor:
        return torch.where(self.periodic, 0.0, -0.5 * x**2 - 0.5 * LOG_2PI).sum(-1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        info = torch.finfo(z.dtype)
        x = torch.special.ndtri(z.clamp(info.tiny, 1 - info.eps / 2))
        x = torch.where(self.periodic, z, x)
        return x, -self._log_phi(x)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.where(self.periodic, x, torch.special.ndtr(x)), self._log_phi(x)


class CircleFromLine(Transform):
    """Fixed map ``t = 2 pi Phi(z) - pi`` (line -> open circle chart) on the ``periodic`` entries, identity on the rest.

    The affine (RealNVP) internal-coordinate flow keeps every entry on the line, where an affine coupling is a
    bijection; this map then sends the wide torsions onto (-pi, pi) exactly, with log|dt/dz| = log(2 pi) +
    log phi(z), so the density is exact (but need not be continuous across the seam at ±pi).

    Args:
        periodic: bool mask of the entries mapped to the circle, shape (d,).
    """

    def __init__(self, periodic: Tensor) -> None:
        super().__init__()
        self.register_buffer("periodic", torch.as_tensor(periodic, dtype=torch.bool), persistent=False)

    def _logdet(self, z: Tensor) -> Tensor:
        return torch.where(self.periodic, 0.5 * LOG_2PI - 0.5 * z**2, 0.0).sum(-1)  # log 2 pi + log phi(z)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        t = 2 * math.pi * torch.special.ndtr(z) - math.pi
        return torch.where(self.periodic, t, z), self._logdet(z)

    def inverse(self, t: Tensor) -> tuple[Tensor, Tensor]:
        info = torch.finfo(t.dtype)
        u = ((t + math.pi) / (2 * math.pi)).clamp(info.tiny, 1 - info.eps / 2)
        z = torch.where(self.periodic, torch.special.ndtri(u), t)
        return z, -self._logdet(z)


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


