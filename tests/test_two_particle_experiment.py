"""Smoke test of `boltzflow reproduce two-particle` on a tiny scale: every promised output, with the right keys."""

import json

from boltzflow.experiments import two_particle
from boltzflow.flows import RealNVPConfig
from boltzflow.io import load_npz
from boltzflow.training.config import TrainConfig

ROW_KEYS = {"case", "eps", "min_r_real", "mean_r_real", "min_r_gen", "mean_r_gen", "w2_r", "w2_r_floor", "w2_x",
            "w2_x_floor", "collision_fraction_gen", "lip", "lip_inverse"}


def test_tiny_reproduction_writes_every_output(tmp_path, monkeypatch):
    tiny = two_particle.TwoParticleScale(
        n_ref_singular=500, n_ref_regularised=400, n_gen=300,
        flow=RealNVPConfig(dim=4, n_layers=2, hidden=[8]), train=TrainConfig(epochs=2, batch_size=128),
        mcmc_chains=100, mcmc_burn_in=200, mcmc_thin=2, w2_n=100, w2_draws=2, n_lipschitz=200,
        langevin_chains=2, langevin_time=2.0, langevin_dt=5e-3,
    )
    monkeypatch.setattr(two_particle, "scale", lambda name: tiny)
    out = tmp_path / "run"
    results = two_particle.run(out, "quick", progress=False, command=["boltzflow", "test"])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["switches_real"] == results["switches_real"] and "switches_gen" in on_disk
    assert [row["case"] for row in on_disk["rows"]] == [name for name, _ in two_particle.CASES]
    for row in on_disk["rows"]:
        assert ROW_KEYS <= set(row)
        assert row["lip"] >= row["lip_q999"] > 0 and row["w2_r_floor"] > 0
    assert "quadrature" in on_disk and on_disk["provenance"]["command"] == "boltzflow test"
    table = (out / "table1.md").read_text()
    assert "87.6643" in table and "unregularised" in table
    for fig in ("fig1_distances.png", "fig2_dynamics.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    for name, _ in two_particle.CASES:
        assert load_npz(out / "samples" / f"{name}_gen.npz")["x"].shape == (300, 4)
        assert load_npz(out / "samples" / f"{name}_real.npz")["x"].shape[1] == 4
