"""Umbrella sampling: the OpenMM restraint against its closed form; a tiny end-to-end run of the command."""

import argparse
import json
import math

import numpy as np
import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.geometry import dihedrals
from boltzflow.io import load_npz
from boltzflow.samplers.umbrella import (
    bias_energy_kj,
    dihedral_restraint,
    load_windows,
    periodic_distance,
    window_centers,
)


def four_atoms(theta: float) -> np.ndarray:
    """Positions (4, 3) nm whose dihedral 0-1-2-3 is ``theta`` rad."""
    return np.array(
        [
            [0.1, 0.0, 0.0],
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 0.15],
            [0.1 * math.cos(theta), 0.1 * math.sin(theta), 0.15],
        ]
    )


def openmm_energy(theta: float, theta0: float, k: float) -> float:
    import openmm
    import openmm.unit as unit

    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    system.addForce(dihedral_restraint((0, 1, 2, 3), theta0, k))
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(four_atoms(theta))
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


@pytest.mark.parametrize(
    "theta, theta0",
    [
        (0.5, 0.5),
        (0.6, 0.5),
        (0.4, 0.5),
        (-0.5, 0.5),
        (math.pi - 0.05, -math.pi + 0.05),
        (-3.0, 3.0),
        (2.0, -1.0),
    ],
)
def test_restraint_matches_periodic_closed_form(theta, theta0):
    k = 150.0
    got_theta = float(dihedrals(torch.as_tensor(four_atoms(theta)), [[0, 1, 2, 3]])[0])
    assert got_theta == pytest.approx(theta, abs=1e-12)  # geometry and OpenMM share the sign convention below
    d = min(abs(theta - theta0), 2 * math.pi - abs(theta - theta0))
    want = 0.5 * k * d**2
    assert openmm_energy(theta, theta0, k) == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert float(bias_energy_kj(np.array(theta), theta0, k)) == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_periodic_distance_and_centres():
    np.testing.assert_allclose(
        periodic_distance(np.array([3.0, -3.0, 0.0]), -3.0), [2 * math.pi - 6.0, 0.0, 3.0]
    )
    c = window_centers(36)
    assert c[0] == -math.pi and np.allclose(np.diff(c), math.pi / 18)


def _run(argv: list[str]) -> int:
    from boltzflow.commands import umbrella

    parser = argparse.ArgumentParser()
    umbrella.add_arguments(parser)
    return umbrella.run(parser.parse_args(argv))


def test_tiny_run_resume_and_extend(tmp_path, capsys):
    out = tmp_path / "u"
    args = ["alanine-dipeptide", "--out", str(out), "--windows", "4", "--equilibrate-ps", "1", "--bins", "8"]
    assert _run([*args, "--ns-per-window", "0.004", "--no-progress", "--solvent", "vacuum"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "free_energy.png").stat().st_size > 1000
    assert 0.0 <= res["alpha_l_population"] <= 1.0 and res["n_samples_total"] == 16
    assert len(res["phi_deg"]) == len(res["free_energy_kt"]) == 8
    assert res["settings"]["n_windows"] == 4 and res["sampling_wall_time_s"] > 0
    w = load_windows(out)
    assert w.theta.shape == w.extra.shape == (4, 4)
    # each window sits near its centre (the restraint holds: 3.5 sd of the k = 150 window is ~25 degrees)
    assert np.all(np.degrees(periodic_distance(w.theta, w.theta0[:, None])) < 30)
    before = load_npz(out / "window-02.npz")["theta"]

    assert _run([*args, "--ns-per-window", "0.004", "--no-progress", "--solvent", "vacuum"]) == 0
    assert "(0 new frames)" in capsys.readouterr().out  # resumed: nothing to redo
    assert _run([*args, "--ns-per-window", "0.006", "--no-progress", "--solvent", "vacuum"]) == 0
    after = load_npz(out / "window-02.npz")
    assert after["theta"].shape == (6,) and np.array_equal(after["theta"][:4], before)
    np.testing.assert_allclose(after["time_ps"], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])

    with pytest.raises(BoltzflowError, match="other settings"):
        _run([*args, "--ns-per-window", "0.004", "--k", "99", "--no-progress", "--solvent", "vacuum"])


def test_bad_inputs(tmp_path, capsys):
    from boltzflow.cli import main

    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(BoltzflowError, match="not empty"):
        _run(["alanine-dipeptide", "--out", str(tmp_path), "--windows", "4", "--ns-per-window", "0.002"])
    with pytest.raises(SystemExit):
        main(["umbrella", "alanine-dipeptide", "--out", str(tmp_path / "a"), "--windows", "1"])
    assert "argument --windows: must be a whole number >= 2" in capsys.readouterr().err
    with pytest.raises(BoltzflowError, match="umbrella.json"):
        load_windows(tmp_path)
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="n_windows must be an integer >= 2"):
        _config(n_windows=1).validate()
    with pytest.raises(ValueError, match="k_kj_per_mol_rad2 must be a finite number > 0"):
        _config(k_kj_per_mol_rad2=math.inf).validate()
    with pytest.raises(ValueError, match="restrained_atoms"):
        _config(restrained_atoms=(4, 6, 6, 14)).validate()


def _config(**kw):
    from boltzflow.energies.openmm_system import SOLVENTS, alanine_dipeptide_pdb
    from boltzflow.samplers.umbrella import UmbrellaConfig
    from boltzflow.systems.alanine import backbone_dihedral_indices

    phi, psi = backbone_dihedral_indices()
    settings = {"restrained_atoms": phi, "extra_atoms": psi, "n_windows": 3, "ns_per_window": 0.004,
                "equilibrate_ps": 0.0, "seed": 2, **kw}
    return UmbrellaConfig(str(alanine_dipeptide_pdb()), SOLVENTS["vacuum"], **settings)


def test_a_diverging_window_stops_the_run_and_keeps_the_windows_before_it(tmp_path):
    from boltzflow.samplers.openmm_run import NonFiniteError
    from boltzflow.samplers.umbrella import run_umbrella

    out = tmp_path / "nan"
    with pytest.raises(NonFiniteError, match=r"umbrella window \d \(centre [+-]\d+ deg\) diverged at frame \d+"):
        run_umbrella(_config(timestep_fs=50.0, save_every_ps=0.1, ns_per_window=0.01), out, progress=False)
    assert not list(out.glob("window-*.npz")), "a window file is written only when its window succeeded"
    session = json.loads((out / "umbrella.json").read_text())["sessions"][-1]
    assert "diverged" in session["error"] and session["new_frames"] == 0


def test_unreadable_window_files_are_named(tmp_path):
    from boltzflow.samplers.umbrella import MANIFEST

    (tmp_path / MANIFEST).write_text(json.dumps({"config": {"n_windows": 2, "k_kj_per_mol_rad2": 1.0,
                                                            "temperature_kelvin": 300.0}}))
    np.savez(tmp_path / "window-00.npz", theta=np.zeros(3))
    (tmp_path / "window-01.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BoltzflowError, match=r"window-00.npz is not a readable window file"):
        load_windows(tmp_path)
    (tmp_path / "window-00.npz").write_bytes((tmp_path / "window-01.npz").read_bytes())
    with pytest.raises(BoltzflowError, match=r"window-00.npz is not a readable window file"):
        load_windows(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(BoltzflowError, match=r"umbrella.json is not valid JSON"):
        load_windows(tmp_path)
