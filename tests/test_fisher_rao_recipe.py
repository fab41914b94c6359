"""`boltzflow reproduce fisher-rao` end to end at the smoke scale, one cell resumed, bad input, the verdicts."""

import json

import numpy as np
import pytest
import torch

from boltzflow.cli import main
from boltzflow.experiments.fisher_rao_report import summarise, verdicts
from boltzflow.experiments.fisher_rao_targets import get_target
from boltzflow.io import load_npz
from boltzflow.recipes import load_recipe


def test_smoke_run_writes_every_output(tmp_path, capsys):
    out = tmp_path / "fr"
    assert main(["reproduce", "fisher-rao", "--scale", "smoke", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'results.json'}"
    with open(out / "results.json") as f:
        res = json.load(f)
    cfg = load_recipe("fisher-rao", "smoke").config
    assert sorted(res["table"]) == sorted(cfg.targets)
    for target in cfg.targets:
        assert sorted(res["table"][target]) == sorted(cfg.interpolations)
        for interp in cfg.interpolations:
            with np.load(out / "samples" / f"{target}-{interp}.npz") as z:
                assert z["x"].shape == (cfg.evaluation.n_saved, get_target(target).dim)
    assert len(res["cells"]) == len(cfg.targets) * len(cfg.interpolations) * cfg.seeds
    for name in ("teleport.png", "samples-gmm40.png", "loss-gmm40.png", "loss-manywell8.png"):
        assert (out / "figures" / name).stat().st_size > 0
    assert (out / "table.md").read_text().count("\n| gmm40 |") == len(cfg.interpolations)
    exact = res["teleport_exact_1d"]["rows"]
    assert exact["12"]["ratio_at_t1"] > exact["8"]["ratio_at_t1"] > exact["4"]["ratio_at_t1"] > 1  # teleportation
    assert res["config"]["scale"] == "smoke" and "gmm40_linear_vs_ou" in res["verdicts"]


def test_one_cell_runs_alone(tmp_path, capsys):
    out = tmp_path / "cell"
    argv = ["reproduce", "fisher-rao", "--scale", "smoke", "--set", "only=gmm40/linear/0", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    assert "cell gmm40/linear/0 done" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "runs").glob("gmm40-*")) == ["gmm40-linear-s0.json",
                                                                        "gmm40-linear-s0.safetensors"]
    assert not (out / "results.json").exists()
    with np.load(out / "runs" / "samples-gmm40-linear-s0.npz") as z:
        assert np.isfinite(z["x"]).all()
    assert load_npz(out / "runs" / "samples-gmm40-linear-s0.npz", ["log_w"])["log_w"].shape == (100,)
    stamp = (out / "runs" / "gmm40-linear-s0.json").stat().st_mtime_ns
    assert main(argv) == 0  # resumed: the finished cell is read back, not retrained
    assert (out / "runs" / "gmm40-linear-s0.json").stat().st_mtime_ns == stamp
    other = argv[:4] + ["--set", "training.steps=6"] + argv[4:]
    assert main(other) != 0  # a finished cell made with other settings is not passed off as this one
    assert "other settings (steps)" in capsys.readouterr().err
    assert json.loads((out / "runs" / "gmm40-linear-s0.json").read_text())["training"]["base_scale"] == 30.0
    sigma2 = argv[:4] + ["--set", 'training.base_scale_overrides={"gmm40/linear"=2.0}'] + argv[4:]
    assert main(sigma2) != 0  # the recipe's sigma0 = 30 for this cell is part of its settings
    assert "other settings (base_scale)" in capsys.readouterr().err
    assert (out / "runs" / "gmm40-linear-s0.json").stat().st_mtime_ns == stamp
    partial = ["reproduce", "fisher-rao", "--scale", "smoke", "--set", "skip_missing=true", "--set",
               'targets=["gmm40"]', "--out", str(out), "--no-progress"]
    assert main(partial) == 0  # aggregate what is there; the cell not run is listed, not trained
    with open(out / "results.json") as f:
        res = json.load(f)
    assert res["missing"] == ["gmm40/gradient_flow/0"] and list(res["table"]["gmm40"]) == ["linear"]
    assert not (out / "runs" / "gmm40-gradient_flow-s0.json").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [("only=gmm40/bogus/0", "only must be"), ("targets=[\"gmm41\"]", "targets must be"),
     ("interpolations=[\"linear\",\"linear\"]", "interpolations must be"),
     ("training.source=\"sphere\"", "source must be"), ("training.trajectory_fraction=1.5", "trajectory_fraction"),
     ("evaluation.n_weights=400", "n_weights and n_saved"), ("training.hidden=[]", "hidden must be"),
     ('training.base_scale_overrides={"gmm41/linear"=2.0}', "base_scale_overrides keys"),
     ('training.base_scale_overrides={"gmm40/linear"=0.0}', "must be a finite number > 0")],
)
def test_bad_values_are_one_line_and_create_nothing(value, message, tmp_path, capsys):
    out = tmp_path / "bad"
    try:
        rc = main(["reproduce", "fisher-rao", "--scale", "smoke", "--set", value, "--out", str(out)])
    except SystemExit as err:
        rc = err.code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


def test_base_scale_overrides_resolve_per_cell():
    tc = load_recipe("fisher-rao", "smoke").config.training
    assert tc.base_scale_overrides == {"gmm40/linear": 30.0, "gmm40/learned": 30.0}  # paper 003, Fig. 3
    assert [tc.for_cell("gmm40", i)["base_scale"] for i in ("linear", "learned", "gradient_flow")] == [30.0, 30.0, 1.0]
    assert tc.for_cell("manywell8", "linear")["base_scale"] == 1.0
    assert "base_scale_overrides" not in tc.for_cell("gmm40", "linear")


def _cell(interp, seed, modes, ed, floor, log_z_error, speed_t1, ess):
    return {"target": "gmm40", "interpolation": interp, "seed": seed, "energy_distance": ed,
            "energy_distance_floor": floor, "ess_fraction": ess, "log_z_is_error": log_z_error,
            "log_z_rate_error": 0.0, "modes_covered": modes, "n_modes": 40, "n_eval": 100, "train_cpu_s": 1.0,
            "train_wall_s": 1.0, "eval_cpu_s": 1.0, "eval_wall_s": 1.0, "speed_times": [0.0, 1.0],
            "speed": [1.0, speed_t1]}


def test_verdicts_follow_the_issue_bars():
    cells = [_cell("gradient_flow", 0, 40, 1.5e-3, 1e-3, 0.01, 2.0, 0.9),
             _cell("gradient_flow", 1, 40, 1.9e-3, 1e-3, -0.04, 2.0, 0.8),
             _cell("linear", 0, 12, 5.0, 1e-3, -3.0, 40.0, 0.01), _cell("linear", 1, 10, 6.0, 1e-3, -2.0, 10.0, 0.01),
             {"target": "gmm40", "interpolation": "learned", "seed": 0, "error": "diverged"},
             _cell("learned", 1, 40, 2.5e-3, 1e-3, 0.0, 2.0, 0.9)]
    table = summarise(cells)
    torch.testing.assert_close(table["gmm40"]["linear"]["speed_t1"]["mean"], 25.0)
    got = verdicts(table)
    assert got["gmm40_gradient_flow_modes_ed_logz"] == {"per_seed": [True, True], "all_seeds": True}
    assert got["gmm40_learned_modes_ed_logz"] == {"per_seed": [False], "all_seeds": False}  # ED 2.5x its floor
    assert got["gmm40_linear_vs_ou"]["speed_ratio_t1"] == pytest.approx(12.5)
    assert got["gmm40_linear_vs_ou"]["ratio_at_least_10"] and all(got["gmm40_linear_vs_ou"]["linear_worse"].values())
    assert got["gmm40_linear_vs_ou"]["same_base_scale"]
    for c in cells:
        c["training"] = {"base_scale": 30.0 if c["interpolation"] == "linear" else 1.0}
    assert not verdicts(summarise(cells))["gmm40_linear_vs_ou"]["same_base_scale"]
