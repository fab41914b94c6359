"""Geometry primitives against hand-built geometries, mdtraj, and rigid-motion invariance."""

import math

import mdtraj as md
import numpy as np
import pytest
import torch

from boltzflow.energies.openmm_system import alanine_dipeptide_pdb
from boltzflow.geometry import (
    bond_angles,
    dihedrals,
    distances,
    kabsch_align,
    kabsch_rotation,
    pairwise_distances,
)
from boltzflow.systems.alanine import backbone_dihedral_indices, basin_populations, phi_psi


def random_rotation(g):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def four_atoms(angle):
    """Atoms 1-2 on the x axis; atom 0 in the xy plane; atom 3 turned by ``angle`` about +x from cis.

    Looking down 1 -> 2 (+x into the page, +y to the right) +z points down, so turning the 3 bond from +y
    towards +z is clockwise: by IUPAC the dihedral is +angle.
    """
    p0 = torch.tensor([0.0, 1.0, 0.0])
    p1 = torch.tensor([0.0, 0.0, 0.0])
    p2 = torch.tensor([1.5, 0.0, 0.0])
    p3 = p2 + torch.tensor([0.5, math.cos(angle), math.sin(angle)])
    return torch.stack([p0, p1, p2, p3])


def four_atom_topology():
    top = md.Topology()
    res = top.add_residue("X", top.add_chain())
    for k in range(4):
        top.add_atom(f"C{k}", md.element.carbon, res)
    return top


@pytest.mark.parametrize("angle", [0.0, 0.3, 1.2, -2.0, 3.0, -3.1, math.pi])
def test_dihedral_of_built_geometry(angle):
    got = float(dihedrals(four_atoms(angle), [[0, 1, 2, 3]])[0])
    assert abs(math.remainder(got - angle, 2 * math.pi)) < 1e-12
    assert -math.pi < got <= math.pi
    traj = md.Trajectory(four_atoms(angle).numpy()[None], four_atom_topology())
    ref = md.compute_dihedrals(traj, np.array([[0, 1, 2, 3]]), periodic=False)
    assert abs(math.remainder(got - float(ref[0, 0]), 2 * math.pi)) < 1e-6


def test_bond_angle_and_distances():
    x = four_atoms(0.4)
    assert torch.allclose(bond_angles(x, [[0, 1, 2]]), torch.tensor([math.pi / 2]))
    assert torch.allclose(distances(x, [[1, 2]]), torch.tensor([1.5]))
    d = pairwise_distances(x)
    assert torch.allclose(d, torch.cdist(x, x), atol=1e-12)
    assert torch.allclose(d, d.T) and torch.all(d.diagonal() == 0)


def test_against_mdtraj_on_random_frames():
    g = torch.Generator().manual_seed(0)
    top = md.load(str(alanine_dipeptide_pdb())).topology
    xyz = torch.randn(20, 22, 3, generator=g) * 0.3
    traj = md.Trajectory(xyz.numpy().astype(np.float32), top)
    quads = np.array([[0, 4, 6, 8], [4, 6, 8, 14], [6, 8, 14, 16], [1, 3, 5, 7]])
    ours = dihedrals(xyz, quads)
    theirs = torch.as_tensor(md.compute_dihedrals(traj, quads), dtype=ours.dtype)
    diff = torch.remainder(ours - theirs + 1.0, 2 * math.pi) - 1.0
    assert torch.allclose(diff, torch.zeros_like(ours), atol=1e-4)
    triples = np.array([[0, 4, 6], [4, 6, 8], [8, 14, 16]])
    ang = torch.as_tensor(md.compute_angles(traj, triples), dtype=ours.dtype)
    assert torch.allclose(bond_angles(xyz, triples), ang, atol=1e-4)


def test_alanine_indices_and_phi_psi_match_mdtraj():
    traj = md.load(str(alanine_dipeptide_pdb()))
    phi_idx, phi = md.compute_phi(traj)
    psi_idx, psi = md.compute_psi(traj)
    assert backbone_dihedral_indices() == (tuple(phi_idx[0]), tuple(psi_idx[0]))
    ours = phi_psi(traj.xyz.astype(np.float64))
    assert torch.allclose(ours, torch.tensor([[phi[0, 0], psi[0, 0]]], dtype=ours.dtype), atol=1e-5)


def test_basin_populations():
    deg = torch.tensor([[-80.0, 150], [-80, -170], [-70, -40], [60, 40], [150, 0], [-60, 0]])
    pops = basin_populations(torch.deg2rad(deg))
    assert pops == pytest.approx({"C7eq/beta": 2 / 6, "alphaR": 2 / 6, "alphaL": 1 / 6, "other": 1 / 6})


def test_invariance_under_rigid_motions():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 22, 3, generator=g)
    rot = torch.stack([random_rotation(g) for _ in range(5)])
    moved = x @ rot.transpose(-1, -2) + torch.randn(5, 1, 3, generator=g)
    quads = [[0, 1, 2, 3], [4, 6, 8, 14]]
    assert torch.allclose(dihedrals(moved, quads), dihedrals(x, quads), atol=1e-10)
    ref = torch.randn(22, 3, generator=g)
    assert torch.allclose(kabsch_align(moved, ref), kabsch_align(x, ref), atol=1e-10)


def test_kabsch_recovers_reference_and_is_proper():
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(22, 3, generator=g)
    rot = torch.stack([random_rotation(g) for _ in range(4)])
    copies = ref @ rot.transpose(-1, -2) + torch.randn(4, 1, 3, generator=g)
    assert torch.allclose(kabsch_align(copies, ref), ref.expand(4, 22, 3), atol=1e-10)
    # a mirror image must not be "aligned" by a reflection: the result keeps det +1 and a non-zero residual
    mirror = ref * torch.tensor([-1.0, 1.0, 1.0])
    r = kabsch_rotation(mirror, ref)
    assert torch.allclose(torch.linalg.det(r), torch.tensor(1.0))
    assert (kabsch_align(mirror, ref) - ref).abs().max() > 0.1
    # RMSD after alignment is never larger than before (least squares over rotations)
    x = torch.randn(22, 3, generator=g)
    before = ((x - x.mean(0) + ref.mean(0) - ref) ** 2).sum()
    after = ((kabsch_align(x, ref) - ref) ** 2).sum()
    assert after <= before + 1e-12
