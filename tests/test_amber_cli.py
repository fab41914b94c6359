"""``boltzflow energy``: both backends agree; bad input gives one line, a non-zero exit and no output."""

from __future__ import annotations

import numpy as np
import pytest

from boltzflow.cli import main
from boltzflow.energies.openmm_system import alanine_dipeptide_pdb, build_molecule
from boltzflow.io import load_npz

PDB = str(alanine_dipeptide_pdb())


@pytest.fixture()
def frames(tmp_path):
    xyz = build_molecule(PDB, constraints="none").positions
    rng = np.random.default_rng(0)
    path = tmp_path / "frames.npz"
    np.savez(path, xyz=xyz + rng.normal(0.0, 0.01, (4, *xyz.shape)))
    return path


def test_backends_agree(frames, tmp_path):
    outs = {}
    for backend in ("torch", "openmm"):
        out = tmp_path / f"{backend}.npz"
        assert (
            main(
                [
                    "energy",
                    "--pdb",
                    PDB,
                    "--in",
                    str(frames),
                    "--out",
                    str(out),
                    "--backend",
                    backend,
                    "--forces",
                ]
            )
            == 0
        )
        outs[backend] = load_npz(out)
    t, o = outs["torch"], outs["openmm"]
    assert t["energy_kj"].shape == (4,) and t["forces_kj"].shape == (4, 22, 3)
    np.testing.assert_allclose(t["energy_kj"], o["energy_kj"], rtol=1e-9)
    np.testing.assert_allclose(t["forces_kj"], o["forces_kj"], atol=1e-8 * np.abs(o["forces_kj"]).max())
    np.testing.assert_allclose(t["energy_kt"], t["energy_kj"] / (0.008314462618 * 300.0), rtol=1e-12)


def test_reads_mdtraj_trajectories(frames, tmp_path):
    import mdtraj

    xyz = load_npz(frames)["xyz"]
    traj = mdtraj.Trajectory(xyz, mdtraj.load(PDB).topology)
    traj.save_dcd(str(tmp_path / "t.dcd"))
    out = tmp_path / "dcd.npz"
    assert main(["energy", "--pdb", PDB, "--in", str(tmp_path / "t.dcd"), "--out", str(out)]) == 0
    ref = tmp_path / "ref.npz"
    assert main(["energy", "--pdb", PDB, "--in", str(frames), "--out", str(ref)]) == 0
    assert "forces_kj" not in load_npz(out)
    np.testing.assert_allclose(
        load_npz(out)["energy_kj"], load_npz(ref)["energy_kj"], rtol=1e-3
    )  # dcd is float32


@pytest.mark.parametrize("problem", ["atoms", "nan", "missing", "force"])
def test_bad_input_one_line_no_output(frames, tmp_path, capsys, problem):
    xyz = load_npz(frames)["xyz"]
    path, extra = frames, []
    if problem == "atoms":
        path = tmp_path / "short.npz"
        np.savez(path, xyz=xyz[:, :21])
    elif problem == "nan":
        xyz[2, 3, 1] = np.nan
        path = tmp_path / "nan.npz"
        np.savez(path, xyz=xyz)
    elif problem == "missing":
        path = tmp_path / "nope.npz"
    else:
        extra = ["--forcefield", "amber14-all.xml", "implicit/obc2.xml"]
    out = tmp_path / "out.npz"
    assert main(["energy", "--pdb", PDB, "--in", str(path), "--out", str(out), *extra]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    expected = {"atoms": "22 atoms", "nan": "NaN", "missing": "not found", "force": "CustomGBForce"}[problem]
    assert expected in err
    assert not out.exists() and not list(tmp_path.glob(".out.npz*"))
