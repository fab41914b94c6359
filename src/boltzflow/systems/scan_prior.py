"""Data-free internal-coordinate statistics from one-dimensional energy scans of a reference structure.

A flow trained from the energy alone (CMT, reverse KL, TA-BG) starts from a prior q_0 that must cover the target
without wasting its samples thousands of kT above it. TA-BG's prior centres bonds and angles on the PDB structure
with fixed spreads and makes every torsion uniform; for alanine dipeptide its median energy is ~3·10⁴ kT, because a
uniform peptide bond or a uniform torsion of a hydrogen about its own carbon clashes. :func:`scan_statistics`
asks the energy instead. For each internal coordinate q_j of the reference structure q_ref:

1. set q_j to each of ``n_grid`` values with the others held at q_ref (bonds ``q_ref · (1 ± bond_range)``, angles
   ``q_ref ± angle_range`` rad, torsions the whole circle) and evaluate the reduced energy u;
2. weigh the grid by the one-dimensional Boltzmann profile ``exp(-(u - min u) / τ)`` at the temperature factor
   τ (τ = 4 is 1200 K for a 300 K target, TA-BG's starting temperature);
3. ``loc`` = the profile's mean (circular mean for torsions), ``scale`` = its standard deviation (circular
   spread ``sqrt(-2 ln R)``, R the mean resultant length, for torsions).

A torsion is *wide* (``scale = 1``: uniform on the circle, the convention of
:class:`~boltzflow.flows.ic_layers.ICStandardize`) when its profile's spread exceeds ``wide_spread`` or its atoms
are one of the ``wide`` dihedrals (e.g. every backbone φ and ψ, so that no basin of the Ramachandran plane is
excluded by the rigid scan); the others are modelled on the line around their circular mean. For a coordinate with
a harmonic energy ``k (q - c)² / 2`` (others fixed) the scan gives ``loc = c`` and ``scale = sqrt(τ / k)``; a
torsion with ``u = -κ cos(t - μ)`` gives ``loc = μ`` and ``R = I1(κ/τ) / I0(κ/τ)`` (tests). The rigid scan ignores
couplings between coordinates, so the result is a starting point, not a model of the target: what the flow
learns afterwards comes from the energy. The scan costs ``d · n_grid`` energy evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from boltzflow.flows.ic_layers import ICStats
from boltzflow.flows.internal import InternalCoordinates


class ScanPrior(NamedTuple):
    """What :func:`scan_statistics` returns.

    Attributes:
        stats: loc and scale per internal coordinate, shapes (d,), for the internal-coordinate flows.
        wide: bool mask of the wide (uniform) torsions, shape (d,).
        spread: the profile's standard deviation (circular spread for torsions) per coordinate, shape (d,).
        barrier: max - min of u along each scan, kT, shape (d,).
        edge_weight: the profile's weight on the two end points of a bond or angle scan (0 for torsions), shape
            (d,); near 0 when the scan range covers the profile.
        n_evaluations: energy evaluations spent, d · n_grid.
    """

    stats: ICStats
    wide: Tensor
    spread: Tensor
    barrier: Tensor
    edge_weight: Tensor
    n_evaluations: int

    def summary(self) -> dict[str, Any]:
        """JSON-able summary: counts, the wide torsions and the largest edge weight."""
        return {"n_evaluations": self.n_evaluations, "n_wide_torsions": int(self.wide.sum()),
                "wide_indices": [int(i) for i in torch.nonzero(self.wide).flatten()],
                "max_edge_weight": float(self.edge_weight.max())}


def _grids(ic: InternalCoordinates, q_ref: Tensor, n_grid: int, bond_range: float, angle_range: float) -> Tensor:
    """Scan values per coordinate, shape (d, n_grid)."""
    unit = torch.linspace(-1.0, 1.0, n_grid, dtype=q_ref.dtype)
    grids = q_ref[:, None] + angle_range * unit
    grids[ic.bond_idx] = q_ref[ic.bond_idx, None] * (1.0 + bond_range * unit)
    circle = torch.linspace(-math.pi, math.pi, n_grid + 1, dtype=q_ref.dtype)[:-1]
    grids[ic.torsion_idx] = circle
    return grids


def _torsion_index(ic: InternalCoordinates, atoms: Sequence[int]) -> int:
    """Position in the internal vector of the Z-matrix torsion over these four atoms (either direction)."""
    rows = ic.zmatrix.rows
    quad = tuple(int(a) for a in atoms)
    for r in range(3, len(rows)):
        row = tuple(int(a) for a in rows[r])
        if row == quad or row == quad[::-1]:
            return int(ic.torsion_idx[r - 3])
    raise ValueError(f"dihedral {quad} is not a torsion of the Z-matrix; name wide torsions by their Z-matrix atoms")


def scan_statistics(
    ic: InternalCoordinates,
    energy: Callable[[Tensor], Tensor],
    x_ref: Tensor,
    temperature_factor: float = 4.0,
    wide_spread: float = 1.0,
    wide: Sequence[Sequence[int]] = (),
    n_grid: int = 121,
    bond_range: float = 0.3,
    angle_range: float = 0.6,
    chunk: int = 8192,
) -> ScanPrior:
    """Statistics of the internal coordinates from energy scans around ``x_ref`` (module docstring).

    Args:
        ic: the internal coordinates (no rigid frame).
        energy: reduced energy u(x), flattened positions (..., 3n) nm -> (...).
        x_ref: reference positions, shape (3n,) or (n, 3), nm.
        temperature_factor: τ, the profile's temperature in units of the target's.
        wide_spread: spread (rad) above which a torsion is uniform.
        wide: dihedrals (four atom indices each) that are uniform whatever their scan says.
        n_grid: scan points per coordinate.
        bond_range: bonds are scanned over ``q_ref · (1 ± bond_range)``.
        angle_range: angles are scanned over ``q_ref ± angle_range`` rad.
        chunk: configurations per energy call.
    """
    if not (temperature_factor > 0 and math.isfinite(temperature_factor)):
        raise ValueError(f"temperature_factor must be a finite number > 0, got {temperature_factor}")
    if not 0 < wide_spread < math.inf or n_grid < 8 or not 0 < bond_range < 1 or not 0 < angle_range < 1.5:
        raise ValueError("scan_statistics needs wide_spread > 0, n_grid >= 8, 0 < bond_range < 1 and "
                         f"0 < angle_range < 1.5, got {wide_spread}, {n_grid}, {bond_range}, {angle_range}")
    x_ref = torch.as_tensor(x_ref, dtype=torch.float64).reshape(1, -1)
    q_ref = ic.inverse(x_ref)[0][0]
    d = q_ref.numel()
    grids = _grids(ic, q_ref, n_grid, bond_range, angle_range)
    q = q_ref.repeat(d, n_grid, 1)
    q[torch.arange(d), :, torch.arange(d)] = grids
    x = ic(q.reshape(d * n_grid, d))[0]
    with torch.no_grad():
        u = torch.cat([energy(part).to(torch.float64) for part in x.split(chunk)]).reshape(d, n_grid)
    if not torch.isfinite(u).any(1).all():
        raise ValueError("the energy is not finite anywhere along some scan; check the reference structure")
    u = torch.where(torch.isfinite(u), u, torch.inf)
    low = u.min(1, keepdim=True).values
    w = torch.softmax(-(u - low) / temperature_factor, 1)
    mean = (w * grids).sum(1)
    sd = ((w * (grids - mean[:, None]) ** 2).sum(1)).sqrt()
    is_torsion = torch.zeros(d, dtype=torch.bool)
    is_torsion[ic.torsion_idx] = True
    s, c = (w * torch.sin(grids)).sum(1), (w * torch.cos(grids)).sum(1)
    circ = torch.sqrt(-2 * torch.log(torch.hypot(s, c).clamp(1e-12, 1.0)))
    loc = torch.where(is_torsion, torch.atan2(s, c), mean)
    spread = torch.where(is_torsion, circ, sd)
    forced = torch.zeros(d, dtype=torch.bool)
    for atoms in wide:
        forced[_torsion_index(ic, atoms)] = True
    wide_mask = is_torsion & ((spread > wide_spread) | forced)
    scale = torch.where(wide_mask, torch.ones_like(spread), spread.clamp_min(1e-4))
    edge = torch.where(is_torsion, torch.zeros_like(sd), w[:, 0] + w[:, -1])
    barrier = torch.where(torch.isfinite(u), u, -torch.inf).max(1).values - low[:, 0]
    return ScanPrior(ICStats(loc, scale), wide_mask, spread, barrier, edge, d * n_grid)


__all__ = ["ScanPrior", "scan_statistics"]
