"""Short MD runs from given frames (seeding a rare basin's training data)."""

import numpy as np
import pytest

from boltzflow.energies.openmm_system import alanine_dipeptide
from boltzflow.errors import BoltzflowError
from boltzflow.samplers.seeded import short_runs


@pytest.fixture(scope="module")
def mol():
    return alanine_dipeptide(solvent="obc", constraints="HBonds")


def _hbond_lengths(system, xyz):
    import openmm.unit as unit

    pairs, lengths = [], []
    for i in range(system.getNumConstraints()):
        a, b, d = system.getConstraintParameters(i)
        pairs.append((a, b))
        lengths.append(d.value_in_unit(unit.nanometer))
    got = np.linalg.norm(xyz[:, [p[0] for p in pairs]] - xyz[:, [p[1] for p in pairs]], axis=-1)
    return got, np.asarray(lengths)


def test_runs_are_deterministic_constrained_and_move(mol):
    starts = np.stack([mol.positions, mol.positions + 0.001])
    a = short_runs(mol.system, starts, 4, save_every_ps=0.1, equilibrate_ps=0.1, seed=3)
    b = short_runs(mol.system, starts, 4, save_every_ps=0.1, equilibrate_ps=0.1, seed=3)
    c = short_runs(mol.system, starts, 4, save_every_ps=0.1, equilibrate_ps=0.1, seed=4)
    assert a.shape == (8, 22, 3) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)  # another seed, other velocities and noise
    got, want = _hbond_lengths(mol.system, a)
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), atol=1e-5)  # HBond constraints hold
    step = np.linalg.norm(np.diff(a[:4], axis=0), axis=-1).mean()
    assert 1e-3 < step < 0.2  # thermal motion over 0.1 ps: atoms move, nothing explodes (nm)


def test_bad_starts_are_refused_in_one_line(mol):
    with pytest.raises(BoltzflowError, match=r"starts must have shape \(n_runs >= 1, 22, 3\)"):
        short_runs(mol.system, np.zeros((2, 21, 3)), 3)
    with pytest.raises(BoltzflowError, match="non-finite"):
        short_runs(mol.system, np.full((1, 22, 3), np.nan), 3)
    with pytest.raises(BoltzflowError, match="frames_per_run"):
        short_runs(mol.system, mol.positions[None], 0)
    with pytest.raises(BoltzflowError, match="save_every_ps must be a finite number > 0"):
        short_runs(mol.system, mol.positions[None], 1, save_every_ps=-0.1)
    with pytest.raises(BoltzflowError, match="equilibrate_ps must be a finite number >= 0"):
        short_runs(mol.system, mol.positions[None], 1, equilibrate_ps=-1.0)
    with pytest.raises(BoltzflowError, match="platform 'Nope'"):
        short_runs(mol.system, mol.positions[None], 1, platform="Nope")


def test_positions_follow_the_boltzmann_distribution_of_a_harmonic_well():
    """Independent particles in 0.5 k |x|^2: every coordinate has mean 0 and variance kT/k (closed form)."""
    import openmm

    from boltzflow.energies.openmm_system import kt_kj_per_mol

    n, k = 10, 1000.0  # kJ/mol/nm^2
    system = openmm.System()
    well = openmm.CustomExternalForce("0.5*k*(x^2+y^2+z^2)")
    well.addGlobalParameter("k", k)
    for i in range(n):
        system.addParticle(12.0)
        well.addParticle(i, [])
    system.addForce(well)
    starts = np.zeros((4, n, 3))
    xyz = short_runs(system, starts, 500, save_every_ps=0.5, equilibrate_ps=5.0, friction_per_ps=5.0, seed=7)
    var = kt_kj_per_mol(300.0) / k
    assert xyz.dtype == np.float64 and xyz.shape == (2000, n, 3)
    assert abs(xyz.mean()) < 0.1 * np.sqrt(var)  # centred (a loose bound: the frames are correlated)
    assert xyz.var() == pytest.approx(var, rel=0.05)


def test_a_diverging_run_is_an_error_naming_run_and_frame(mol):
    from boltzflow.samplers.openmm_run import NonFiniteError

    with pytest.raises(NonFiniteError, match=r"seeding run 0 \(seed 4\) diverged at frame \d+ \(t = [\d.]+ ps\)"):
        short_runs(mol.system, mol.positions[None], 200, timestep_fs=50.0, save_every_ps=0.1, equilibrate_ps=0.0,
                   seed=3)
