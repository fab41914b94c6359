"""Packed MD datasets: round trip of a small run, and the shipped alanine dipeptide data against OpenMM."""

import json

import numpy as np
import pytest

pytest.importorskip("openmm")

from boltzflow.energies.openmm_bridge import OpenMMEnergy  # noqa: E402
from boltzflow.energies.openmm_system import alanine_dipeptide  # noqa: E402
from boltzflow.samplers.dataset import (  # noqa: E402
    alanine_dataset_path,
    load_alanine_dataset,
    load_dataset,
    load_simulation,
    pack_simulation,
)
from boltzflow.samplers.md import MDConfig, simulate  # noqa: E402
from boltzflow.samplers.md_files import chunk_path  # noqa: E402

F16_REL = 2.0**-11  # float16 rounding: relative error at most half an ulp = 2**-11


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("md") / "run"
    mol = alanine_dipeptide("vacuum")
    cfg = MDConfig(
        mol.pdb_path, mol.forcefield, ns=0.004, chunk_ps=2.0, equilibrate_ps=0.5, replicas=2, seed=1
    )
    simulate(cfg, out, progress=False)
    return out


def test_pack_and_load_round_trip(small_run, tmp_path):
    raw = load_simulation(small_run, complete_only=True)
    assert raw.xyz.shape == (8, 22, 3) and raw.xyz.dtype == np.float64
    np.testing.assert_array_equal(raw.replica, [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(raw.time_ps, [1, 2, 3, 4] * 2)
    path = pack_simulation(small_run, tmp_path / "small.npz")
    data = load_dataset(path)
    assert data.xyz.dtype == np.float32 and data.forces_kj.dtype == np.float16
    assert data.energy_kj.dtype == np.float64 and data.temperature_kelvin == 300.0
    np.testing.assert_allclose(data.xyz, raw.xyz, rtol=2e-7, atol=1e-7)
    np.testing.assert_array_equal(data.energy_kj, raw.energy_kj)
    err = np.abs(data.forces_kj.astype(np.float64) - raw.forces_kj)
    assert np.all(err <= F16_REL * np.abs(raw.forces_kj) + 6e-8)
    prov = json.loads(path.with_suffix(".json").read_text())
    assert prov["packing"]["n_frames"] == 8 and prov["config"]["replicas"] == 2
    assert data.provenance == prov
    path32 = pack_simulation(small_run, tmp_path / "small32.npz", forces_dtype="float32")
    assert load_dataset(path32).forces_kj.dtype == np.float32


def test_unfinished_or_bad_runs_are_refused(small_run, tmp_path):
    chunk_path(small_run, 1, 1).rename(tmp_path / "moved.npz")
    try:
        assert len(load_simulation(small_run).energy_kj) == 6  # partial runs load what is complete
        with pytest.raises(ValueError, match="replica 1 .* 2/4 frames"):
            pack_simulation(small_run, tmp_path / "partial.npz")
        assert not (tmp_path / "partial.npz").exists()
    finally:
        (tmp_path / "moved.npz").rename(chunk_path(small_run, 1, 1))
    with pytest.raises(ValueError, match="forces_dtype"):
        pack_simulation(small_run, tmp_path / "x.npz", forces_dtype="int8")
    with pytest.raises(FileNotFoundError, match="provenance.json"):
        load_simulation(tmp_path)


@pytest.mark.skipif(not alanine_dataset_path().is_file(), reason="alanine-dipeptide-60ns.npz not packed yet")
def test_shipped_alanine_dataset_matches_openmm():
    data = load_alanine_dataset()
    n = len(data.energy_kj)
    assert n == 60_000
    assert data.xyz.shape == (n, 22, 3) and data.xyz.dtype == np.float32
    assert data.forces_kj.shape == (n, 22, 3) and data.forces_kj.dtype in (np.float16, np.float32)
    assert data.energy_kj.shape == (n,) and data.energy_kj.dtype == np.float64
    assert data.temperature_kelvin == 300.0
    np.testing.assert_array_equal(np.bincount(data.replica), [10_000] * 6)
    np.testing.assert_allclose(data.time_ps[:10_000], np.arange(1, 10_001))
    assert data.provenance["config"]["forcefield"] == ["amber99sbildn.xml", "amber99_obc.xml"]
    idx = np.random.default_rng(0).choice(n, size=40, replace=False)
    mol = alanine_dipeptide("obc", constraints="HBonds")  # the system that ran the MD
    energy, forces = OpenMMEnergy(mol.system, temperature_kelvin=300.0).evaluate(data.xyz[idx])
    # float32 positions move the energy by ~|F| * 1e-7 nm per coordinate: well under 0.01 kJ/mol
    np.testing.assert_allclose(data.energy_kj[idx], energy, rtol=0, atol=1e-2)
    rel = 2.0**-11 if data.forces_kj.dtype == np.float16 else 1e-6
    stored = data.forces_kj[idx].astype(np.float64)
    assert np.all(np.abs(stored - forces) <= rel * np.abs(forces) + 0.05)
