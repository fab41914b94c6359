"""Smoke run of the §6.2 dihedral experiment on synthetic (φ, ψ) angles, and its building blocks."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from boltzflow import plots
from boltzflow.errors import BoltzflowError
from boltzflow.experiments import alanine_dihedrals as ad
from boltzflow.flows.realnvp import RealNVPConfig, n_parameters, realnvp
from boltzflow.io import load_npz
from boltzflow.recipes import load_recipe


def synthetic_angles(n, seed=0):
    """Three von Mises blobs near the C7eq/β, αR and αL basins (radians), ψ of β wrapping over ±π."""
    rng = np.random.default_rng(seed)
    centres = np.radians([[-80.0, 170.0], [-70.0, -40.0], [60.0, 40.0]])
    k = rng.choice(3, size=n, p=[0.6, 0.37, 0.03])
    x = rng.vonmises(centres[k], 6.0)
    return np.mod(x + np.pi, 2 * np.pi) - np.pi


def tiny_config():
    return load_recipe("alanine-dihedrals", "smoke", ["data.n_frames=none"]).config


def test_paper_realnvp_has_2316_parameters():
    flow = realnvp(RealNVPConfig(dim=2, n_layers=6, hidden=[64], masked_input=False))
    assert n_parameters(flow) == 2316
    model = load_recipe("alanine-dihedrals", "full").config.models[0]  # the shipped recipe builds the paper's model
    spec = model.spec(synthetic_angles(50))
    assert spec["config"] == dataclasses.asdict(RealNVPConfig(dim=2, n_layers=6, hidden=[64], masked_input=False))


def test_smoke_run_writes_outputs(tmp_path):
    angles = synthetic_angles(400)
    res = ad.run(tmp_path / "run", tiny_config(), data=angles, progress=False)
    out = tmp_path / "run"
    saved = json.loads((out / "results.json").read_text())
    assert [m["model"] for m in saved["models"]] == ["realnvp", "circular_spline"]
    assert saved["models"][0]["n_params"] == 2316
    for m in saved["models"]:
        for key in ("w2_deg_n100", "w2_deg_floor_n100", "w2_torus_deg_n100", "w2_torus_deg_floor_n100",
                    "w2_deg_wrapped_n100", "w2_torus_deg_ratio_n100", "max_abs_angle_deg", "val_nll",
                    "hist_kl", "hist_tv", "train_seconds", "alphaL_gen", "alphaL_real"):
            assert math.isfinite(m[key]), key
        assert m["w2_deg"] is None and m["w2_torus_deg_10k"] is None  # sizes not computed in this run
        assert sum(m["populations_gen"].values()) == pytest.approx(1.0)
        ev = m["evaluation"]  # the one evaluation, on the wrapped angles without weights
        assert ev["weighted"] is False and 0 <= ev["ramachandran_tv"] <= 1
        assert {k: v["mean"] for k, v in ev["populations"].items()} == pytest.approx(m["populations_gen"], abs=1e-12)
        assert m["w2_torus_deg_n100"] <= m["w2_deg_n100"] + 1e-9 or m["fraction_outside_box"] > 0
    assert saved["data"]["n_frames"] == 400
    assert saved["data"]["populations"] == pytest.approx(res["data"]["populations"])
    for name in ("realnvp", "circular_spline"):
        s = load_npz(out / "samples" / f"{name}.npz")["phi_psi"]
        assert s.shape == (400, 2)
    assert (out / "figures" / "fig3_ramachandran.png").stat().st_size > 1000
    assert "9.21" not in (out / "table.md").read_text()  # n=100: the paper's n=1000 W2 is not comparable
    with pytest.raises(BoltzflowError, match="finished run"):
        ad.run(out, tiny_config(), data=angles, progress=False)


def test_metrics_of_the_reference_itself_are_at_the_floor():
    ref = synthetic_angles(3000, seed=1)
    cfg = ad.DihedralEvaluation(w2_sizes=(500,), w2_draws=(2,), hist_bins=10)
    floors = ad.noise_floors(ref[:1500], cfg, seed=0)
    row = ad.metrics(ref[:1500], ref[1500:], cfg, floors, seed=5)
    assert 0.6 < row["w2_torus_deg_ratio_n500"] < 1.5
    assert row["hist_tv"] < 0.15
    # shifting every ψ by a full turn changes nothing on the torus but moves the Euclidean W2 by 360°
    shifted = ref[1500:] + np.array([0.0, 2 * np.pi])
    row2 = ad.metrics(ref[:1500], shifted, cfg, floors, seed=5)
    assert row2["w2_torus_deg_n500"] == pytest.approx(row["w2_torus_deg_n500"], rel=1e-6)
    assert row2["w2_deg_n500"] > 300


def test_plain_evaluation_of_the_reference_against_itself():
    from boltzflow.experiments.dihedral_metrics import plain_evaluation

    ref = synthetic_angles(2000, seed=2)
    ev = plain_evaluation(ref, ref + np.array([2 * np.pi, -2 * np.pi]))  # a full turn: the same angles
    assert ev["ramachandran_tv"] == pytest.approx(0.0, abs=1e-12)
    assert {k: v["mean"] for k, v in ev["populations"].items()} == pytest.approx(ad.basin_populations(ref))


def test_load_angles_from_positions_and_bad_input():
    from boltzflow.energies.openmm_system import alanine_dipeptide
    from boltzflow.systems.registry import get_system

    system = get_system("alanine-dipeptide")
    xyz = np.repeat(alanine_dipeptide().positions[None], 12, axis=0)
    angles, _ = ad.load_angles(system, xyz)
    assert angles.shape == (12, 2) and np.allclose(angles, angles[0])
    with pytest.raises(BoltzflowError, match="angles"):
        ad.load_angles(system, np.zeros((20, 3)))


def test_figure_has_one_panel_per_model():
    ref = synthetic_angles(500)
    fig = plots.ramachandran(ref, {"a": ad.wrap_np(ref + 0.1), "b": ad.wrap_np(torch.as_tensor(ref).numpy() - 7.0)})
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3
