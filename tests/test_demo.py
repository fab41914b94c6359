"""``boltzflow demo``: its numbers are computed from its own samples, which are what ``boltzflow sample`` writes."""

from __future__ import annotations

import json

import numpy as np
import torch

from boltzflow.cli import main
from boltzflow.eval.weights import ess_fraction
from boltzflow.io import load_npz


def test_demo_writes_samples_results_and_figures_it_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "-n", "300", "--draws", "2", "--seed", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("samples.npz", "results.json", "figures/free_energy_phi.png", "figures/ramachandran.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert str(out / name) in printed, name  # the summary says where each file is
    assert main(["sample", "alanine-dipeptide-bg", "-n", "300", "--seed", "3", "--out", str(tmp_path / "s.npz")]) == 0
    demo, sample = load_npz(out / "samples.npz"), load_npz(tmp_path / "s.npz")
    assert demo.keys() == sample.keys()
    for key in demo:
        np.testing.assert_array_equal(demo[key], sample[key])
    results = json.loads((out / "results.json").read_text())
    ess = results["evaluation"]["ess_fraction"]
    assert results["seeds"] == [3, 4] and len(ess["values"]) == 2
    assert ess["values"][0] == ess_fraction(torch.as_tensor(demo["log_w"]))
    assert f"{100 * ess['mean']:.1f} ± {100 * ess['sd']:.1f} %" in printed
    pops = results["evaluation"]["populations"]
    assert abs(sum(p["mean"] for p in pops.values()) - 1.0) < 1e-9
