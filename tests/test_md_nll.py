"""The data-trained baseline md-nll (issues 13 and 14): no energy evaluation, no evaluation frame in training,
a better flow than the initial one on a Gaussian, and one-line errors for bad settings."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from boltzflow.cli import main
from boltzflow.experiments.cmt_report import reference_samples, reference_split, training_samples
from boltzflow.flows.realnvp import RealNVPConfig, realnvp
from boltzflow.recipes import load_recipe
from boltzflow.systems.registry import get_system
from boltzflow.training.cmt.harness import CountedTarget, evaluate
from boltzflow.training.cmt.runner import run_method
from boltzflow.training.md_nll import MDNLLConfig, MDNLLMethod

COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64) * 0.25
MEAN = torch.tensor([1.5, -0.5], dtype=torch.float64)


def gaussian_energy(x):
    """u = -log N(x; MEAN, COV), so log Z = 0; x (n, 2) -> (n,)."""
    return -torch.distributions.MultivariateNormal(MEAN.to(x), COV.to(x)).log_prob(x)


def gaussian_samples(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MEAN + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(COV).T


def flow64(seed=0):
    torch.manual_seed(seed)
    return realnvp(RealNVPConfig(dim=2, n_layers=4, hidden=[16, 16])).double()


def test_md_nll_spends_no_energy_evaluation():
    def energy(x):
        raise AssertionError("md-nll evaluated the energy")

    method = MDNLLMethod(MDNLLConfig(n_steps=2, iters=3, batch_size=16), gaussian_samples(100, 1))
    target = CountedTarget(energy, budget=0)
    res = run_method(method, flow64(), target, seed=0)
    assert res.evals == 0 and target.evals == 0 and [r["evals"] for r in res.history] == [0, 0]
    assert all(math.isfinite(r["nll_last"]) for r in res.history)


def test_nll_drops_and_ess_rises_on_a_2d_gaussian():
    flow = flow64(seed=1)
    held_out = gaussian_samples(2000, 2)

    def scores():
        with torch.no_grad():
            nll = float(-flow.log_prob(held_out).mean())
        ess = evaluate(flow, gaussian_energy, 2000, torch.Generator().manual_seed(3))["eval_ess_fraction"]
        return nll, ess

    nll0, ess0 = scores()
    method = MDNLLMethod(MDNLLConfig(n_steps=4, iters=50, batch_size=128, lr=1e-2), gaussian_samples(2000, 4))
    run_method(method, flow, CountedTarget(gaussian_energy, budget=0), seed=5)
    nll1, ess1 = scores()
    entropy = 0.5 * float(torch.logdet(2 * math.pi * math.e * COV))  # the lowest NLL any model can reach
    assert nll1 < nll0 - 0.5 and nll1 < entropy + 0.1, (nll0, nll1, entropy)
    assert ess1 > max(0.8, ess0 + 0.3), (ess0, ess1)


@pytest.mark.parametrize(("n_frames", "n_reference"), [(10, 3), (2400, 1200), (2400, 500), (7, 7), (7, 20), (5, 1)])
def test_reference_split_is_disjoint_and_covers_every_frame(n_frames, n_reference):
    picked, rest = reference_split(n_frames, n_reference)
    assert len(picked) == min(n_reference, n_frames) and len(np.intersect1d(picked, rest)) == 0
    assert np.array_equal(np.sort(np.concatenate([picked, rest])), np.arange(n_frames))
    assert picked[0] == 0 and (len(picked) == 1 or picked[-1] == n_frames - 1)


def _rows(x):
    return {bytes(r) for r in x.numpy()}


def test_md_training_frames_are_not_evaluation_frames():
    cfg = load_recipe("cmt-tetrapeptide", "quick").config
    system = get_system(cfg.system)
    ev_x = reference_samples(system, cfg.evaluation, 0)
    train_x, source = training_samples(system, cfg, 0)
    assert len(ev_x) == 1200 and len(train_x) == 1200 and "1200 of 2400 frames" in source
    assert not _rows(ev_x) & _rows(train_x)  # no frame in both sets
    assert len(_rows(ev_x) | _rows(train_x)) == 2400


def test_exact_training_samples_are_fresh_and_not_the_evaluation_samples():
    cfg = load_recipe("cmt-gmm40", "smoke").config
    system = get_system(cfg.system)
    ev_x = reference_samples(system, cfg.evaluation, 0)
    train_x, _ = training_samples(system, cfg, 0)
    assert train_x.shape == (cfg.md_nll.n_train, 2) and not _rows(ev_x) & _rows(train_x)
    assert not torch.equal(train_x, training_samples(system, cfg, 1)[0])  # the seed moves them


def test_no_training_frame_left_is_an_error_naming_n_reference():
    cfg = load_recipe("cmt-tetrapeptide", "smoke").config
    cfg = dataclasses.replace(cfg, evaluation=dataclasses.replace(cfg.evaluation, n_reference=2400))
    with pytest.raises(ValueError, match="n_reference = 2400 takes all 2400 frames"):
        training_samples(get_system(cfg.system), cfg, 0)


@pytest.mark.parametrize(("setting", "word"), [("md_nll.lr=-1", "lr"), ("md_nll.steps=0", "steps"),
                                               ("md_nll.batch_size=0", "batch_size"),
                                               ("evaluation.n_reference=2400", "n_reference")])
def test_bad_md_nll_settings_are_one_line(tmp_path, capsys, setting, word):
    out = tmp_path / "run"
    rc = main(["reproduce", "cmt-tetrapeptide", "--scale", "smoke", "--out", str(out), "--no-progress",
               "--set", 'methods=["md-nll"]', "--set", setting])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc != 0 and len(err) == 1 and word in err[0] and not out.exists(), err
