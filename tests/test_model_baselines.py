"""The ``model-baselines`` recipe: a grid of baseline runs over training seeds, summarised as mean ± sd."""

import json

import numpy as np
import pytest

from boltzflow.experiments import baselines, model_baselines
from boltzflow.recipes import load_recipe


def test_the_full_recipe_is_the_committed_table_s_sizes():
    targets = load_recipe("model-baselines", "full").config.targets
    assert [t.system for t in targets] == ["gmm40", "manywell32", "dw4", "lj13"]
    for t in targets:
        sc = baselines.scale_for(t.system, "full")
        assert {k: v for k, v in vars(t).items() if k != "system"} == vars(sc)


def test_smoke_grid_summarises_seeds_and_adds_seeds_without_redoing_runs(tmp_path):
    recipe = load_recipe("model-baselines", "smoke", ["methods=[\"reverse_kl\"]"])
    out = tmp_path / "grid"
    res = model_baselines.run(out, recipe.config, progress=False)
    assert [(r["system"], r["method"], r["seed"]) for r in res["runs"]] == [("gmm40", "reverse_kl", 0),
                                                                               ("gmm40", "reverse_kl", 1)]
    (summary,) = res["summary"]
    ess = [r["ess_fraction"] for r in res["runs"]]
    assert summary["ess_fraction"] == pytest.approx({"mean": np.mean(ess), "sd": np.std(ess, ddof=1), "n": 2})
    assert summary["modes_covered"]["n"] == 2 and summary["seeds"] == [0, 1]
    assert json.loads((out / "results.json").read_text())["summary"] == res["summary"]
    assert "| gmm40 | reverse_kl | 2 |" in (out / "table.md").read_text()
    direct = baselines.run(tmp_path / "direct", "gmm40", "reverse_kl", seed=1, scale="smoke", progress=False)
    assert model_baselines.headline(direct) | {"wall_seconds": 0} == res["runs"][1] | {"wall_seconds": 0}
    first = (out / "runs" / "gmm40-reverse_kl-s0" / "results.json").stat().st_mtime_ns
    more = load_recipe("model-baselines", "smoke", ["methods=[\"reverse_kl\"]", "seeds=[0, 1, 2]"]).config
    res3 = model_baselines.run(out, more, progress=False, force=True)
    assert (out / "runs" / "gmm40-reverse_kl-s0" / "results.json").stat().st_mtime_ns == first  # reused
    assert res3["summary"][0]["seeds"] == [0, 1, 2] and res3["runs"][:2] == res["runs"]


def test_bad_grids_are_refused():
    cfg = load_recipe("model-baselines", "smoke").config
    for bad, match in ((dict(seeds=[0, 0]), "without repeats"), (dict(methods=["forward_kl"]), "unknown"),
                       (dict(seeds=[-1]), ">= 0"), (dict(targets=[]), "non-empty")):
        with pytest.raises(ValueError, match=match):
            model_baselines.Config(**{**vars(cfg), **bad})
    with pytest.raises(ValueError, match="unknown system"):
        model_baselines.Target(system="nope")
    with pytest.raises(ValueError, match="dtype"):
        model_baselines.Target(dtype="float16")
