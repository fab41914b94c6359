"""Model-system baselines (experiments.baselines): tiny runs of both methods, checked against closed forms.

The closed form: a flow trained on an axis-aligned Gaussian, N(m, diag(s²)) with log Z = Σ log(s √(2π)), by NLL on
its exact samples or by reverse KL, can represent the target exactly (affine couplings learn a constant shift and
scale), so after training the ESS fraction is close to 1 and log Ẑ close to log Z. Before training (standard
normal flow) neither holds, so these checks fail when training or the log weights are wrong.
"""

import json
import math

import numpy as np
import pytest
import torch
from torch import Tensor

from boltzflow.energies.base import Energy
from boltzflow.eval.evaluate import Draw
from boltzflow.experiments import baselines
from boltzflow.experiments.baselines import BaselineScale, from_flow, make_flow, prior_affine, run, to_flow
from boltzflow.experiments.baselines_eval import _wells, aggregate
from boltzflow.io import load_npz
from boltzflow.systems.base import System
from boltzflow.systems.registry import get_system
from boltzflow.training.config import TrainConfig

MEAN, STD = (2.0, -1.0), (0.5, 2.0)


class _GaussianEnergy(Energy):
    def __init__(self) -> None:
        super().__init__()
        self.event_shape = (2,)
        self.register_buffer("m", torch.tensor(MEAN, dtype=torch.float64))
        self.register_buffer("s", torch.tensor(STD, dtype=torch.float64))

    def energy(self, x: Tensor) -> Tensor:
        return 0.5 * (((x - self.m.to(x)) / self.s.to(x)) ** 2).sum(-1)


class _GaussianSystem(System):
    """N(m, diag(s²)) in 2-D with its exact sampler and log Z."""

    name = "gaussian-2d"
    event_shape = (2,)
    log_z = float(sum(math.log(s * math.sqrt(2 * math.pi)) for s in STD))

    def energy(self) -> Energy:
        return _GaussianEnergy()

    def sample_exact(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return torch.tensor(MEAN, dtype=torch.float64) + torch.tensor(STD, dtype=torch.float64) * z


def _scale(epochs: int) -> BaselineScale:
    return BaselineScale(n_layers=2, hidden=[8], n_train=2000,
                         nll=TrainConfig(epochs=epochs, batch_size=200, lr=2e-2, val_fraction=0.1),
                         reverse_kl=TrainConfig(epochs=epochs, lr=1e-2, val_fraction=0.0), kl_batch=200,
                         kl_steps=10, n_draws=4, n_per_draw=1000, n_metric=300, dtype="float64")


@pytest.mark.parametrize("method", ["nll", "reverse_kl"])
def test_gaussian_baseline_reaches_the_closed_form(tmp_path, method):
    res = run(tmp_path / method, _GaussianSystem(), method, seed=1, scale=_scale(30), progress=False)
    for name in ("results.json", "config.json", "samples.npz", "checkpoints/train.safetensors",
                 "checkpoints/metrics.jsonl"):
        assert (tmp_path / method / name).exists(), name
    draws = res["evaluation"]["draws"]
    assert len(draws["ess_fraction"]["values"]) == 4
    assert draws["ess_fraction"]["mean"] > 0.9
    assert abs(draws["log_z"]["error"]["mean"]) < 0.05
    ed = draws["energy_distance"]
    assert ed["raw"]["mean"] < ed["floor"]["mean"] + 0.05
    generic = res["evaluation"]["generic"]
    # EUBO = log Z + KL(p || q) >= log Z, and close to it for a near-exact flow (held-out exact samples)
    assert _GaussianSystem.log_z - 0.01 < generic["eubo"] < _GaussianSystem.log_z + 0.1
    samples = load_npz(tmp_path / method / "samples.npz")
    assert samples["x"].shape == (4000, 2) and samples["log_w"].shape == (4000,)
    assert np.allclose(samples["x"].mean(0), MEAN, atol=0.15) and np.allclose(samples["x"].std(0), STD, rtol=0.1)


def test_untrained_flow_fails_the_closed_form(tmp_path):
    """The checks above can fail: one epoch from the standard-normal start is far from the target."""
    scale = _scale(1)
    scale.nll = TrainConfig(epochs=1, batch_size=200, lr=1e-4, val_fraction=0.1)
    res = run(tmp_path, _GaussianSystem(), "nll", seed=1, scale=scale, progress=False)
    assert res["evaluation"]["draws"]["ess_fraction"]["mean"] < 0.5


def test_finished_run_is_returned_not_redone(tmp_path):
    first = run(tmp_path, _GaussianSystem(), "nll", seed=0, scale=_scale(2), progress=False)
    before = (tmp_path / "results.json").stat().st_mtime_ns
    again = run(tmp_path, _GaussianSystem(), "nll", seed=0, scale=_scale(2), progress=False)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert (tmp_path / "results.json").stat().st_mtime_ns == before


def test_gmm40_smoke_has_mode_metrics(tmp_path):
    res = run(tmp_path, "gmm40", "reverse_kl", seed=0, scale="smoke", progress=False)
    draws = res["evaluation"]["draws"]
    for key in ("raw", "reweighted"):
        n = draws["modes"][key]["n_covered"]["values"]
        assert all(1 <= v <= 40 for v in n)
        assert all(0 <= v <= 1 for v in draws["modes"][key]["tv"]["values"])
    assert all(math.isfinite(v) for v in draws["log_z"]["error"]["values"])
    assert draws["energy_distance"]["floor"]["mean"] >= 0


def test_dw4_smoke_lives_on_the_com_free_subspace(tmp_path):
    res = run(tmp_path, "dw4", "nll", seed=0, scale="smoke", progress=False)
    w2 = res["evaluation"]["draws"]["particle_w2"]
    for key in ("distance_w2", "distance_w2_floor", "energy_w2", "energy_w2_floor"):
        assert all(math.isfinite(v) and v >= 0 for v in w2[key]["values"]), key
    assert res["evaluation"]["n_heldout"] == 10_000
    x = load_npz(tmp_path / "samples.npz")["x"]
    assert x.shape[1:] == (4, 2)
    assert np.abs(x.mean(1)).max() < 1e-5  # centre of mass removed (float32 storage)
    assert math.isfinite(res["evaluation"]["generic"]["nll_reference"])


def test_manywell_wells_of_exact_samples_match_the_deep_well_mass():
    system = get_system("manywell32")
    x = system.sample_exact(4000, torch.Generator().manual_seed(1))
    ref = system.sample_exact(4000, torch.Generator().manual_seed(2))
    log_w = torch.randn(4000, generator=torch.Generator().manual_seed(3)) * 0.1
    out = _wells(system, Draw(x, log_w), ref)
    for key in ("deep_fraction", "deep_fraction_reweighted", "deep_fraction_exact"):  # P(x > 0) = 0.8443
        assert abs(out[key] - 0.8443) < 0.01, key  # sd of the share of 64000 coordinates: 0.0014
    assert 1000 < out["n_modes_visited"] <= 4000


def test_particle_coordinates_round_trip():
    system = get_system("lj13")
    x = system.reference("mcmc").load()[:5]
    y = to_flow(system, torch.as_tensor(x))
    assert y.shape == (5, 36)
    assert torch.allclose(from_flow(system, y), torch.as_tensor(x), atol=1e-6)


def test_prior_affine_is_the_exact_mixture_moments():
    system = get_system("gmm40")
    loc, scale = prior_affine(system)
    x = system.sample_exact(200_000, torch.Generator().manual_seed(3))
    assert torch.allclose(loc, x.mean(0), atol=0.15)
    assert torch.allclose(scale, x.std(0), rtol=0.01)
    loc, scale = prior_affine(get_system("dw4"))
    assert loc.shape == scale.shape == (6,) and bool((scale == 1).all())


def test_make_flow_leaves_global_rng_alone():
    state = torch.get_rng_state()
    flow_a, _ = make_flow(get_system("dw4"), BaselineScale(n_layers=2, hidden=[4]), 5, torch.float64)
    assert torch.equal(torch.get_rng_state(), state)
    flow_b, _ = make_flow(get_system("dw4"), BaselineScale(n_layers=2, hidden=[4]), 5, torch.float64)
    assert all(torch.equal(a, b) for a, b in zip(flow_a.state_dict().values(), flow_b.state_dict().values(),
                                                  strict=True))


def test_aggregate_mean_sd_over_draws():
    out = aggregate([{"a": 1.0, "b": {"c": 2.0}}, {"a": 3.0, "b": {"c": 2.0}}])
    assert out["a"]["mean"] == 2.0 and out["a"]["sd"] == pytest.approx(math.sqrt(2))
    assert out["b"]["c"] == {"mean": 2.0, "sd": 0.0, "values": [2.0, 2.0]}


def test_bad_method_is_refused(tmp_path):
    with pytest.raises(ValueError, match="method"):
        run(tmp_path / "x", "gmm40", "forward_kl", scale="smoke", progress=False)
    assert not (tmp_path / "x").exists()


def test_cli_bad_system_one_line(tmp_path, capsys):
    rc = baselines.main(["no-such-system", "nll", "--out", str(tmp_path / "o"), "--scale", "smoke"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no-such-system" in err
    assert not (tmp_path / "o").exists()
