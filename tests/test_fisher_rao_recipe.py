"""`boltzflow reproduce fisher-rao` end to end at the smoke scale, one cell resumed, bad input, the verdicts."""

import json
import math

import numpy as np
import pytest
import torch

from boltzflow.cli import main
from boltzflow.experiments.fisher_rao_report import markdown_table, summarise, verdicts
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


def _cell(interp, seed, modes, ed, floor, log_z_error, speed_t1, ess, rw=None):
    cell = {"target": "gmm40", "interpolation": interp, "seed": seed, "energy_distance": ed,
            "energy_distance_floor": floor, "ess_fraction": ess, "log_z_is_error": log_z_error,
            "log_z_rate_error": 0.0, "modes_covered": modes, "n_modes": 40, "n_eval": 100, "train_cpu_s": 1.0,
            "train_wall_s": 1.0, "eval_cpu_s": 1.0, "eval_wall_s": 1.0, "speed_times": [0.0, 1.0],
            "speed": [1.0, speed_t1]}
    if rw is not None:  # reweighted distance over its floor; cells evaluated before the key lack it
        cell |= {"energy_distance_reweighted": rw * 2e-3, "energy_distance_reweighted_floor": 2e-3,
                 "energy_distance_reweighted_floor_at_ess": 6e-3}
    return cell


def test_verdicts_follow_the_issue_bars():
    cells = [_cell("gradient_flow", 0, 40, 1.5e-3, 1e-3, 0.01, 2.0, 0.9),
             _cell("gradient_flow", 1, 40, 1.9e-3, 1e-3, -0.04, 2.0, 0.8),
             _cell("linear", 0, 12, 5.0, 1e-3, -3.0, 40.0, 0.01), _cell("linear", 1, 10, 6.0, 1e-3, -2.0, 10.0, 0.01),
             {"target": "gmm40", "interpolation": "learned", "seed": 0, "error": "diverged"},
             _cell("learned", 1, 40, 2.5e-3, 1e-3, 0.0, 2.0, 0.9, rw=1.8)]
    cells[0] |= _cell("gradient_flow", 0, 40, 1.5e-3, 1e-3, 0.01, 2.0, 0.9, rw=2.5)
    table = summarise(cells)
    torch.testing.assert_close(table["gmm40"]["linear"]["speed_t1"]["mean"], 25.0)
    got = verdicts(table)
    assert got["gmm40_gradient_flow_modes_ed_logz"] == {"per_seed": [True, True], "all_seeds": True}
    assert got["gmm40_learned_modes_ed_logz"] == {"per_seed": [False], "all_seeds": False}  # ED 2.5x its floor
    assert got["gmm40_learned_modes_reweighted_ed_logz"] == {"per_seed": [True], "all_seeds": True}  # 1.8x
    assert got["gmm40_gradient_flow_modes_reweighted_ed_logz"] == {"per_seed": [False, False], "all_seeds": False}
    assert "| 1.8 (3) |" in markdown_table(table)  # reweighted ED / floor, (floor at ESS / floor)
    assert got["gmm40_linear_vs_ou"]["speed_ratio_t1"] == pytest.approx(12.5)
    assert got["gmm40_linear_vs_ou"]["ratio_at_least_10"] and all(got["gmm40_linear_vs_ou"]["linear_worse"].values())
    assert got["gmm40_linear_vs_ou"]["same_base_scale"]
    for c in cells:
        c["training"] = {"base_scale": 30.0 if c["interpolation"] == "linear" else 1.0}
    assert not verdicts(summarise(cells))["gmm40_linear_vs_ou"]["same_base_scale"]


def test_reweighted_distance_and_its_cached_floor(tmp_path):
    from boltzflow.eval.energy_distance import energy_distance
    from boltzflow.eval.sample_metrics import mean_pairwise_distance
    from boltzflow.experiments.fisher_rao_eval import FLOOR_DRAWS, reweighted_distance, weighted_floor

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(300, 2, generator=g, dtype=torch.float64)
    aa = mean_pairwise_distance(ref, ref)
    x = torch.randn(200, 2, generator=g, dtype=torch.float64) + 0.5
    log_w = torch.randn(200, generator=g, dtype=torch.float64)
    # the recipe's statistic is Szekely's D^2, twice eval.energy_distance (which halves it)
    assert reweighted_distance(x, log_w, ref, aa) == pytest.approx(2 * energy_distance(x, ref, log_w=log_w), rel=1e-10)
    # weight only on a copy of the reference: zero, whatever the far points with weight 0 are
    far = torch.cat([ref, torch.full((50, 2), 1e3, dtype=torch.float64)])
    lw = torch.cat([torch.zeros(300), torch.full((50,), -torch.inf)]).double()
    assert abs(reweighted_distance(far, lw, ref, aa)) < 1e-10  # rounding of sums of O(1) terms
    assert reweighted_distance(x, torch.full((200,), torch.nan, dtype=torch.float64), ref, aa) == math.inf
    target = get_target("gmm40")
    ref_a = target.sample(400, torch.Generator().manual_seed(5))
    aa = mean_pairwise_distance(ref_a, ref_a)
    first = weighted_floor(target, 100, ref_a, aa, tmp_path, 5)
    assert first["draws"] == FLOOR_DRAWS and first["mean"] > 0 and first["sd"] > 0
    vals = []
    for k in range(FLOOR_DRAWS):
        e = target.sample(100, torch.Generator().manual_seed(5 + 1000 + k))
        vals.append(2 * mean_pairwise_distance(e, ref_a) - mean_pairwise_distance(e, e) - aa)
    assert first["mean"] == pytest.approx(np.mean(vals), rel=1e-12)
    assert first["sd"] == pytest.approx(np.std(vals, ddof=1), rel=1e-12)
    assert (tmp_path / "floor-weighted-gmm40-100-vs-400-5.json").exists()
    assert weighted_floor(target, 100, ref_a, aa, tmp_path, 5) == first  # read back from the cache
