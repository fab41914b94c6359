"""`boltzflow reproduce smooth-flows` end to end at the smoke scale, and the Table 1 bookkeeping."""

import json
import math
import re

import numpy as np
import pytest

from boltzflow.experiments.smooth_flows_eval import summarize, table_markdown
from boltzflow.experiments.smooth_flows_md import pick_md_flows


def test_smoke_run_writes_table_md_traces_samples_and_loadable_checkpoints(tmp_path, monkeypatch):
    from boltzflow.cli import main
    from boltzflow.io import load_npz
    from boltzflow.training.checkpoint import load_flow

    out = tmp_path / "run"
    assert main(["reproduce", "smooth-flows", "--scale", "smoke", "--out", str(out), "--no-progress"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert set(r["table"]) == {"spline-k0.1-f0.001", "smooth-k0.1-f0.001", "realnvp-k0-f0"}  # + the baseline
    for run in r["runs"]:
        assert run["failed"] or all(math.isfinite(run[k]) for k in ("nll", "fme", "kld", "ess_fraction"))
        assert run["failed"] or len(run["ess_fraction_blocks"]) == 5
    for name in ("amber", "smooth", "spline"):
        md = r["md"][name]
        assert len(md["sd_per_dof_kj"]) == 2 and md["n_dof"] == 60 and len(md["total_kj"]) == 2
        assert len(md["time_ps"]) == len(md["total_kj"][0]) == 3  # 10 fs of NVE saved every 5 fs
        assert md["time_ps"][0] == pytest.approx(0.005)  # after 5 fs of Langevin
    assert r["md"]["smooth"]["cell"] == ["smooth", 0.1, 0.001]
    assert r["md"]["langevin_w2_smooth"]["w2"] > 0
    samples = load_npz(out / "samples" / "smooth-k0.1-f0.001.npz")
    assert samples["xyz"].shape == (20, 22, 3) and samples["log_prob"].shape == (20,)
    assert (out / "figures" / "nve_energy.png").stat().st_size > 0
    flow, ckpt = load_flow(r["md"]["smooth"]["checkpoint"])
    assert ckpt["flow_spec"]["kind"] == "ic_smooth" and ckpt["system"]["name"] == "alanine-dipeptide"
    baseline, ckpt = load_flow(out / "checkpoints" / "realnvp-k0-f0-r0.safetensors")
    assert ckpt["flow_spec"]["kind"] == "ic_realnvp"
    assert load_npz(out / "samples" / "realnvp-k0-f0.npz")["xyz"].shape == (20, 22, 3)
    assert re.search(r"\| ess_fraction \| realnvp \| [-+.0-9e]+ \| - \|", (out / "table.md").read_text())

    # a stopped run resumes after its last finished stage: scoring and MD are not computed again
    import boltzflow.experiments.smooth_flows as runner
    import boltzflow.experiments.smooth_flows_md as md_module

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    for module, name in ((runner, "score_run"), (md_module, "_nve"), (md_module, "_langevin_w2")):
        monkeypatch.setattr(module, name, refuse)
    (out / "results.json").unlink()
    assert main(["reproduce", "smooth-flows", "--scale", "smoke", "--out", str(out), "--no-progress"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["table"] == r["table"] and again["md"] == r["md"]
    # a stage whose saved key differs (here: its samples were deleted) is computed again
    (out / "samples" / "smooth-k0.1-f0.001.npz").unlink()
    (out / "results.json").unlink()
    with pytest.raises(AssertionError, match="ran again"):
        main(["reproduce", "smooth-flows", "--scale", "smoke", "--out", str(out), "--no-progress"])


def _run(kind, wk, wf, rep, nll, failed=False):
    return {"kind": kind, "kl_weight": wk, "force_weight": wf, "replica": rep, "failed": failed, "nll": nll,
            "fme": 2 * nll, "force_rmse": 1.0, "kld": 3.0, "ess_fraction": 0.5}


def test_summary_is_mean_and_twice_the_standard_error_over_runs_that_did_not_fail():
    runs = [_run("smooth", 0, 0, 0, 1.0), _run("smooth", 0, 0, 1, 2.0), _run("smooth", 0, 0, 2, 6.0),
            _run("smooth", 0, 0, 3, 1e9, failed=True), _run("spline", 0, 0, 0, 5.0, failed=True)]
    table = summarize(runs, [("smooth", 0, 0), ("spline", 0, 0)])
    cell = table["smooth-k0-f0"]
    assert cell["replicas"] == 4 and cell["failed"] == 1
    assert cell["nll"]["mean"] == pytest.approx(3.0)
    assert cell["nll"]["err2se"] == pytest.approx(2 * np.std([1.0, 2.0, 6.0], ddof=1) / math.sqrt(3))
    assert table["spline-k0-f0"]["nll"]["mean"] is None and table["spline-k0-f0"]["failed"] == 1
    text = table_markdown(table)
    assert "| nll | smooth | 3 ± 3.06 |" in text and "| failed | spline | 1/1 |" in text


def test_md_uses_the_smooth_flow_with_most_force_matching_and_the_plain_spline():
    keep = {c: (c, f"{c}.safetensors") for c in [("smooth", 0.1, 0.001), ("smooth", 0.0, 0.0), ("smooth", 0.0, 0.001),
                                                  ("spline", 0.1, 0.0), ("spline", 0.0, 0.0)]}
    picked = pick_md_flows(keep)
    assert picked["smooth"][2] == ("smooth", 0.0, 0.001) and picked["spline"][2] == ("spline", 0.0, 0.0)
    assert set(pick_md_flows({("smooth", 0.1, 0.0): (1, "p")})) == {"smooth"}
