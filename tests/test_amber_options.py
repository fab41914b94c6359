"""AmberEnergy beyond OpenMM agreement: input checks, dtypes/devices, soft-core against a slow twin, the
cap."""

from __future__ import annotations

import copy

import numpy as np
import openmm as mm
import pytest
import torch

from boltzflow.energies.amber import AmberEnergy, read_system
from boltzflow.energies.amber.builder import ONE_4PI_EPS0
from boltzflow.energies.openmm_system import alanine_dipeptide
from boltzflow.energies.regularize import HighEnergyCap


@pytest.fixture(scope="module")
def obc():
    molecule = alanine_dipeptide("obc", constraints="none")
    return molecule.system, molecule.positions


def _perturbed(xyz: np.ndarray, n: int, sigma: float = 0.01, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(xyz, dtype=torch.float64)
    return x + sigma * torch.randn((n, *x.shape), generator=g, dtype=torch.float64)


def test_unsupported_force_is_named(obc):
    system = copy.deepcopy(obc[0])
    system.addForce(mm.CustomExternalForce("x^2"))
    with pytest.raises(ValueError, match="CustomExternalForce"):
        AmberEnergy.from_system(system)


def test_cutoff_method_rejected(obc):
    system = copy.deepcopy(obc[0])
    for force in system.getForces():
        if isinstance(force, mm.NonbondedForce):
            force.setNonbondedMethod(mm.NonbondedForce.CutoffNonPeriodic)
    with pytest.raises(ValueError, match="NoCutoff"):
        read_system(system)


def test_bad_input_raises(obc):
    energy = AmberEnergy.from_system(obc[0])
    with pytest.raises(ValueError, match=r"\(3, 21, 3\)"):
        energy.energy(torch.zeros(3, 21, 3))
    x = _perturbed(obc[1], 2)
    x[1, 4, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        energy.energy_kj(x)


def test_batch_shapes_units_and_force(obc):
    energy = AmberEnergy.from_system(obc[0], temperature_kelvin=350.0)
    x = _perturbed(obc[1], 6).reshape(2, 3, 22, 3)
    u = energy.energy(x)
    assert u.shape == (2, 3)
    kt = 0.008314462618 * 350.0
    torch.testing.assert_close(u * kt, energy.energy_kj(x), rtol=1e-14, atol=0.0)
    terms = energy.terms(x)
    torch.testing.assert_close(sum(terms.values()), energy.energy_kj(x), rtol=1e-14, atol=0.0)
    torch.testing.assert_close(terms["gb"] + terms["surface_area"], energy.solvation(x), rtol=1e-14, atol=0.0)
    for name in ("bond", "angle", "torsion", "lj", "coulomb"):
        torch.testing.assert_close(getattr(energy, name)(x), terms[name], rtol=1e-14, atol=0.0)
    ef = energy.energy_and_force(x.reshape(6, 22, 3), chunk_size=4)
    torch.testing.assert_close(energy.force(x).reshape(6, 22, 3) * kt, ef.force_kj, rtol=1e-12, atol=1e-10)
    # forces against central finite differences of the energy, one coordinate
    h = 1e-6
    dx = torch.zeros_like(x[0, 0])
    dx[5, 1] = h
    fd = -(energy.energy_kj(x[0, 0] + dx) - energy.energy_kj(x[0, 0] - dx)) / (2 * h)
    assert abs(float(fd) - float(ef.force_kj[0, 5, 1])) < 1e-5 * float(ef.force_kj[0].abs().max())


def test_float32_close_to_float64(obc):
    energy = AmberEnergy.from_system(obc[0])
    x = _perturbed(obc[1], 4)
    e64 = energy.terms(x)
    e32 = energy.terms(x.float())
    scale = sum(v.abs() for v in e64.values())
    for name, value in e64.items():
        assert e32[name].dtype == torch.float32
        assert float(((e32[name].double() - value).abs() / scale).max()) < 1e-5, name
    assert energy.force(x.float()).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(obc):
    energy = AmberEnergy.from_system(obc[0])
    x = _perturbed(obc[1], 8)
    on_gpu = energy.to("cuda").energy_and_force(x.cuda())
    on_cpu = energy.to("cpu").energy_and_force(x)
    torch.testing.assert_close(on_gpu.energy_kj.cpu(), on_cpu.energy_kj, rtol=1e-10, atol=0.0)
    torch.testing.assert_close(on_gpu.force_kj.cpu(), on_cpu.force_kj, rtol=1e-9, atol=1e-9)


def slow_nonbonded(system: mm.System, xyz: np.ndarray, eps_lj: float, eps_c: float, soften_14: bool):
    """Plain double loop over particles from the NonbondedForce itself: (LJ, Coulomb) in kJ/mol."""
    force = next(f for f in system.getForces() if isinstance(f, mm.NonbondedForce))
    n = force.getNumParticles()
    par = [[v._value for v in force.getParticleParameters(i)] for i in range(n)]
    special = {}
    for e in range(force.getNumExceptions()):
        i, j, qq, s, ep = force.getExceptionParameters(e)
        special[frozenset((i, j))] = (qq._value, s._value, ep._value)
    lj = coulomb = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            r = float(np.linalg.norm(xyz[i] - xyz[j]))
            is_14 = frozenset((i, j)) in special
            if is_14:
                qq, s, ep = special[frozenset((i, j))]
            else:
                qq, s, ep = par[i][0] * par[j][0], (par[i][1] + par[j][1]) / 2, np.sqrt(par[i][2] * par[j][2])
            soft = soften_14 or not is_14
            r_lj = np.sqrt(r**2 + eps_lj**2) if soft else r
            r_c = np.sqrt(r**2 + eps_c**2) if soft else r
            if ep != 0.0:
                lj += 4 * ep * ((s / r_lj) ** 12 - (s / r_lj) ** 6)
            if qq != 0.0:
                coulomb += ONE_4PI_EPS0 * qq / r_c
    return lj, coulomb


@pytest.mark.parametrize("soften_14", [True, False])
def test_softcore_against_slow_twin(obc, soften_14):
    system, xyz = obc
    energy = AmberEnergy.from_system(
        system, softcore_lj_nm=0.05, softcore_coulomb_nm=0.1, softcore_14=soften_14
    )
    x = _perturbed(xyz, 2, sigma=0.02)
    x[1, 9] = x[1, 3] + 1e-3  # two non-bonded atoms almost on top of each other
    for k in range(2):
        lj, coulomb = slow_nonbonded(system, x[k].numpy(), 0.05, 0.1, soften_14)
        assert abs(float(energy.lj(x[k])) - lj) < 1e-10 * max(1.0, abs(lj))
        assert abs(float(energy.coulomb(x[k])) - coulomb) < 1e-10 * max(1.0, abs(coulomb))
    assert torch.isfinite(energy.energy(x)).all()
    plain = AmberEnergy.from_system(system)
    assert float(energy.lj(x[0])) != float(plain.lj(x[0]))
    assert float(plain.lj(x[1])) > 1e20 and float(energy.lj(x[1])) < 1e8


def test_works_inside_high_energy_cap(obc):
    system, xyz = obc
    energy = AmberEnergy.from_system(system)
    capped = HighEnergyCap(energy, epsilon=1e-3)
    x = _perturbed(xyz, 3)
    x[2, 9] = x[2, 3] + 0.01  # a collision: u far above 2/eps
    u, u_capped = energy.energy(x), capped.energy(x)
    torch.testing.assert_close(u_capped[:2], u[:2])
    assert float(u[2]) > 2e3 and float(u_capped[2]) == 2e3
    f = capped.force(x)
    assert torch.isfinite(f).all() and float(f[2].abs().max()) == 0.0
