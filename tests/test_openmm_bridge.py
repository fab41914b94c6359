"""The OpenMM bridge against a closed form (one particle in a harmonic well) and a direct OpenMM Context."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
unit = pytest.importorskip("openmm.unit")

from boltzflow.energies.openmm_bridge import OpenMMEnergy, fastest_platform  # noqa: E402
from boltzflow.energies.openmm_system import alanine_dipeptide, kt_kj_per_mol  # noqa: E402

K = 37.5  # kJ/mol/nm^2
C = np.array([0.3, -0.2, 0.1])  # nm


def harmonic_system():
    """One particle, U = k |x - c|^2 (kJ/mol)."""
    system = openmm.System()
    system.addParticle(1.0)
    force = openmm.CustomExternalForce("k*((x-cx)^2+(y-cy)^2+(z-cz)^2)")
    for name, value in zip(("k", "cx", "cy", "cz"), (K, *C), strict=True):
        force.addGlobalParameter(name, value)
    force.addParticle(0, [])
    system.addForce(force)
    return system


def test_harmonic_energy_and_gradient_match_closed_form():
    temperature = 250.0
    kt = kt_kj_per_mol(temperature)
    x = torch.randn(4, 3, 1, 3, dtype=torch.float64, requires_grad=True)
    energy = OpenMMEnergy(harmonic_system(), temperature_kelvin=temperature)
    u = energy.energy(x)
    c = torch.as_tensor(C)
    expected_u = K * ((x.detach() - c) ** 2).sum((-1, -2)) / kt
    assert u.shape == (4, 3) and u.dtype == torch.float64
    torch.testing.assert_close(u, expected_u, rtol=1e-10, atol=1e-10)
    weights = torch.randn(4, 3)
    (u * weights).sum().backward()
    expected_grad = weights[..., None, None] * 2 * K * (x.detach() - c) / kt
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        energy.force(x.detach()), -2 * K * (x.detach() - c) / kt, rtol=1e-10, atol=1e-10
    )


def test_float32_input_keeps_dtype():
    energy = OpenMMEnergy(harmonic_system())
    x = torch.zeros(5, 1, 3, dtype=torch.float32)
    assert energy.energy(x).dtype == torch.float32
    assert energy.force(x).dtype == torch.float32


def test_bad_input_is_a_one_line_value_error():
    energy = OpenMMEnergy(harmonic_system())
    with pytest.raises(ValueError, match=r"\(\.\.\., 1, 3\)"):
        energy.energy(torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        energy.energy(torch.tensor([[[0.0, float("nan"), 0.0]]]))
    with pytest.raises(ValueError, match=r"\(n, 1, 3\)"):
        energy.evaluate(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="platform"):
        OpenMMEnergy(harmonic_system(), platform="NoSuchPlatform")


@pytest.fixture(scope="module")
def alanine_frames():
    """Alanine dipeptide (OBC) and 8 thermal frames from a short Langevin run (nm)."""
    mol = alanine_dipeptide("obc")
    integrator = openmm.LangevinMiddleIntegrator(
        300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picosecond
    )
    integrator.setRandomNumberSeed(11)
    ctx = openmm.Context(mol.system, integrator, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(mol.positions)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 11)
    frames = []
    for _ in range(8):
        integrator.step(50)
        frames.append(
            ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        )
    return mol, np.asarray(frames)


def _direct(system, xyz):
    ctx = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    energies, forces = [], []
    for x in xyz:
        ctx.setPositions(x)
        s = ctx.getState(getEnergy=True, getForces=True)
        energies.append(s.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(s.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return np.asarray(energies), np.asarray(forces)


def test_alanine_matches_direct_context(alanine_frames):
    mol, xyz = alanine_frames
    expected_e, expected_f = _direct(mol.system, xyz)
    energy = OpenMMEnergy(mol.system, temperature_kelvin=300.0)
    e, f = energy.evaluate(xyz)
    np.testing.assert_allclose(e, expected_e, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(f, expected_f, rtol=1e-12, atol=1e-9)
    x = torch.as_tensor(xyz).requires_grad_(True)
    u = energy.energy(x)
    u.sum().backward()
    kt = kt_kj_per_mol(300.0)
    np.testing.assert_allclose(u.detach().numpy(), expected_e / kt, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), -expected_f / kt, rtol=1e-12, atol=1e-9)
    # a finite difference of u along a random direction confirms the force sign and units
    d = torch.randn_like(x) * 1e-6
    fd = (energy.energy(x.detach() + d) - energy.energy(x.detach() - d)) / 2
    torch.testing.assert_close(fd, (x.grad * d).sum((-1, -2)), rtol=1e-4, atol=1e-8)


def test_two_workers_equal_one(alanine_frames):
    mol, xyz = alanine_frames
    e1, f1 = OpenMMEnergy(mol.system).evaluate(xyz)
    with OpenMMEnergy(mol.system, n_workers=2) as energy:
        e2, f2 = energy.evaluate(xyz)
        e3, _ = energy.evaluate(xyz[:1])  # fewer configurations than workers
        x = torch.as_tensor(xyz).requires_grad_(True)
        energy.energy(x).sum().backward()
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(e3, e1[:1])
    np.testing.assert_allclose(x.grad.numpy(), -f1 / kt_kj_per_mol(300.0), rtol=1e-14)
    with pytest.raises(RuntimeError, match="closed"):
        energy.evaluate(xyz)


def test_pool_without_close_does_not_hang_at_exit():
    code = textwrap.dedent(
        """
        import numpy as np, openmm
        from boltzflow.energies.openmm_bridge import OpenMMEnergy
        system = openmm.System(); system.addParticle(1.0)
        f = openmm.CustomExternalForce("x^2+y^2+z^2"); f.addParticle(0, []); system.addForce(f)
        energy = OpenMMEnergy(system, n_workers=2)
        print(energy.evaluate(np.ones((3, 1, 3)))[0].tolist())
        """
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[3.0, 3.0, 3.0]"
    assert time.perf_counter() - start < 240  # 3 interpreters importing torch; slow when loaded


def test_fastest_platform_returns_an_available_candidate():
    system = harmonic_system()
    assert fastest_platform(system, candidates=("NoSuchPlatform", "Reference")) == "Reference"
    with pytest.raises(ValueError, match="none of the OpenMM platforms"):
        fastest_platform(system, candidates=("NoSuchPlatform",))


def test_non_finite_energies_are_refused_naming_the_configuration():
    """Two atoms on top of each other: OpenMM returns NaN; the bridge says which configuration, not NaN."""
    mol = alanine_dipeptide(solvent="vacuum", constraints="none")
    xyz = np.stack([mol.positions, mol.positions, mol.positions])
    xyz[2, 21] = xyz[2, 0]
    energy = OpenMMEnergy(mol.system)
    with pytest.raises(ValueError, match=r"non-finite energy or force for configuration 2 \(1 of 3"):
        energy.evaluate(xyz)
    e, _ = energy.evaluate(xyz[:2])
    assert np.isfinite(e).all() and e[0] == e[1]
