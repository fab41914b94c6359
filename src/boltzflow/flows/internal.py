"""Internal coordinates (bonds, angles, torsions) as a transform with an exact log-determinant.

``InternalCoordinates`` maps an internal-coordinate vector to flattened Cartesian positions (forward, the
sampling direction) and back (inverse). The internal vector is laid out as ::

    [ bonds (n-1) | angles (n-2) | torsions (n-3) | frame (6, only with keep_frame=True) ]

in Z-matrix row order (bond of row r at ``r-1``, angle of row r at ``n-1 + r-2``, torsion of row r at
``2n-3 + r-3``). Units: nm and radians. Angles lie in ``(0, pi)``, torsions in ``(-pi, pi]`` (periodic).

The rigid frame. Root atom ``r0`` sits at the origin, ``r1`` on the +z axis, and ``r2`` in the xz-plane on
the +x side (the *body frame*). With ``keep_frame=True`` the last six entries
``(x0, y0, z0, polar, azimuth, spin)`` move the body frame: ``x = t0 + R x_body`` with
``R = R_z(azimuth) R_y(polar) R_z(spin)`` (ZYZ Euler angles), so ``r1 - r0`` points along the spherical angles
``(polar, azimuth)`` and ``spin`` turns ``r2`` about that axis. This is a bijection of R^{3n} (up to a null
set) and its log-det is

.. math::
    \\log|\\det \\partial x/\\partial q| = \\sum_{i \\ne r_0} 2\\log b_i
    + \\sum_{i \\ne r_0, r_1} \\log\\sin a_i + \\log\\sin(\\text{polar}),

each placed atom contributing the spherical-coordinate factor ``b^2 sin(a)`` about its bond partner (``r1``
contributes ``b^2 sin(polar)``, ``r2`` has ``spin`` as its azimuth).

Without the frame (default, 3n-6 numbers) forward builds the molecule in the body frame and inverse discards
the rigid motion; the log-det is the same sum without ``log sin(polar)``. That is the exact density of the
*reduced* (rigid-motion-free) configuration: for a rotation- and translation-invariant density p(x), the
internal coordinates have density ``p(x) exp(logdet_forward) * 8 pi^2 V`` (V the volume swept by r0, 8 pi^2
the Haar volume of SO(3)), so ``log q_x(x) = log q_internal(q) + logdet_inverse`` is a density of x up to the
constant ``log(8 pi^2 V)``, which cancels in normalised importance weights, ESS, reweighting and free-energy
differences (it shifts log Z only).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from boltzflow.flows.core import Transform
from boltzflow.flows.zmatrix import ZMatrix
from boltzflow.geometry import bond_angles, dihedrals, distances


class InternalCoordinates(Transform):
    """Internal vector (..., 3n-6 or 3n) <-> flattened Cartesian positions (..., 3n), nm and radians.

    Args:
        zmatrix: the placement order and reference atoms (see :func:`~boltzflow.flows.zmatrix.build_zmatrix`).
        keep_frame: add the six rigid-frame coordinates and make the map a bijection of R^{3n}.

    Attributes:
        n_atoms: number of atoms n.
        dim: length of the internal vector, 3n-6 or 3n.
        bond_idx, angle_idx, torsion_idx, frame_idx: positions of each kind in the internal vector (long).
        periodic_idx: the periodic entries: torsions, plus azimuth and spin with the frame (long).
    """

    def __init__(self, zmatrix: ZMatrix, keep_frame: bool = False) -> None:
        super().__init__()
        n = zmatrix.n_atoms
        self.zmatrix, self.keep_frame, self.n_atoms = zmatrix, keep_frame, n
        self.dim = 3 * n if keep_frame else 3 * n - 6
        ar = lambda a, b: torch.arange(a, b, dtype=torch.long)  # noqa: E731
        frame = ar(3 * n - 6, 3 * n) if keep_frame else ar(0, 0)
        buffers = {
            "rows": torch.as_tensor(zmatrix.rows, dtype=torch.long),
            "bond_idx": ar(0, n - 1),
            "angle_idx": ar(n - 1, 2 * n - 3),
            "torsion_idx": ar(2 * n - 3, 3 * n - 6),
            "frame_idx": frame,
            "periodic_idx": torch.cat([ar(2 * n - 3, 3 * n - 6), frame[4:]]),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)
        self._n_generations = len(zmatrix.generations)
        for g, rows in enumerate(zmatrix.generations):
            self.register_buffer(
                f"_generation_{g}", torch.as_tensor(rows, dtype=torch.long), persistent=False
            )

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Build Cartesian positions from internal coordinates.

        Args:
            z: internal coordinates, shape (..., dim); bonds in nm (> 0), angles in (0, pi), torsions in
                radians.

        Returns:
            x: positions, shape (..., 3 n_atoms), nm; logdet: log|det dx/dz|, shape (...).
        """
        self._check(z, self.dim, "internal coordinates")
        b, a, t = z[..., self.bond_idx], z[..., self.angle_idx], z[..., self.torsion_idx]
        pos = self._place_roots(b, a)
        for g in range(self._n_generations):
            rows = getattr(self, f"_generation_{g}")
            atom, j, k, h = self.rows[rows].unbind(-1)
            new = _nerf(
                pos[..., j, :],
                pos[..., k, :],
                pos[..., h, :],
                b[..., rows - 1],
                a[..., rows - 2],
                t[..., rows - 3],
            )
            pos = pos.index_copy(-2, atom, new)
        logdet = _logdet(b, a)
        if self.keep_frame:
            frame = z[..., self.frame_idx]
            rot = _euler_zyz(frame[..., 4], frame[..., 3], frame[..., 5])
            pos = pos @ rot.transpose(-1, -2) + frame[..., None, :3]
            logdet = logdet + torch.log(torch.sin(frame[..., 3]))
        return pos.flatten(-2), logdet

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Internal coordinates of Cartesian positions.

        Args:
            x: positions, shape (..., 3 n_atoms), nm.

        Returns:
            z: internal coordinates, shape (..., dim); logdet: log|det dz/dx|, shape (...) (see the module
            docstring for its meaning without the frame).
        """
        self._check(x, 3 * self.n_atoms, "flattened positions")
        pos = x.unflatten(-1, (self.n_atoms, 3))
        b = distances(pos, self.rows[1:, :2])
        a = bond_angles(pos, self.rows[2:, :3])
        t = _wrap(dihedrals(pos, self.rows[3:]))
        parts, logdet = [b, a, t], -_logdet(b, a)
        if self.keep_frame:
            frame = self._frame(pos)
            parts.append(frame)
            logdet = logdet - torch.log(torch.sin(frame[..., 3]))
        return torch.cat(parts, dim=-1), logdet

    def _place_roots(self, b: Tensor, a: Tensor) -> Tensor:
        """Body-frame positions, shape (..., n, 3), with only the three roots filled in."""
        r0, r1, r2 = self.zmatrix.roots
        zero = b.new_zeros(b.shape[:-1])
        p1 = torch.stack([zero, zero, b[..., 0]], dim=-1)
        # r2 hangs off r0 (axis towards r1 is +z) or off r1 (axis towards r0 is -z); it lies in the xz-plane.
        from_r1 = int(self.zmatrix.rows[2, 1]) == r1
        base = p1 if from_r1 else torch.zeros_like(p1)
        along = -torch.cos(a[..., 0]) if from_r1 else torch.cos(a[..., 0])
        p2 = base + b[..., 1, None] * torch.stack([torch.sin(a[..., 0]), zero, along], dim=-1)
        pos = b.new_zeros(b.shape[:-1] + (self.n_atoms, 3))
        roots = torch.tensor([r1, r2], dtype=torch.long, device=b.device)
        return pos.index_copy(-2, roots, torch.stack([p1, p2], dim=-2))

    def _frame(self, pos: Tensor) -> Tensor:
        """``(x0, y0, z0, polar, azimuth, spin)`` of positions (..., n, 3)."""
        r0, r1, r2 = self.zmatrix.roots
        e = pos[..., r1, :] - pos[..., r0, :]
        polar = torch.atan2(torch.linalg.vector_norm(e[..., :2], dim=-1), e[..., 2])
        azimuth = _wrap(torch.atan2(e[..., 1], e[..., 0]))
        rot = _euler_zyz(azimuth, polar, torch.zeros_like(polar))
        bond = pos[..., r2, :] - pos[..., int(self.zmatrix.rows[2, 1]), :]
        v = (bond[..., None, :] @ rot).squeeze(-2)  # R^T bond: the r2 bond in the body frame
        spin = _wrap(torch.atan2(v[..., 1], v[..., 0]))
        return torch.cat([pos[..., r0, :], torch.stack([polar, azimuth, spin], dim=-1)], dim=-1)

    @staticmethod
    def _check(v: Tensor, size: int, what: str) -> None:
        if v.shape[-1] != size:
            raise ValueError(f"expected {what} of shape (..., {size}), got {tuple(v.shape)}")


def _nerf(pj: Tensor, pk: Tensor, pl: Tensor, bond: Tensor, angle: Tensor, torsion: Tensor) -> Tensor:
    """Place atoms i from partners j, k, l ((..., m, 3) each): |i-j| = bond, angle i-j-k, torsion i-j-k-l."""
    bc = _unit(pj - pk)
    n = _unit(torch.linalg.cross(pk - pl, bc, dim=-1))
    m = torch.linalg.cross(n, bc, dim=-1)
    sin_a = torch.sin(angle)
    d = torch.stack([-torch.cos(angle), sin_a * torch.cos(torsion), sin_a * torch.sin(torsion)], dim=-1)
    return pj + bond[..., None] * (d[..., 0:1] * bc + d[..., 1:2] * m + d[..., 2:3] * n)


def _logdet(b: Tensor, a: Tensor) -> Tensor:
    """Sum of the per-atom spherical factors ``log(b^2 sin a)`` over the placed atoms (frame excluded)."""
    return 2 * torch.log(b).sum(-1) + torch.log(torch.sin(a)).sum(-1)


def _euler_zyz(alpha: Tensor, beta: Tensor, gamma: Tensor) -> Tensor:
    """Rotation matrices R_z(alpha) R_y(beta) R_z(gamma), shape (..., 3, 3)."""
    return _rot(alpha, 2) @ _rot(beta, 1) @ _rot(gamma, 2)


def _rot(angle: Tensor, axis: int) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    if axis == 2:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    else:
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def _wrap(angle: Tensor) -> Tensor:
    """Map ``atan2``'s closed interval [-pi, pi] onto (-pi, pi]."""
    return torch.where(angle <= -math.pi, angle + 2 * math.pi, angle)
