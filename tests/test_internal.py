"""Z-matrix construction and the internal-coordinate transform: round trips and exact log-dets (float64)."""

import math

import numpy as np
import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.zmatrix import ZMatrix, build_zmatrix

CHAIN = [(0, 1), (1, 2), (2, 3), (3, 4)]


@pytest.fixture(scope="module")
def alanine():
    pytest.importorskip("openmm")
    from boltzflow.energies.openmm_system import alanine_dipeptide

    mol = alanine_dipeptide(constraints="none")
    return mol.topology, torch.as_tensor(mol.positions, dtype=torch.float64).flatten()


def chain_positions(n: int = 3) -> torch.Tensor:
    """Random 5-atom chains with bond lengths around 0.15 nm, shape (n, 15)."""
    steps = torch.randn(n, 4, 3)
    steps = 0.15 * steps / steps.norm(dim=-1, keepdim=True)
    return torch.cat([torch.randn(n, 1, 3), torch.randn(n, 1, 3) + steps.cumsum(1)], dim=1).flatten(-2)


def frame_polar(ic: InternalCoordinates, x: torch.Tensor) -> torch.Tensor:
    """Polar angle of the r0 -> r1 direction, computed directly from positions (..., 3n)."""
    r0, r1, _ = ic.zmatrix.roots
    pos = x.unflatten(-1, (ic.n_atoms, 3))
    e = pos[..., r1, :] - pos[..., r0, :]
    return torch.acos(e[..., 2] / e.norm(dim=-1))


def jacobian_logdet(f, v: torch.Tensor) -> torch.Tensor:
    sign, logabs = torch.linalg.slogdet(torch.autograd.functional.jacobian(f, v))
    assert sign != 0
    return logabs


@pytest.mark.parametrize("keep_frame", [False, True])
def test_round_trip_chain(keep_frame):
    ic = InternalCoordinates(build_zmatrix(CHAIN, 5), keep_frame=keep_frame)
    x = chain_positions()
    z, logdet_inv = ic.inverse(x)
    x2, logdet_fwd = ic.forward(z)
    assert z.shape == (3, ic.dim) and ic.dim == (15 if keep_frame else 9)
    torch.testing.assert_close(ic.inverse(x2)[0], z, atol=1e-12, rtol=0)
    torch.testing.assert_close(logdet_fwd, -logdet_inv, atol=1e-12, rtol=0)
    if keep_frame:
        torch.testing.assert_close(x2, x, atol=1e-12, rtol=0)
    else:  # only the rigid motion is lost: pairwise distances are kept
        pos, pos2 = x.unflatten(-1, (5, 3)), x2.unflatten(-1, (5, 3))
        torch.testing.assert_close(torch.cdist(pos2, pos2), torch.cdist(pos, pos), atol=1e-12, rtol=0)


def test_round_trip_from_internal_side():
    ic = InternalCoordinates(build_zmatrix(CHAIN, 5), keep_frame=True)
    n = 4
    z = torch.cat(
        [
            0.1 + 0.1 * torch.rand(n, 4),  # bonds, nm
            0.3 + 2.5 * torch.rand(n, 3),  # angles in (0, pi)
            (2 * torch.rand(n, 2) - 1) * math.pi,  # torsions
            torch.randn(n, 3),  # r0 position
            0.2 + 2.7 * torch.rand(n, 1),  # polar
            (2 * torch.rand(n, 2) - 1) * math.pi,  # azimuth, spin
        ],
        dim=-1,
    )
    x, _ = ic.forward(z)
    torch.testing.assert_close(ic.inverse(x)[0], z, atol=1e-12, rtol=0)


def test_alanine_round_trip_both_directions(alanine):
    topology, x = alanine
    zm = build_zmatrix(topology)
    full, rel = InternalCoordinates(zm, keep_frame=True), InternalCoordinates(zm)
    xs = x + 0.005 * torch.randn(5, 66)
    z, _ = full.inverse(xs)
    torch.testing.assert_close(full.forward(z)[0], xs, atol=1e-12, rtol=0)
    z_rel, _ = rel.inverse(xs)
    torch.testing.assert_close(z_rel, z[..., : rel.dim], atol=1e-12, rtol=0)
    torch.testing.assert_close(rel.inverse(rel.forward(z_rel)[0])[0], z_rel, atol=1e-12, rtol=0)


@pytest.mark.parametrize("roots", [None, (0, 1, 2)], ids=["r2-on-r0", "r2-on-r1"])
def test_logdet_matches_autograd_chain(roots):
    ic = InternalCoordinates(build_zmatrix(CHAIN, 5, roots=roots), keep_frame=True)
    for x in chain_positions(3):
        z, logdet_inv = ic.inverse(x)
        torch.testing.assert_close(
            logdet_inv, jacobian_logdet(lambda v: ic.inverse(v)[0], x), atol=1e-9, rtol=0
        )
        _, logdet_fwd = ic.forward(z)
        torch.testing.assert_close(
            logdet_fwd, jacobian_logdet(lambda v: ic.forward(v)[0], z), atol=1e-9, rtol=0
        )


def test_logdet_matches_autograd_alanine(alanine):
    topology, x = alanine
    zm = build_zmatrix(topology)
    full, rel = InternalCoordinates(zm, keep_frame=True), InternalCoordinates(zm)
    z, logdet_inv = full.inverse(x)
    exact_inv = jacobian_logdet(lambda v: full.inverse(v)[0], x)
    torch.testing.assert_close(logdet_inv, exact_inv, atol=1e-9, rtol=0)
    torch.testing.assert_close(
        full.forward(z)[1], jacobian_logdet(lambda v: full.forward(v)[0], z), atol=1e-9, rtol=0
    )
    # Without the frame, the log-det is the full bijection's minus its rigid-rotation factor log sin(polar)
    # (the Haar density of SO(3) in ZYZ angles), which does not depend on the internal coordinates.
    z_rel, logdet_rel = rel.inverse(x)
    polar = frame_polar(full, x)
    torch.testing.assert_close(logdet_rel, exact_inv + torch.log(torch.sin(polar)), atol=1e-9, rtol=0)
    torch.testing.assert_close(rel.forward(z_rel)[1], -logdet_rel, atol=1e-12, rtol=0)


def test_every_atom_placed_once_in_generations(alanine):
    topology, _ = alanine
    zm = build_zmatrix(topology)
    assert sorted(zm.rows[:, 0].tolist()) == list(range(22))
    placed_rows = np.concatenate(zm.generations)
    assert sorted(placed_rows.tolist()) == list(range(3, 22))
    done = set(zm.rows[:3, 0].tolist())
    for gen in zm.generations:  # each generation only uses atoms of earlier generations
        assert set(zm.rows[gen, 1:].ravel().tolist()) <= done
        done |= set(zm.rows[gen, 0].tolist())
    heavy = {a.index for a in topology.atoms() if a.element.symbol != "H"}
    assert set(zm.rows[1:, 1:].ravel().tolist()) - {-1} <= heavy  # hydrogens are never references


def test_torsions_match_mdtraj_and_are_periodic(alanine):
    md = pytest.importorskip("mdtraj")
    topology, x = alanine
    ic = InternalCoordinates(build_zmatrix(topology))
    z, _ = ic.inverse(x + 0.01 * torch.randn(4, 66))
    quads = ic.zmatrix.rows[3:]
    traj = md.Trajectory(ic.forward(z)[0].unflatten(-1, (22, 3)).numpy(), md.Topology.from_openmm(topology))
    expected = torch.as_tensor(md.compute_dihedrals(traj, quads), dtype=torch.float64)
    torch.testing.assert_close(z[:, ic.torsion_idx], expected, atol=1e-5, rtol=0)  # mdtraj works in float32
    assert torch.equal(ic.periodic_idx, ic.torsion_idx)
    t = z[:, ic.torsion_idx]
    assert bool(((t > -math.pi) & (t <= math.pi)).all())


def test_wrap_to_half_open_interval():
    ic = InternalCoordinates(build_zmatrix([(0, 1), (1, 2), (2, 3)], 4))
    # a planar trans chain: torsion exactly pi, which atan2 may report as -pi
    x = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, -1.0, 0.0]]).flatten()
    t = ic.inverse(x)[0][ic.torsion_idx]
    assert float(t) == pytest.approx(math.pi, abs=1e-12)


def test_disconnected_topology_raises():
    with pytest.raises(BoltzflowError, match=r"cannot place atoms \[3, 4\]"):
        build_zmatrix([(0, 1), (1, 2), (3, 4)], 5)


@pytest.mark.parametrize(
    "bonds, n_atoms, match",
    [
        ([(0, 1)], 2, "at least 3 atoms"),
        ([(0, 5), (0, 1)], 3, "not a pair"),
        ([(0, 1), (2, 0)], None, "n_atoms"),
    ],
)
def test_bad_bond_lists_raise(bonds, n_atoms, match):
    with pytest.raises(BoltzflowError, match=match):
        build_zmatrix(bonds, n_atoms)


def test_explicit_zmatrix_and_roots():
    rows = [[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1], [3, 2, 1, 0], [4, 3, 2, 1]]
    zm = ZMatrix(np.array(rows))
    assert zm.roots == (0, 1, 2) and [g.tolist() for g in zm.generations] == [[3], [4]]
    assert build_zmatrix(CHAIN, 5, roots=(0, 1, 2)).rows.tolist() == rows
    ic = InternalCoordinates(zm, keep_frame=True)
    x = chain_positions(2)
    torch.testing.assert_close(ic.forward(ic.inverse(x)[0])[0], x, atol=1e-12, rtol=0)
    with pytest.raises(BoltzflowError, match="roots"):
        build_zmatrix(CHAIN, 5, roots=(0, 2, 1))


@pytest.mark.parametrize(
    "rows, match",
    [
        ([[0, -1, -1, -1], [1, 0, -1, -1], [1, 0, 2, -1]], "exactly once"),
        ([[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1], [3, 4, 1, 0], [4, 3, 2, 1]], "not placed before"),
        ([[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 1, -1]], "repeats"),
        ([[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, 3], [3, 2, 1, 0]], "partners"),
    ],
)
def test_invalid_explicit_zmatrix_raises(rows, match):
    with pytest.raises(BoltzflowError, match=match):
        ZMatrix(np.array(rows))


def test_wrong_input_size_raises():
    ic = InternalCoordinates(build_zmatrix(CHAIN, 5))
    with pytest.raises(ValueError, match=r"\(\.\.\., 9\)"):
        ic.forward(torch.zeros(2, 15))
