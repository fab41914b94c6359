"""Smoke test of `boltzflow reproduce two-particle` on a tiny scale: every promised output, with the right keys."""

import json

from boltzflow.experiments import two_particle
from boltzflow.io import load_npz
from boltzflow.recipes import load_recipe

ROW_KEYS = {"case", "eps", "min_r_real", "mean_r_real", "min_r_gen", "mean_r_gen", "w2_r", "w2_r_floor", "w2_x",
            "w2_x_floor", "collision_fraction_gen", "lip", "lip_inverse"}


def test_tiny_reproduction_writes_every_output(tmp_path):
    tiny = load_recipe("two-particle", "smoke").config
    out = tmp_path / "run"
    results = two_particle.run(out, tiny, progress=False, command=["boltzflow", "test"])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["switches_real"] == results["switches_real"] and "switches_gen" in on_disk
    assert [row["case"] for row in on_disk["rows"]] == [name for name, _ in two_particle.CASES]
    for row in on_disk["rows"]:
        assert ROW_KEYS <= set(row)
        assert row["lip"] >= row["lip_q999"] > 0 and row["w2_r_floor"] > 0
        ev = row["evaluation"]  # the one evaluation: the row's samples reweighted to its energy
        assert ev["weighted"] and ev["n_draws"] == 4 and ev["n_per_draw"] == 75
        assert 0 < ev["ess_fraction"]["mean"] <= 1 and len(ev["energy_histogram"]["reference"]) == 60
    assert "quadrature" in on_disk and on_disk["provenance"]["command"] == "boltzflow test"
    table = (out / "table1.md").read_text()
    assert "87.6643" in table and "unregularised" in table
    for fig in ("fig1_distances.png", "fig2_dynamics.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    for name, _ in two_particle.CASES:
        assert load_npz(out / "samples" / f"{name}_gen.npz")["x"].shape == (300, 4)
        assert load_npz(out / "samples" / f"{name}_real.npz")["x"].shape[1] == 4


def test_one_case_per_process_then_evaluation_reuses_the_rows(tmp_path):
    cfg = load_recipe("two-particle", "smoke", ["only_case=eps0.1"]).config
    out = tmp_path / "run"
    assert two_particle.run(out, cfg, progress=False)["message"].startswith("trained case eps0.1")
    assert (out / "checkpoints" / "eps0.1_nll.pt").is_file() and not (out / "results.json").exists()
    x = load_npz(out / "samples" / "eps0.1_real.npz")["x"]
    full = load_recipe("two-particle", "smoke").config
    two_particle.run(out, full, progress=False)
    assert (load_npz(out / "samples" / "eps0.1_real.npz")["x"] == x).all()  # the row's data were reused
