"""Resumable OpenMM MD: stored frames agree with OpenMM, and resuming reproduces an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
mdtraj = pytest.importorskip("mdtraj")

from boltzflow.cli import main  # noqa: E402
from boltzflow.energies.openmm_bridge import OpenMMEnergy  # noqa: E402
from boltzflow.energies.openmm_system import SOLVENTS, alanine_dipeptide_pdb, build_molecule  # noqa: E402
from boltzflow.errors import BoltzflowError  # noqa: E402
from boltzflow.io import load_npz  # noqa: E402
from boltzflow.samplers.md import MDConfig, simulate  # noqa: E402
from boltzflow.samplers.md_files import chunk_path, complete_chunks  # noqa: E402

SMALL = {"ns": 0.006, "chunk_ps": 2.0, "equilibrate_ps": 1.0, "replicas": 2, "seed": 3}


def config(solvent="vacuum", **kw):
    return MDConfig(str(alanine_dipeptide_pdb()), SOLVENTS[solvent], **{**SMALL, **kw})


def frames(run_dir, replica, keys=("xyz", "energy_kj", "forces_kj", "time_ps")):
    chunks = sorted((run_dir / f"replica-{replica:02d}").glob("chunk-*.npz"))
    return {k: np.concatenate([load_npz(c)[k] for c in chunks]) for k in keys}


def test_stored_frames_match_openmm_and_xtc(tmp_path):
    out = tmp_path / "run"
    cfg = config("obc")
    result = simulate(cfg, out, progress=False)
    assert result.frames_per_replica == 6 and result.new_frames == 12
    mol = build_molecule(cfg.pdb_path, cfg.forcefield, cfg.constraints)  # the system that ran the MD
    energy = OpenMMEnergy(mol.system)
    for r in range(2):
        f = frames(out, r)
        assert f["xyz"].shape == (6, 22, 3) and f["forces_kj"].shape == (6, 22, 3)
        np.testing.assert_allclose(f["time_ps"], np.arange(1, 7), rtol=0, atol=1e-9)
        e, forces = energy.evaluate(f["xyz"])
        np.testing.assert_allclose(f["energy_kj"], e, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(f["forces_kj"], forces, rtol=1e-12, atol=1e-8)
        traj = mdtraj.load(str(out / f"replica-{r:02d}.xtc"), top=str(out / "topology.pdb"))
        assert traj.n_frames == 6 and traj.n_atoms == 22
        np.testing.assert_allclose(traj.xyz, f["xyz"], atol=1.1e-3)
        np.testing.assert_allclose(traj.time, f["time_ps"], atol=1e-3)
    a, b = frames(out, 0)["xyz"], frames(out, 1)["xyz"]
    assert not np.allclose(a, b), "replicas with different seeds must differ"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "complete" and prov["frames"] == [6, 6] and prov["platform"] == "Reference"
    assert prov["config"]["forcefield"] == list(SOLVENTS["obc"]) and prov["versions"]["openmm"]


def test_resume_after_lost_chunks_reproduces_uninterrupted_run(tmp_path):
    cfg = config()
    simulate(cfg, tmp_path / "ref", progress=False)
    out = tmp_path / "resumed"
    simulate(cfg, out, progress=False)
    chunk_path(out, 0, 2).unlink()
    chunk_path(out, 0, 1).unlink()
    chunk_path(out, 1, 2).unlink()
    (out / "replica-00.xtc").unlink()
    (out / "replica-01.xtc").unlink()
    result = simulate(cfg, out, progress=False)
    assert result.new_frames == 6
    for r in range(2):
        ref, res = frames(tmp_path / "ref", r), frames(out, r)
        for key in ref:
            np.testing.assert_array_equal(res[key], ref[key])
        assert mdtraj.load(str(out / f"replica-{r:02d}.xtc"), top=str(out / "topology.pdb")).n_frames == 6


def test_killed_process_resumes_without_duplicated_or_missing_frames(tmp_path):
    kw = {"ns": 0.16, "chunk_ps": 8.0, "equilibrate_ps": 0.0, "replicas": 1, "seed": 5}
    cfg = config("obc", **kw)
    argv = [
        "simulate", "alanine-dipeptide", "--ns", "0.16", "--chunk-ps", "8", "--equilibrate-ps", "0",
        "--replicas", "1", "--seed", "5", "--no-progress", "--out",
    ]  # fmt: skip
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "boltzflow.cli", *argv, str(out)], env=env)
    deadline = time.time() + 120
    while not chunk_path(out, 0, 2).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = complete_chunks(out, 0)
    assert 2 <= done < cfg.n_chunks, f"the kill should land mid-run (after {done} chunks)"
    assert main([*argv, str(out)]) == 0
    simulate(cfg, tmp_path / "ref", progress=False)
    ref, res = frames(tmp_path / "ref", 0), frames(out, 0)
    np.testing.assert_allclose(res["time_ps"], np.arange(1, 161), rtol=0, atol=1e-9)
    for key in ref:
        np.testing.assert_array_equal(res[key], ref[key])
    assert not list((out / "replica-00").glob(".*")), "no leftover temporary files are visible as chunks"


def test_existing_runs_are_protected(tmp_path):
    cfg = config(replicas=1, ns=0.002)
    out = tmp_path / "run"
    simulate(cfg, out, progress=False)
    before = frames(out, 0)
    assert simulate(cfg, out, progress=False).new_frames == 0  # finished: nothing recomputed
    with pytest.raises(
        BoltzflowError, match=r"different configuration \(temperature_kelvin: 300.0 -> 310.0\)"
    ):
        simulate(config(replicas=1, ns=0.002, temperature_kelvin=310.0), out, progress=False)
    np.testing.assert_array_equal(frames(out, 0)["xyz"], before["xyz"])
    assert simulate(config(replicas=1, ns=0.002, seed=9), out, progress=False, force=True).new_frames == 2
    assert not np.array_equal(frames(out, 0)["xyz"], before["xyz"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(BoltzflowError, match="not empty"):
        simulate(cfg, other, progress=False)
    with pytest.raises(ValueError, match="whole number"):
        config(save_every_ps=0.003).validate()
    for bad in ({"ns": float("inf")}, {"friction_per_ps": float("nan")}, {"replicas": 0}, {"chunk_ps": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            config(**bad).validate()


def test_cli_pdb_and_forcefield(tmp_path, capsys):
    out = tmp_path / "pdb"
    argv = ["simulate", "--pdb", str(alanine_dipeptide_pdb()), "--forcefield", "amber99sbildn.xml"]
    argv += ["--ns", "0.002", "--equilibrate-ps", "0", "--chunk-ps", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert "1 x 2 frames; computed 2 new frames" in capsys.readouterr().out
    assert json.loads((out / "provenance.json").read_text())["config"]["forcefield"] == ["amber99sbildn.xml"]
    assert main(["simulate", "alanine-dipeptide", "--pdb", "x.pdb", "--out", str(out)]) == 1
    assert "not both" in capsys.readouterr().err
    solvent = ["simulate", "--pdb", str(alanine_dipeptide_pdb()), "--solvent", "vacuum", *argv[5:-1]]
    assert main([*solvent, str(tmp_path / "solvent")]) == 0  # the same force field as above
    np.testing.assert_array_equal(frames(out, 0)["xyz"], frames(tmp_path / "solvent", 0)["xyz"])


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    options = (
        "--replicas --ns --out --pdb --forcefield --temperature --friction --timestep-fs --save-every-ps"
    )
    options += " --equilibrate-ps --platform --seed --no-progress --force --chunk-ps --solvent --constraints"
    for option in options.split():
        assert option in text


DIVERGING = ["simulate", "alanine-dipeptide", "--timestep-fs", "50", "--equilibrate-ps", "0", "--save-every-ps",
             "0.1", "--chunk-ps", "0.2", "--ns", "0.01", "--no-progress", "--out"]


def _diverged_frame(err: str) -> int:
    import re

    match = re.search(r"replica 0 diverged at frame (\d+) \(t = ([\d.]+) ps\)", err)
    assert match, err
    assert float(match.group(2)) == pytest.approx(0.1 * (int(match.group(1)) + 1))
    return int(match.group(1))


def test_a_50_fs_step_stops_at_the_first_nan_frame_and_keeps_the_good_chunks(tmp_path, capsys):
    """Issue 11: 50 fs used to exit 0 and write NaN. Now: one line naming the frame, good chunks kept, resumable."""
    out = tmp_path / "nan"
    assert main([*DIVERGING, str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "chunks 0-" in err, err
    frame = _diverged_frame(err)
    kept = complete_chunks(out, 0)
    assert kept == frame // 2 >= 2  # two frames per chunk: every chunk before the bad frame's one is on disk
    good = frames(out, 0)
    assert len(good["xyz"]) == 2 * kept and all(np.isfinite(v).all() for v in good.values())
    np.testing.assert_allclose(good["time_ps"], 0.1 * np.arange(1, 2 * kept + 1), rtol=1e-12)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "diverged" and f"frame {frame}" in prov["error"] and prov["frames"] == [2 * kept]
    assert not (out / "replica-00.xtc").exists()
    # resumable: the kept chunks continue from their checkpoints; recomputing the last two from the one before
    # gives the same bits and the same failure at the same frame
    last = {c: load_npz(chunk_path(out, 0, c)) for c in (kept - 2, kept - 1)}
    chunk_path(out, 0, kept - 1).unlink()
    chunk_path(out, 0, kept - 2).unlink()
    assert main([*DIVERGING, str(out)]) == 1
    assert _diverged_frame(capsys.readouterr().err) == frame and complete_chunks(out, 0) == kept
    for c, ref in last.items():
        for key, value in load_npz(chunk_path(out, 0, c)).items():
            np.testing.assert_array_equal(value, ref[key])


def test_divergence_during_equilibration_writes_no_frame(tmp_path, capsys):
    out = tmp_path / "eq"
    argv = ["simulate", "alanine-dipeptide", "--timestep-fs", "50", "--ns", "0.01", "--no-progress", "--out"]
    assert main([*argv, str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "diverged during equilibration (by t = " in err, err
    assert "no chunk was written" in err and complete_chunks(out, 0) == 0


def test_cpu_platform_exception_is_the_same_one_line_error(tmp_path):
    """OpenMM's CPU platform raises 'Particle coordinate is NaN' itself; it ends as the same NonFiniteError."""
    from boltzflow.samplers.openmm_run import NonFiniteError

    cfg = config("vacuum", timestep_fs=50.0, equilibrate_ps=0.0, save_every_ps=0.1, chunk_ps=0.2, ns=0.01,
                 replicas=1, platform="CPU")
    with pytest.raises(NonFiniteError, match=r"replica 0 diverged at frame \d+ \(t = [\d.]+ ps\)"):
        simulate(cfg, tmp_path / "cpu", progress=False)


def test_any_registered_molecule_runs_through_the_registry(tmp_path, monkeypatch, capsys):
    """A MoleculeSystem registered under a new name needs no MD code: simulate uses its molecule()."""
    from boltzflow.systems import registry
    from boltzflow.systems.molecule import MoleculeSystem

    registry.entries()  # fill the registry first, so the entry below is removed again afterwards
    made = []

    def factory(solvent="vacuum", **params):
        made.append(solvent)
        return MoleculeSystem("test-molecule", alanine_dipeptide_pdb(), solvent, 310.0)

    monkeypatch.setitem(registry._ENTRIES, "test-molecule",
                        registry.Entry("test-molecule", factory, False, "test", ("test-molecule",)))
    out = tmp_path / "reg"
    argv = ["simulate", "test-molecule", "--ns", "0.002", "--equilibrate-ps", "0", "--chunk-ps", "1",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0 and made == ["vacuum"]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["forcefield"] == list(SOLVENTS["vacuum"])
    assert prov["config"]["temperature_kelvin"] == 310.0  # the system's temperature is the default
    assert main([*argv[:-2], "--solvent", "obc", "--out", str(tmp_path / "obc")]) == 0 and made[-1] == "obc"
    capsys.readouterr()
    assert main(["simulate", "two-particle", "--out", str(tmp_path / "tp")]) == 1
    assert "not a molecule" in capsys.readouterr().err and not (tmp_path / "tp").exists()
