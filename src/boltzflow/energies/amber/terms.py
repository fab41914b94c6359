"""AMBER energy terms as plain batched torch functions (kJ/mol, nm, rad), the same formulas as OpenMM's
Reference platform. Every ``x`` is a tensor of positions with shape (..., n_atoms, 3) in nm; every result
has shape (...).
"""

from __future__ import annotations

import torch
from torch import Tensor

# OBC type II constants of OpenMM's GBSAOBCForce (Onufriev, Bashford, Case 2004).
OBC_ALPHA, OBC_BETA, OBC_GAMMA = 1.0, 0.8, 4.85
DIELECTRIC_OFFSET_NM = 0.009
PROBE_RADIUS_NM = 0.14


Vec = tuple[Tensor, Tensor, Tensor]


def _diff(x: Tensor, i: Tensor, j: Tensor) -> Vec:
    """Components of x[..., j, :] - x[..., i, :], three tensors of shape (..., K) (component-wise layout: no
    (..., K, 3) reductions and no generic cross-product kernel, which are slow on CPU)."""
    return tuple(c.index_select(-1, j) - c.index_select(-1, i) for c in x.unbind(-1))  # type: ignore[return-value]


def _dot(a: Vec, b: Vec) -> Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def bond_energy(x: Tensor, idx: Tensor, k: Tensor, r0: Tensor) -> Tensor:
    """Harmonic bonds, sum of k/2 (r - r0)^2.

    Args:
        x: positions, shape (..., n_atoms, 3), nm.
        idx: atom pairs, shape (n_bonds, 2), long.
        k: force constants, shape (n_bonds,), kJ/mol/nm^2.
        r0: rest lengths, shape (n_bonds,), nm.

    Returns:
        Energy, shape (...), kJ/mol.
    """
    r = pair_distance(x, idx)
    return (0.5 * k * (r - r0) ** 2).sum(-1)


def angle_energy(x: Tensor, idx: Tensor, k: Tensor, theta0: Tensor) -> Tensor:
    """Harmonic angles, sum of k/2 (theta - theta0)^2; theta from atan2 (stable near 0 and pi).

    Args:
        x: positions, shape (..., n_atoms, 3), nm.
        idx: atom triples (i, j, k) with j the vertex, shape (n_angles, 3), long.
        k: force constants, shape (n_angles,), kJ/mol/rad^2.
        theta0: rest angles, shape (n_angles,), rad.

    Returns:
        Energy, shape (...), kJ/mol.
    """
    a = _diff(x, idx[:, 1], idx[:, 0])
    b = _diff(x, idx[:, 1], idx[:, 2])
    c = _cross(a, b)
    theta = torch.atan2(torch.sqrt(_dot(c, c)), _dot(a, b))
    return (0.5 * k * (theta - theta0) ** 2).sum(-1)


def dihedral(x: Tensor, idx: Tensor) -> Tensor:
    """Signed dihedral angles (IUPAC convention, as OpenMM), shape (..., n_torsions), rad in (-pi, pi].

    phi = atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3)) with b1, b2, b3 the bond vectors 0->1, 1->2, 2->3.

    Args:
        x: positions, shape (..., n_atoms, 3), nm.
        idx: atom quadruples, shape (n_torsions, 4), long.
    """
    b1 = _diff(x, idx[:, 0], idx[:, 1])
    b2 = _diff(x, idx[:, 1], idx[:, 2])
    b3 = _diff(x, idx[:, 2], idx[:, 3])
    n2 = _cross(b2, b3)
    return torch.atan2(torch.sqrt(_dot(b2, b2)) * _dot(b1, n2), _dot(_cross(b1, b2), n2))


def torsion_energy(
    x: Tensor, idx: Tensor, n: Tensor, phase: Tensor, k: Tensor, unique: Tensor | None = None
) -> Tensor:
    """Periodic torsions (proper and improper), sum of k (1 + cos(n phi - phase)).

    Args:
        x: positions, shape (..., n_atoms, 3), nm.
        idx: atom quadruples, shape (n_quads, 4), long (with ``unique``: each distinct quadruple once).
        n: periodicities, shape (n_torsions,) (float tensor).
        phase: phases, shape (n_torsions,), rad.
        k: barrier constants, shape (n_torsions,), kJ/mol.
        unique: optional map torsion -> row of ``idx``, shape (n_torsions,), long (AMBER puts several Fourier
            terms on one quadruple; the dihedral is then computed once).

    Returns:
        Energy, shape (...), kJ/mol.
    """
    phi = dihedral(x, idx)
    if unique is not None:
        phi = phi.index_select(-1, unique)
    return (k * (1.0 + torch.cos(n * phi - phase))).sum(-1)


def pair_distance(x: Tensor, idx: Tensor) -> Tensor:
    """Distances of the pairs ``idx`` (shape (n_pairs, 2)), shape (..., n_pairs), nm."""
    d = _diff(x, idx[:, 0], idx[:, 1])
    return torch.sqrt(_dot(d, d))


def lj_energy(r: Tensor, sigma: Tensor, epsilon: Tensor, softcore2: Tensor | None = None) -> Tensor:
    """Lennard-Jones, sum of 4 eps ((sigma/r)^12 - (sigma/r)^6).

    Args:
        r: pair distances, shape (..., n_pairs), nm.
        sigma: shape (n_pairs,), nm. epsilon: shape (n_pairs,), kJ/mol.
        softcore2: optional eps_sc^2 per pair, shape (n_pairs,), nm^2: r is replaced by sqrt(r^2 + eps_sc^2)
            (paper 001, eq. (16)).

    Returns:
        Energy, shape (...), kJ/mol.
    """
    r2 = r * r if softcore2 is None else r * r + softcore2
    t = sigma * sigma / r2
    s6 = t * t * t
    return (4.0 * epsilon * s6 * (s6 - 1.0)).sum(-1)


def coulomb_energy(r: Tensor, qq: Tensor, softcore2: Tensor | None = None) -> Tensor:
    """Vacuum Coulomb, sum of qq / r with qq = q_i q_j / (4 pi eps0) already in kJ/mol nm.

    Args:
        r: pair distances, shape (..., n_pairs), nm.
        qq: shape (n_pairs,), kJ/mol nm.
        softcore2: optional eps_sc^2 per pair, shape (n_pairs,), nm^2 (r -> sqrt(r^2 + eps_sc^2), eq. (16)).

    Returns:
        Energy, shape (...), kJ/mol.
    """
    inv_r = 1.0 / r if softcore2 is None else torch.rsqrt(r * r + softcore2)
    return (qq * inv_r).sum(-1)


def squared_distance_matrix(x: Tensor) -> Tensor:
    """All squared distances, shape (..., n_atoms, n_atoms), nm^2 (exact zeros on the diagonal)."""
    out = None
    for c in x.unbind(-1):
        d = c.unsqueeze(-1) - c.unsqueeze(-2)
        out = d * d if out is None else out + d * d
    return out


def obc_born_radii(r2: Tensor, radius: Tensor, scale: Tensor) -> Tensor:
    """OBC-II effective Born radii (OpenMM ``ReferenceObc::computeBornRadii``).

    Args:
        r2: squared distance matrix, shape (..., n_atoms, n_atoms), nm^2.
        radius: intrinsic radii, shape (n_atoms,), nm.
        scale: descreening scale factors, shape (n_atoms,).

    Returns:
        Born radii, shape (..., n_atoms), nm.
    """
    n = radius.shape[0]
    eye = torch.eye(n, dtype=r2.dtype, device=r2.device)
    rho = (radius - DIELECTRIC_OFFSET_NM).unsqueeze(-1)  # (n, 1): atom i whose radius is computed
    s = ((radius - DIELECTRIC_OFFSET_NM) * scale).unsqueeze(-2)  # (1, n): descreening atom j
    r = torch.sqrt(r2 + eye)  # diagonal set to 1 (masked out below) so that no gradient is inf or NaN
    upper = r + s
    lower = torch.maximum(rho, (r - s).abs())
    inv_u, inv_l, inv_r = upper.reciprocal(), lower.reciprocal(), r.reciprocal()
    # HCT pair integral: 1/L - 1/U + (r/4)(1/U^2 - 1/L^2) + ln(L/U)/(2r) + (s^2/(4r))(1/L^2 - 1/U^2)
    term = (
        (inv_l - inv_u)
        + 0.25 * (inv_u * inv_u - inv_l * inv_l) * (r - s * s * inv_r)
        + 0.5 * inv_r * torch.log(lower * inv_u)
    )
    with torch.no_grad():  # 0/1 masks: j contributes if its sphere reaches beyond rho_i; engulfing adds a cap
        engulfed = (r + rho < s).to(r.dtype)
        mask = (rho < upper).to(r.dtype) * (1.0 - eye)
    term = (term + engulfed * 2.0 * (1.0 / rho - inv_l)) * mask
    psi = 0.5 * rho.squeeze(-1) * term.sum(-1)
    tanh = torch.tanh(psi * (OBC_ALPHA - psi * (OBC_BETA - OBC_GAMMA * psi)))
    return 1.0 / (1.0 / rho.squeeze(-1) - tanh / radius)


def gb_energy(r2: Tensor, born: Tensor, charge: Tensor, prefactor: float) -> Tensor:
    """Generalised-Born polar solvation, prefactor/2 sum_ij q_i q_j / f_ij (self terms i = j included).

    Args:
        r2: squared distance matrix, shape (..., n_atoms, n_atoms), nm^2.
        born: Born radii, shape (..., n_atoms), nm.
        charge: shape (n_atoms,), e.
        prefactor: -(1/eps_solute - 1/eps_solvent) / (4 pi eps0), kJ/mol nm / e^2.

    Returns:
        Energy, shape (...), kJ/mol.
    """
    bb = born.unsqueeze(-1) * born.unsqueeze(-2)
    f = torch.sqrt(r2 + bb * torch.exp(-0.25 * r2 / bb))
    qq = charge.unsqueeze(-1) * charge.unsqueeze(-2)
    return 0.5 * prefactor * (qq / f).sum((-1, -2))


def ace_energy(born: Tensor, radius: Tensor, surface_area_energy: float) -> Tensor:
    """ACE non-polar surface term, sum of 4 pi gamma (R + 0.14)^2 (R / B)^6 (OpenMM's GBSAOBCForce).

    Args:
        born: Born radii, shape (..., n_atoms), nm.
        radius: intrinsic radii, shape (n_atoms,), nm.
        surface_area_energy: gamma, kJ/mol/nm^2.

    Returns:
        Energy, shape (...), kJ/mol.
    """
    weight = 4.0 * torch.pi * surface_area_energy * (radius + PROBE_RADIUS_NM) ** 2
    return (weight * (radius / born) ** 6).sum(-1)
