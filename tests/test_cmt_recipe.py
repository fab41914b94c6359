"""The cmt-* recipes end to end (issue 14): one harness, equal budgets, the table, figures and samples, and resume."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from boltzflow.cli import main
from boltzflow.eval.weights import ess_fraction
from boltzflow.experiments import cmt, cmt_report
from boltzflow.io import load_npz
from boltzflow.recipes import load_recipe
from boltzflow.systems.registry import get_system
from boltzflow.training.cmt.anneal import CMT

METHODS = ["cmt", "reverse-kl", "ta-bg", "md-nll"]


def _run(name, out, *extra):
    return main(["reproduce", name, "--scale", "smoke", "--out", str(out), "--no-progress", *extra])


def _check_common(out, budget):
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == METHODS and (out / "recipe.toml").is_file()
    for name, m in res["methods"].items():
        # the same budget for every energy-trained method: all of it is spent, up to less than one step of it;
        # the data-trained md-nll spends none
        assert (m["evals"] == 0) if name == "md-nll" else (budget - 1000 < m["evals"] <= budget), (name, m["evals"])
        assert m["history"][-1]["evals"] == m["evals"] and "eval_ess_fraction" in m["history"][-1]
        assert len(m["evaluation"]["ess_fraction"]["values"]) == 4
    table = (out / "table.md").read_text().splitlines()
    assert [row.split("|")[1].strip() for row in table[2:6]] == ["CMT", "reverse KL", "TA-BG", "MD NLL"]
    assert res["methods"]["md-nll"]["training_data"]["training_energy_evaluations"] == 0
    return res, table


def test_gmm40_smoke_writes_the_table_figures_and_samples_that_recompute_the_ess(tmp_path):
    out = tmp_path / "run"
    assert _run("cmt-gmm40", out) == 0
    res, table = _check_common(out, 6000)
    assert "log Z error" in table[0] and "modes covered" in table[0] and "energy distance" in table[0]
    for fig in ("ess_vs_evaluations.png", "learned_schedule.png"):
        assert (out / "figures" / fig).read_bytes()[:4] == b"\x89PNG"
    cfg = load_recipe("cmt-gmm40", "smoke").config
    for rec in res["methods"]["cmt"]["history"]:  # the solved step meets its constraints on its buffer
        assert rec["kl"] <= cfg.cmt.eps_tr + 1e-6 and rec["delta_h"] <= cfg.cmt.eps_ent + 1e-6
        assert rec["lam"] >= 0 and rec["eta"] >= 0 and 0 <= rec["a"] <= 1 and 0 <= rec["b"] <= 1
    system = get_system("gmm40")
    for name, m in res["methods"].items():  # anyone can recompute the ESS from the saved x and log_prob
        s = load_npz(out / "samples" / f"{name}.npz")
        assert s["x"].shape == (cfg.evaluation.n_samples, 2) and np.isfinite(s["log_prob"]).all()
        u = system.flat_energy()(torch.as_tensor(s["x"], dtype=torch.float64))
        mine = ess_fraction(-u - torch.as_tensor(s["log_prob"]))
        assert mine == pytest.approx(m["evaluation"]["ess_fraction"]["values"][0], rel=1e-3)
        modes = m["modes_per_draw"]
        assert modes["n_modes"] == 40 and len(modes["covered"]) == 4


@pytest.fixture()
def no_figures(monkeypatch):
    """Skip rendering PNGs (seconds each) but record that every figure was made."""
    made = []
    monkeypatch.setattr(cmt_report, "save", lambda fig, path: made.append(path.name))
    return made


@pytest.mark.parametrize("name", ["cmt-manywell32", "cmt-alanine", "cmt-tetrapeptide"])
def test_every_cmt_recipe_runs_end_to_end(name, tmp_path, no_figures):
    out = tmp_path / "run"
    assert _run(name, out) == 0
    res, table = _check_common(out, load_recipe(name, "smoke").config.budget)
    assert sorted(no_figures) == ["ess_vs_evaluations.png", "learned_schedule.png"]
    system = get_system(res["system"])
    s = load_npz(out / "samples" / "cmt.npz")
    assert s["x"].shape[1] == system.dim and s["log_prob"].shape == s["u"].shape
    if system.temperature_kelvin is None:
        assert "log Z error" in table[0] and "Ram TV" not in table[0]
        assert res["methods"]["cmt"]["evaluation"]["log_z"]["exact"] == pytest.approx(system.log_z)
    else:  # molecules: Ramachandran TV against the MD reference (used only for evaluation) and basin populations
        assert "Ram TV" in table[0] and "αL %" in table[0]
        ev = res["methods"]["cmt"]["evaluation"]
        assert 0 <= ev["ramachandran_tv"] <= 1 and math.isfinite(ev["eubo"])
        umbrella = res["methods"]["cmt"]["alpha_l"]["umbrella_population"]
        assert (umbrella is not None) == (name == "cmt-alanine")
        scan = res["methods"]["cmt"]["prior_scan"]  # the recipes' data-free prior: energy scans, counted and noted
        assert scan["n_evaluations"] == 121 * (system.dim - 6) and scan["n_wide_torsions"] >= 2
        assert f"energy scans of the PDB structure: {scan['n_evaluations']} energy evaluations" in "\n".join(table)


def test_a_killed_run_resumes_at_its_last_step_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch, no_figures):
    cfg = dataclasses.replace(load_recipe("cmt-gmm40", "smoke").config, methods=["cmt"])
    whole = cmt.run(tmp_path / "whole", cfg, seed=3, progress=False)
    real = CMT.step

    def killed_at_4(self, flow, target, step, generator):
        if step == 4:
            raise KeyboardInterrupt
        return real(self, flow, target, step, generator)

    monkeypatch.setattr(CMT, "step", killed_at_4)
    with pytest.raises(KeyboardInterrupt):
        cmt.run(tmp_path / "killed", cfg, seed=3, progress=False)
    assert not (tmp_path / "killed" / "results.json").exists()
    monkeypatch.setattr(CMT, "step", real)
    again = cmt.run(tmp_path / "killed", cfg, seed=3, progress=False)
    a, b = whole["methods"]["cmt"], again["methods"]["cmt"]
    assert b["timing"]["steps_run_this_session"] == len(b["history"]) - 4
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in m["history"]] for m in (a, b)]
    assert strip[0] == strip[1]
    assert a["evaluation"]["ess_fraction"]["values"] == b["evaluation"]["ess_fraction"]["values"]


def test_a_budget_that_pays_for_no_step_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run("cmt-gmm40", out, "--set", "budget=999") != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "budget 999 pays for no" in err[0] and not out.exists()
