"""Capped peptides ``peptide:SEQ``: building, caching, the torch force field against OpenMM, shipped MD references."""

from __future__ import annotations

import mdtraj
import numpy as np
import openmm as mm
import openmm.unit as unit
import pytest
import torch

from boltzflow.flows.internal import InternalCoordinates
from boltzflow.systems import peptide_build
from boltzflow.systems.alanine import BASINS, basin_labels
from boltzflow.systems.peptide import PeptideSystem, ramachandran_per_residue, reference_path
from boltzflow.systems.registry import get_system, system_names

SHIPPED = {"AAA": 42, "AAAAA": 62}
KJ = unit.kilojoule_per_mole


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test builds into its own cache folder, never the user's."""
    monkeypatch.setenv("BOLTZFLOW_CACHE_DIR", str(tmp_path / "cache"))


def openmm_energy_forces(system: mm.System, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenMM Reference energies (n,) kJ/mol and forces (n, n_atoms, 3) kJ/mol/nm of frames (n, n_atoms, 3) nm."""
    ctx = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    energies, forces = [], []
    for frame in xyz:
        ctx.setPositions(np.asarray(frame, dtype=np.float64))
        state = ctx.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(KJ))
        forces.append(state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer))
    del ctx
    return np.asarray(energies), np.asarray(forces)


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """All distances, shape (..., n, n), computed directly (torch.cdist's matmul path loses ~1e-8 nm)."""
    return torch.linalg.vector_norm(x[..., :, None, :] - x[..., None, :, :], dim=-1)


def md_frames(system: PeptideSystem, n: int = 4) -> np.ndarray:
    """``n`` frames of the shipped reference, spread over all replicas, float64 nm."""
    xyz = system.dataset().xyz
    return np.asarray(xyz[np.linspace(0, len(xyz) - 1, n).astype(int)], dtype=np.float64)


@pytest.mark.parametrize("seq", sorted(SHIPPED))
def test_torch_force_field_matches_openmm_on_md_frames(seq):
    system = get_system(f"peptide:{seq}")
    xyz = md_frames(system)
    ref_e, ref_f = openmm_energy_forces(system.molecule("none").system, xyz)
    energy = system.energy()
    kt = energy.kt_kj_per_mol
    x = torch.as_tensor(xyz)
    e_kj = energy(x).numpy() * kt
    f_kj = energy.force(x).numpy() * kt
    # relative 1e-6 (an energy that happens to be near 0 is compared with 1 kJ/mol instead)
    np.testing.assert_array_less(np.abs(e_kj - ref_e) / np.maximum(np.abs(ref_e), 1.0), 1e-6)
    for f, g in zip(f_kj, ref_f, strict=True):
        assert np.abs(f - g).max() / np.abs(g).max() < 1e-6


@pytest.mark.parametrize("seq", sorted(SHIPPED))
def test_shipped_system_shape_zmatrix_and_dihedrals(seq):
    system = get_system(f"peptide:{seq}")
    n_atoms, n_res = SHIPPED[seq], len(seq)
    assert system.event_shape == (n_atoms, 3) and system.n_residues == n_res
    assert system.pdb_path == peptide_build.shipped_pdb(seq)
    # Z-matrix: every atom once, each bond row a real bond, 3N - 6 internal coordinates that round-trip
    zmat = system.zmatrix()
    bonds = set(system.bonds())
    assert zmat.n_atoms == n_atoms
    assert all((min(a, j), max(a, j)) in bonds for a, j in zmat.rows[1:, :2].tolist())
    ic = InternalCoordinates(zmat)
    assert ic.dim == 3 * n_atoms - 6 == {"AAA": 120, "AAAAA": 180}[seq]
    x = torch.as_tensor(md_frames(system, 3))
    q, _ = ic.inverse(x.flatten(-2))
    y = ic.forward(q)[0].unflatten(-1, (n_atoms, 3))
    assert torch.allclose(pairwise_distances(x), pairwise_distances(y), rtol=0, atol=1e-10)
    # backbone (phi, psi) per residue, against mdtraj's own definitions
    assert len(system.backbone_dihedrals()) == n_res
    angles = system.observables()["phi_psi"].fn(x).numpy()
    traj = mdtraj.Trajectory(x.numpy(), mdtraj.load(str(system.pdb_path)).topology)
    np.testing.assert_allclose(angles[..., 0], mdtraj.compute_phi(traj)[1], atol=1e-5)
    np.testing.assert_allclose(angles[..., 1], mdtraj.compute_psi(traj)[1], atol=1e-5)


def test_new_sequence_builds_minimises_and_is_cached(monkeypatch):
    system = get_system("peptide:GV")
    # ACE (6) + GLY (7) + VAL (16) + NME (6)
    assert system.n_atoms == 35 and system.name == "peptide:GV"
    assert system.pdb_path == peptide_build.cached_pdb_path("GV") and system.pdb_path.is_file()
    assert [r.name for r in system.topology.residues()] == ["ACE", "GLY", "VAL", "NME"]
    assert len(system.backbone_dihedrals()) == 2 and system.zmatrix().n_atoms == 35
    x = torch.as_tensor(system.positions())
    u = float(system.energy()(x))
    assert np.isfinite(u)
    # a local minimum: the gradient is small (the minimiser's tolerance was 1 kJ/mol/nm; PDB rounding adds a few)
    f_kj = system.energy().force(x).numpy() * system.energy().kt_kj_per_mol
    assert np.abs(f_kj).max() < 100.0
    # the second build reads the cache and never calls the builder
    def refuse(seq: str) -> str:
        raise AssertionError(f"rebuilt {seq}")

    monkeypatch.setattr(peptide_build, "build_pdb_text", refuse)
    again = get_system("peptide:gv")
    assert again.pdb_path == system.pdb_path and again.n_atoms == 35


def test_build_is_deterministic_and_equals_the_shipped_pdb():
    """The shipped AAA.pdb is what the builder makes today (same atoms, order and coordinates)."""
    text = peptide_build.build_pdb_text("AAA")
    assert text == peptide_build.build_pdb_text("AAA")
    assert text == peptide_build.shipped_pdb("AAA").read_text()


def test_builder_leaves_python_random_state_alone():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    peptide_build.build_pdb_text("G")
    assert random.random() == expected


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BOLTZFLOW_CACHE_DIR", str(tmp_path / "a"))
    assert peptide_build.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("BOLTZFLOW_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert peptide_build.cache_dir() == tmp_path / "xdg" / "boltzflow"


@pytest.mark.parametrize(
    ("name", "words"),
    [("peptide:", ["empty"]), ("peptide:AXB", ["'B'", "'X'", "AXB"]), ("peptide:A1", ["'1'"]),
     ("peptide:AA-water", ["solvent"])],
)
def test_bad_sequences_get_one_line_naming_them(name, words):
    with pytest.raises(ValueError) as err:
        get_system(name)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_registry_lists_shipped_peptides_and_names_round_trip():
    names = system_names()
    assert "peptide:AAA" in names and "peptide:AAAAA" in names
    vacuum = get_system({"name": "peptide:AAA", "solvent": "vacuum"})
    assert vacuum.name == "peptide:AAA-vacuum" and vacuum.forcefield == ("amber99sbildn.xml",)
    assert get_system(vacuum.name).forcefield == vacuum.forcefield
    assert vacuum.references() == {}


@pytest.mark.parametrize("seq", sorted(SHIPPED))
def test_shipped_reference_loads_and_its_energies_match_openmm(seq):
    system = get_system(f"peptide:{seq}")
    assert reference_path(seq).is_file()
    ref = system.reference("md")
    assert ref.kind == "samples" and "ns" in ref.description
    data = system.dataset()
    n = len(data.energy_kj)
    assert data.xyz.shape == (n, SHIPPED[seq], 3) and data.xyz.dtype == np.float32
    assert data.forces_kj.shape == (n, SHIPPED[seq], 3) and data.forces_kj.dtype == np.float16
    assert data.replica.shape == data.time_ps.shape == (n,) and data.temperature_kelvin == 300.0
    prov = data.provenance
    assert prov["config"]["constraints"] == "HBonds" and prov["config"]["timestep_fs"] == 2.0
    assert prov["config"]["forcefield"] == ["amber99sbildn.xml", "amber99_obc.xml"]
    assert prov["packing"]["n_frames"] == n and prov["wall_time_s"] > 0
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(n, 5, replace=False))
    xyz = np.asarray(data.xyz[idx], dtype=np.float64)
    e, f = openmm_energy_forces(system.molecule("HBonds").system, xyz)
    # stored energies come from float64 positions; the float32 rounding (~1e-8 nm) moves them by < 0.05 kJ/mol
    np.testing.assert_allclose(data.energy_kj[idx], e, rtol=0, atol=0.05)
    np.testing.assert_allclose(data.forces_kj[idx].astype(np.float64), f, rtol=2e-3, atol=2.0)
    # the unconstrained torch energy the system samples agrees as well (X-H bonds sit at their constraint length)
    u_kj = system.energy()(torch.as_tensor(xyz)).numpy() * system.energy().kt_kj_per_mol
    np.testing.assert_allclose(u_kj, data.energy_kj[idx], rtol=0, atol=0.1)
    x = ref.load()
    assert x.shape == (n, SHIPPED[seq], 3) and x.dtype == np.float64


@pytest.mark.parametrize("seq", sorted(SHIPPED))
def test_shipped_reference_holds_whole_replicas_at_its_stride(seq):
    """Every replica in the file is complete: t = stride, 2 stride, ... ns ps; the provenance says which were kept."""
    system = get_system(f"peptide:{seq}")
    data = system.dataset()
    packing, cfg = data.provenance["packing"], data.provenance["config"]
    kept = packing["replicas_kept"]
    assert np.unique(data.replica).tolist() == kept and len(kept) >= 2  # one draw is not a reference
    assert sorted(kept + packing["replicas_left_out"]) == list(range(cfg["replicas"]))
    step = packing["frame_interval_ps"]
    expected = step * np.arange(1, int(round(cfg["ns"] * 1000.0 / step)) + 1)
    for r in kept:
        np.testing.assert_allclose(data.time_ps[data.replica == r], expected, rtol=0, atol=1e-3)
    assert packing["n_frames_simulated"] == len(kept) * int(round(cfg["ns"] * 1000.0 / cfg["save_every_ps"]))
    assert packing["ns_total"] == pytest.approx(cfg["ns"] * len(kept))
    assert reference_path(seq).stat().st_size < 2.5e6
    description = system.reference("md").description
    assert f"{len(kept)} x {cfg['ns']:g} ns" in description and str(packing["n_frames"]) in description


def test_basins_per_residue_and_populations():
    system = get_system("peptide:AAA")
    x = torch.as_tensor(md_frames(system, 50))
    basins = system.observables()["basin"].fn(x)
    assert basins.shape == (50, 3) and basins.dtype == torch.int64
    expected = basin_labels(system.phi_psi(x).numpy())
    assert np.array_equal(basins.numpy(), expected)
    pops = system.basin_populations(x)
    assert pops.shape == (3, len(BASINS))
    np.testing.assert_allclose(pops.sum(1), 1.0)
    for r in range(3):
        np.testing.assert_allclose(pops[r], np.bincount(expected[:, r], minlength=len(BASINS)) / 50)
    w = np.zeros(50)
    w[7] = 2.0  # all weight on one frame: that frame's basins
    assert np.array_equal(system.basin_populations(x, w).argmax(1), expected[7])
    with pytest.raises(ValueError, match="weights"):
        system.basin_populations(x, -np.ones(50))


def test_ramachandran_per_residue_has_one_panel_per_residue_in_degrees():
    system = get_system("peptide:AAAAA")
    x = md_frames(system, 200)
    fig = ramachandran_per_residue(system, x, weights=np.ones(len(x)))
    panels = [ax for ax in fig.axes if ax.get_xlabel() == "φ (deg)"]
    assert len(panels) == 5
    assert panels[0].get_ylabel() == "ψ (deg)" and panels[0].get_xlim() == (-180.0, 180.0)
    assert [ax.get_title() for ax in panels] == [label for label, _, _ in system.backbone_dihedrals()]


def chirality_signs(system: PeptideSystem, x: np.ndarray) -> dict[str, float]:
    """sign((N − CA) × (C − CA) · (CB − CA)) per residue with a CB (+1 for L in the shipped alanine dipeptide)."""
    out = {}
    for res in system.topology.residues():
        a = {atom.name: atom.index for atom in res.atoms()}
        if "CB" in a:
            n, ca, c, cb = (x[a[k]] for k in ("N", "CA", "C", "CB"))
            out[f"{res.name}{res.index}"] = float(np.sign(np.dot(np.cross(n - ca, c - ca), cb - ca)))
    return out


@pytest.mark.slow
def test_every_residue_type_builds_and_matches_openmm():
    """All 20 amino acids in one chain (336 atoms): L chirality, trans peptide bonds, torch = OpenMM to 1e-6."""
    system = get_system("peptide:ACDEFGHIKLMNPQRSTVWY")
    assert system.n_atoms == 336 and len(system.backbone_dihedrals()) == 20
    assert system.zmatrix().n_atoms == 336
    xyz = system.positions()
    ala = get_system("alanine-dipeptide")
    assert set(chirality_signs(ala, ala.positions()).values()) == {1.0}
    signs = chirality_signs(system, xyz)
    assert len(signs) == 19 and set(signs.values()) == {1.0}
    # peptide bonds CA(i)-C(i)-N(i+1)-CA(i+1) are trans (the caps' CH3 and C stand in for CA)
    names = [{a.name: a.index for a in r.atoms()} for r in system.topology.residues()]
    pairs = zip(names[:-1], names[1:], strict=True)
    quads = [(h.get("CA", h.get("CH3")), h["C"], n["N"], n.get("CA", n.get("C"))) for h, n in pairs]
    from boltzflow.geometry import dihedrals

    omegas = np.degrees(np.abs(dihedrals(torch.as_tensor(xyz), quads).numpy()))
    assert omegas.min() > 150.0, omegas
    frames = xyz[None] + np.random.default_rng(0).normal(0.0, 0.005, (2, system.n_atoms, 3))
    ref_e, ref_f = openmm_energy_forces(system.molecule("none").system, frames)
    energy = system.energy()
    x = torch.as_tensor(frames)
    e_kj, f_kj = energy(x).numpy() * energy.kt_kj_per_mol, energy.force(x).numpy() * energy.kt_kj_per_mol
    np.testing.assert_array_less(np.abs(e_kj - ref_e) / np.maximum(np.abs(ref_e), 1.0), 1e-6)
    for f, g in zip(f_kj, ref_f, strict=True):
        assert np.abs(f - g).max() / np.abs(g).max() < 1e-6
