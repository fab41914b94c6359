"""Batched molecular geometry in torch: distances, bond angles, dihedrals and Kabsch alignment.

Every function takes positions of shape ``(..., n_atoms, 3)`` (any length unit; angles come back in radians)
and works on any batch shape, on any device and dtype, and is differentiable.

Dihedral sign convention: IUPAC, the same as ``mdtraj.compute_dihedrals`` — looking along the 1→2→3 axis,
the angle is positive when the 0→1 bond has to be turned clockwise to eclipse the 2→3 bond. Values lie in
``(-pi, pi]`` (``atan2``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _gather(x: Tensor, indices: Tensor | list, width: int) -> tuple[Tensor, ...]:
    """Columns of atom positions picked by ``indices`` of shape (m, width): ``width`` tensors (..., m, 3)."""
    idx = torch.as_tensor(indices, dtype=torch.long, device=x.device)
    if idx.ndim != 2 or idx.shape[1] != width:
        raise ValueError(f"indices must have shape (m, {width}), got {tuple(idx.shape)}")
    if x.shape[-1] != 3:
        raise ValueError(f"positions must have shape (..., n_atoms, 3), got {tuple(x.shape)}")
    return tuple(x[..., idx[:, k], :] for k in range(width))


def pairwise_distances(x: Tensor) -> Tensor:
    """All inter-atomic distances.

    Args:
        x: positions, shape (..., n_atoms, 3).

    Returns:
        distances, shape (..., n_atoms, n_atoms), same unit as ``x``; zero on the diagonal.
    """
    diff = x[..., :, None, :] - x[..., None, :, :]
    sq = (diff**2).sum(-1)
    # sqrt has an infinite gradient at 0: keep the diagonal out of it.
    eye = torch.eye(x.shape[-2], dtype=torch.bool, device=x.device)
    return torch.where(eye, torch.zeros_like(sq), torch.sqrt(torch.where(eye, torch.ones_like(sq), sq)))


def distances(x: Tensor, pairs: Tensor | list) -> Tensor:
    """Distances between selected atom pairs.

    Args:
        x: positions, shape (..., n_atoms, 3).
        pairs: atom indices, shape (m, 2).

    Returns:
        shape (..., m), same unit as ``x``.
    """
    a, b = _gather(x, pairs, 2)
    return torch.linalg.vector_norm(b - a, dim=-1)


def bond_angles(x: Tensor, triples: Tensor | list) -> Tensor:
    """Angles at the middle atom of each triple ``(i, j, k)``.

    Args:
        x: positions, shape (..., n_atoms, 3).
        triples: atom indices, shape (m, 3).

    Returns:
        angles in radians, shape (..., m), in ``[0, pi]``.
    """
    a, b, c = _gather(x, triples, 3)
    u, v = a - b, c - b
    cross = torch.linalg.vector_norm(torch.linalg.cross(u, v, dim=-1), dim=-1)
    return torch.atan2(cross, (u * v).sum(-1))


def dihedrals(x: Tensor, quadruples: Tensor | list) -> Tensor:
    """Torsion angles of atom quadruples ``(i, j, k, l)`` about the ``j-k`` bond (IUPAC sign, as mdtraj).

    Args:
        x: positions, shape (..., n_atoms, 3).
        quadruples: atom indices, shape (m, 4).

    Returns:
        angles in radians, shape (..., m), in ``(-pi, pi]``.
    """
    p0, p1, p2, p3 = _gather(x, quadruples, 4)
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    n1 = torch.linalg.cross(b1, b2, dim=-1)
    n2 = torch.linalg.cross(b2, b3, dim=-1)
    y = (torch.linalg.vector_norm(b2, dim=-1, keepdim=True) * b1 * n2).sum(-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def kabsch_rotation(x: Tensor, ref: Tensor) -> Tensor:
    """The proper rotation that best superposes centred ``x`` onto centred ``ref`` (least squares).

    Args:
        x: positions, shape (..., n_atoms, 3).
        ref: reference positions, shape (n_atoms, 3) or broadcastable to ``x``.

    Returns:
        rotation matrices R, shape (..., 3, 3), det R = +1, such that ``(x - x̄) @ R.T ≈ ref - ref̄``.
    """
    xc = x - x.mean(-2, keepdim=True)
    rc = ref - ref.mean(-2, keepdim=True)
    cov = xc.transpose(-1, -2) @ rc  # (..., 3, 3)
    u, _, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    flip = torch.ones(cov.shape[:-1], dtype=x.dtype, device=x.device)
    flip = torch.cat([flip[..., :2], d[..., None]], dim=-1)
    return vh.transpose(-1, -2) @ (flip[..., :, None] * u.transpose(-1, -2))


def kabsch_align(x: Tensor, ref: Tensor) -> Tensor:
    """Remove translation and rotation: superpose ``x`` onto ``ref`` (proper rotations only, no reflection).

    Args:
        x: positions, shape (..., n_atoms, 3).
        ref: reference positions, shape (n_atoms, 3) or broadcastable to ``x``.

    Returns:
        aligned positions, shape of ``x``, with the centroid of ``ref``.
    """
    if x.shape[-2:] != ref.shape[-2:]:
        raise ValueError(f"x {tuple(x.shape)} and ref {tuple(ref.shape)} must end in the same (n_atoms, 3)")
    rot = kabsch_rotation(x, ref)
    xc = x - x.mean(-2, keepdim=True)
    return xc @ rot.transpose(-1, -2) + ref.mean(-2, keepdim=True)
