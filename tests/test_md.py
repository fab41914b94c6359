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


def test_cli_pdb_and_forcefield(tmp_path, capsys):
    out = tmp_path / "pdb"
    argv = ["simulate", "--pdb", str(alanine_dipeptide_pdb()), "--forcefield", "amber99sbildn.xml"]
    argv += ["--ns", "0.002", "--equilibrate-ps", "0", "--chunk-ps", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert "1 x 2 frames; computed 2 new frames" in capsys.readouterr().out
    assert json.loads((out / "provenance.json").read_text())["config"]["forcefield"] == ["amber99sbildn.xml"]
    assert main(["simulate", "alanine-dipeptide", "--pdb", "x.pdb", "--out", str(out)]) == 1
    assert "not both" in capsys.readouterr().err


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
