"""AmberEnergy against OpenMM's Reference platform, term by term, in float64."""

from __future__ import annotations

import copy

import numpy as np
import openmm as mm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

from boltzflow.energies.amber import AmberEnergy
from boltzflow.energies.openmm_system import SOLVENTS, alanine_dipeptide, alanine_dipeptide_pdb

KJ = unit.kilojoule_per_mole
GROUP_TERMS = {
    "HarmonicBondForce": ("bond",),
    "HarmonicAngleForce": ("angle",),
    "PeriodicTorsionForce": ("torsion",),
    "NonbondedForce": ("lj", "coulomb"),
    "GBSAOBCForce": ("gb", "surface_area"),
}


class Reference:
    """OpenMM Reference-platform ground truth: one force group per force, plus LJ-only and GB-only copies."""

    def __init__(self, system: mm.System) -> None:
        self.system = copy.deepcopy(system)
        self.groups = {}
        for i, force in enumerate(self.system.getForces()):
            force.setForceGroup(i)
            self.groups[type(force).__name__] = i
        self.ctx = _context(self.system)
        self.lj_ctx = _context(_without_charges(system))
        self.gb_ctx = _context(_without_surface_area(system)) if "GBSAOBCForce" in self.groups else None

    def terms(self, xyz: np.ndarray) -> dict[str, float]:
        """OpenMM energies in kJ/mol under the torch term names, for one frame (n_atoms, 3) nm."""
        g = self.groups
        out = {
            GROUP_TERMS[name][0]: _energy(self.ctx, xyz, {g[name]})
            for name in ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce")
        }
        out["lj"] = _energy(self.lj_ctx, xyz, {g["NonbondedForce"]})
        out["coulomb"] = _energy(self.ctx, xyz, {g["NonbondedForce"]}) - out["lj"]
        if self.gb_ctx is not None:
            out["gb"] = _energy(self.gb_ctx, xyz, {g["GBSAOBCForce"]})
            out["surface_area"] = _energy(self.ctx, xyz, {g["GBSAOBCForce"]}) - out["gb"]
        return out

    def total(self, xyz: np.ndarray) -> tuple[float, np.ndarray]:
        """Total energy, kJ/mol, and forces, shape (n_atoms, 3), kJ/mol/nm."""
        self.ctx.setPositions(xyz)
        state = self.ctx.getState(getEnergy=True, getForces=True)
        forces = state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)
        return state.getPotentialEnergy().value_in_unit(KJ), np.asarray(forces)


def _context(system: mm.System) -> mm.Context:
    return mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))


def _energy(ctx: mm.Context, xyz: np.ndarray, groups: set[int] | None) -> float:
    ctx.setPositions(xyz)
    kwargs = {} if groups is None else {"groups": groups}
    return ctx.getState(getEnergy=True, **kwargs).getPotentialEnergy().value_in_unit(KJ)


def _copy_with_groups(system: mm.System) -> mm.System:
    system = copy.deepcopy(system)
    for i, force in enumerate(system.getForces()):
        force.setForceGroup(i)
    return system


def _without_charges(system: mm.System) -> mm.System:
    system = _copy_with_groups(system)
    for force in system.getForces():
        if isinstance(force, mm.NonbondedForce):
            for i in range(force.getNumParticles()):
                _, sig, eps = force.getParticleParameters(i)
                force.setParticleParameters(i, 0.0, sig, eps)
            for e in range(force.getNumExceptions()):
                i, j, _, sig, eps = force.getExceptionParameters(e)
                force.setExceptionParameters(e, i, j, 0.0, sig, eps)
    return system


def _without_surface_area(system: mm.System) -> mm.System:
    system = _copy_with_groups(system)
    for force in system.getForces():
        if isinstance(force, mm.GBSAOBCForce):
            force.setSurfaceAreaEnergy(0.0)
    return system


def md_frames(system: mm.System, xyz: np.ndarray, n_frames: int, seed: int) -> np.ndarray:
    """300 K Langevin MD frames (Reference platform, the system's constraints), (n_frames, n_atoms, 3) nm."""
    integrator = mm.LangevinMiddleIntegrator(
        300 * unit.kelvin, 1.0 / unit.picosecond, 0.002 * unit.picoseconds
    )
    integrator.setRandomNumberSeed(seed)
    ctx = mm.Context(system, integrator, mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(xyz)
    mm.LocalEnergyMinimizer.minimize(ctx, 1.0, 200)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    frames = []
    for _ in range(n_frames):
        integrator.step(250)  # 0.5 ps
        frames.append(
            ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        )
    return np.asarray(frames)


def collision_frame(xyz: np.ndarray, energy: AmberEnergy, distance: float = 0.1) -> np.ndarray:
    """Move one atom to ``distance`` nm of a non-bonded partner (a normal pair, not a 1-4 exception)."""
    normal = energy.pair_idx[~energy.pair_is_14].numpy()
    i, j = normal[len(normal) // 2]
    out = xyz.copy()
    direction = (out[j] - out[i]) / np.linalg.norm(out[j] - out[i])
    out[j] = out[i] + distance * direction
    return out


def all_frames(system: mm.System, xyz: np.ndarray, energy: AmberEnergy, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    md = md_frames(system, xyz, 3, seed)
    return {
        "pdb": xyz,
        **{f"md{k}": f for k, f in enumerate(md)},
        "noise0.01": xyz + rng.normal(0.0, 0.01, xyz.shape),
        "noise0.02": md[-1] + rng.normal(0.0, 0.02, xyz.shape),
        "collision": collision_frame(md[0], energy),
    }


def compare(system: mm.System, frames: dict[str, np.ndarray]) -> dict[str, float]:
    """Max relative errors per term, of the total and of the forces over ``frames``; asserts tolerances."""
    energy = AmberEnergy.from_system(system)
    ref = Reference(system)
    worst: dict[str, float] = {}
    for label, xyz in frames.items():
        x = torch.as_tensor(xyz, dtype=torch.float64)
        ours = {k: float(v) for k, v in energy.terms(x).items()}
        for name, value in ref.terms(xyz).items():
            rel = abs(ours[name] - value) / max(abs(value), 1e-8)
            worst[name] = max(worst.get(name, 0.0), rel)
            assert rel < 1e-6, (label, name, ours[name], value)
        e_ref, f_ref = ref.total(xyz)
        e, f = energy.energy_and_force(x[None])
        rel_e = abs(float(e[0]) - e_ref) / abs(e_ref)
        rel_f = float(np.abs(f[0].numpy() - f_ref).max() / np.abs(f_ref).max())
        worst["total"] = max(worst.get("total", 0.0), rel_e)
        worst["forces"] = max(worst.get("forces", 0.0), rel_f)
        assert rel_e < 1e-6 and rel_f < 1e-5, (label, rel_e, rel_f)
    return worst


def glycine_dipeptide(forcefield: tuple[str, ...]) -> tuple[mm.System, np.ndarray]:
    """ACE-GLY-NME from the shipped PDB: drop CB and the residue's hydrogens, rename, re-add hydrogens."""
    pdb = app.PDBFile(str(alanine_dipeptide_pdb()))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    residue = list(modeller.topology.residues())[1]
    modeller.delete([a for a in residue.atoms() if a.element.symbol == "H" or a.name == "CB"])
    list(modeller.topology.residues())[1].name = "GLY"
    ff = app.ForceField(*forcefield)
    modeller.addHydrogens(ff)
    system = ff.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    xyz = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer))
    return system, xyz


@pytest.fixture(scope="module", params=["vacuum", "obc"])
def alanine(request):
    flexible = alanine_dipeptide(request.param, constraints="none")
    constrained = alanine_dipeptide(request.param, constraints="HBonds")
    energy = AmberEnergy.from_system(flexible.system)
    frames = all_frames(constrained.system, flexible.positions, energy, seed=1)
    return flexible, constrained, frames


def test_alanine_dipeptide_matches_openmm(alanine):
    flexible, _, frames = alanine
    worst = compare(flexible.system, frames)
    print("max relative errors:", {k: f"{v:.1e}" for k, v in worst.items()})
    assert set(worst) >= {"bond", "angle", "torsion", "lj", "coulomb", "total", "forces"}


def test_hbond_constrained_system_matches_openmm(alanine):
    """OpenMM drops the harmonic terms of constrained X-H bonds; from_system follows the given System."""
    flexible, constrained, frames = alanine
    compare(constrained.system, {k: frames[k] for k in ("md0", "noise0.02")})
    x = torch.as_tensor(frames["md0"])
    assert (
        AmberEnergy.from_system(constrained.system).bond_idx.shape[0]
        < AmberEnergy.from_system(flexible.system).bond_idx.shape[0]
    )
    assert float(AmberEnergy.from_system(constrained.system).bond(x)) != float(
        AmberEnergy.from_system(flexible.system).bond(x)
    )


@pytest.mark.parametrize("solvent", ["vacuum", "obc"])
def test_glycine_dipeptide_matches_openmm(solvent):
    system, xyz = glycine_dipeptide(SOLVENTS[solvent])
    assert system.getNumParticles() == 19
    energy = AmberEnergy.from_system(system)
    frames = all_frames(system, xyz, energy, seed=2)
    compare(system, frames)


def test_torsion_phase_and_sign_convention():
    """Four particles with non-trivial phases (0.7 rad, periodicity 1 and 3): the dihedral sign must match."""
    system = mm.System()
    for _ in range(4):
        system.addParticle(12.0)
    torsions = mm.PeriodicTorsionForce()
    torsions.addTorsion(0, 1, 2, 3, 1, 0.7, 3.0)
    torsions.addTorsion(0, 1, 2, 3, 3, -1.1, 2.0)
    torsions.addTorsion(3, 2, 1, 0, 2, 2.5, 1.5)
    system.addForce(torsions)
    energy = AmberEnergy.from_system(system)
    ref = Reference(system)
    rng = np.random.default_rng(3)
    for _ in range(5):
        xyz = rng.normal(0.0, 0.15, (4, 3))
        e_ref, f_ref = ref.total(xyz)
        e, f = energy.energy_and_force(torch.as_tensor(xyz)[None])
        assert abs(float(e[0]) - e_ref) < 1e-9 * max(1.0, abs(e_ref))
        np.testing.assert_allclose(f[0].numpy(), f_ref, atol=1e-8 * np.abs(f_ref).max())
