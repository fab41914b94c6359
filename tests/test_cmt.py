"""CMT annealing, its harness and baselines: closed forms, counting, resuming, and a full annealing to the W2 floor."""

import json
import math

import pytest
import torch
from torch import nn

from boltzflow.errors import BoltzflowError
from boltzflow.eval.wasserstein import w2
from boltzflow.flows.base import StandardNormal
from boltzflow.flows.core import Compose, Transform
from boltzflow.flows.flow import Flow
from boltzflow.flows.realnvp import RealNVPConfig, realnvp
from boltzflow.plots_cmt import ess_vs_evaluations, learned_schedule
from boltzflow.training.annealing import (
    AnnealingConfig,
    ReverseKLConfig,
    ReverseKLMethod,
    TemperatureAnnealing,
    geometric_ladder,
)
from boltzflow.training.cmt.anneal import CMT, CMTConfig, next_exponents
from boltzflow.training.cmt.harness import BudgetExceeded, CountedTarget, FitConfig, evaluate, fill_buffer, fit_weighted
from boltzflow.training.cmt.runner import planned_cost, run_method
from boltzflow.training.md_nll import MDNLLConfig, MDNLLMethod


class Mixture2D:
    """A 2-D Gaussian mixture: reduced energy u = -log p (normalised, log Z = 0) and an exact sampler."""

    means = torch.tensor([[-2.5, 0.0], [2.5, 0.5]])
    sds = torch.tensor([0.6, 0.8])
    weights = torch.tensor([0.3, 0.7])

    def __call__(self, x):
        d = x[..., None, :] - self.means
        lp = -0.5 * (d**2).sum(-1) / self.sds**2 - 2 * torch.log(self.sds) - math.log(2 * math.pi)
        return -torch.logsumexp(lp + torch.log(self.weights), -1)

    def sample(self, n, generator):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.means[k] + self.sds[k, None] * torch.randn(n, 2, generator=generator)


def small_flow(seed=0, hidden=(8,), n_layers=2):
    torch.manual_seed(seed)
    return realnvp(RealNVPConfig(dim=2, n_layers=n_layers, hidden=list(hidden)))


def test_full_cmt_annealing_reaches_the_w2_noise_floor():
    target = Mixture2D()
    flow = small_flow(seed=1, hidden=(16, 16), n_layers=4)
    cfg = CMTConfig(n_steps=6, n_samples=1000, eps_tr=1.0, eps_ent=0.5,
                    fit=FitConfig(steps=100, batch_size=256, lr=5e-3))
    res = run_method(CMT(cfg), flow, CountedTarget(target, budget=6000), seed=1)
    assert res.evals == 6000
    assert res.history[0]["lam"] > 0  # the first step is a constrained projection, not a jump to the target
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        x = flow.sample(1000, g).x
    floors = torch.tensor([w2(target.sample(1000, g), target.sample(1000, g)) for _ in range(4)])
    # at the floor: within three standard deviations of W2 between two exact samples of the same size
    # (a flow with the mode weights 0.5/0.5 instead of 0.3/0.7 would score about 2.2)
    assert w2(x, target.sample(1000, g)) < float(floors.mean() + 3 * floors.std())


def test_exponent_recursion_matches_repeated_closed_form_steps():
    x = torch.linspace(-10, 10, 2001)
    log_q0 = -0.5 * (x / 3) ** 2
    log_p = torch.logsumexp(torch.stack([-0.5 * ((x + 2) / 0.5) ** 2, -0.5 * ((x - 2) / 0.7) ** 2]), 0)
    log_q, a, b = log_q0.clone(), 1.0, 0.0
    for lam, eta in [(2.0, 0.5), (0.7, 1.3), (0.0, 0.4), (5.0, 0.0)]:
        log_q = (lam * log_q + log_p) / (1 + lam + eta)  # q_{i+1} ∝ q_i^{λ/s} p̃^{1/s}
        a, b = next_exponents(a, b, lam, eta)
        path = a * log_q0 + b * log_p
        assert torch.allclose(torch.softmax(log_q, 0), torch.softmax(path, 0), atol=1e-14)


def test_fill_buffer_drops_and_counts_nonfinite_energies_and_caps_high_ones():
    def energy(x):
        u = 0.5 * (x**2).sum(-1)
        u = torch.where(x[:, 0] > 1.0, torch.full_like(u, math.nan), u)
        return torch.where(x[:, 0] < -1.5, torch.full_like(u, math.inf), u + 1e5 * (x[:, 1] > 2.0))

    flow = Flow(StandardNormal(2), Compose([]))
    target = CountedTarget(energy, cap_high=100.0)
    buf = fill_buffer(flow, target, 5000, torch.Generator().manual_seed(0), chunk=700)
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(min(700, 5000 - s), 2, generator=g) for s in range(0, 5000, 700)])
    expected_bad = int(((z[:, 0] > 1.0) | (z[:, 0] < -1.5)).sum())
    assert target.evals == 5000 and buf.n_drawn == 5000
    assert buf.n_nonfinite == expected_bad and len(buf.x) == 5000 - expected_bad
    assert bool(torch.isfinite(buf.u).all()) and float(buf.u.max()) < 100 + math.log1p(1e5 + 10)
    assert torch.allclose(buf.log_q, -0.5 * (buf.x**2).sum(-1) - math.log(2 * math.pi))


def test_counted_target_refuses_to_exceed_its_budget():
    target = CountedTarget(lambda x: x.sum(-1), budget=100)
    target.energy(torch.zeros(60, 2))
    with pytest.raises(BudgetExceeded, match="budget of 100"):
        target.energy(torch.zeros(41, 2))
    assert target.evals == 60


def test_run_refuses_a_plan_over_budget_before_training():
    flow = small_flow()
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    method = CMT(CMTConfig(n_steps=3, n_samples=100))
    with pytest.raises(BoltzflowError, match="needs 300 energy evaluations"):
        run_method(method, flow, CountedTarget(Mixture2D(), budget=299), seed=0)
    assert all(torch.equal(before[k], v) for k, v in flow.state_dict().items())


class LearnableAffine(Transform):
    """x = loc + exp(log_scale) z with trainable loc and log_scale, shape (D,)."""

    def __init__(self, dim):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, z):
        return self.loc + z * self.log_scale.exp(), self.log_scale.sum().expand(z.shape[:-1])

    def inverse(self, x):
        return (x - self.loc) * (-self.log_scale).exp(), (-self.log_scale.sum()).expand(x.shape[:-1])


def test_weighted_fit_of_a_gaussian_flow_recovers_the_weighted_moments():
    # the weighted-NLL optimum in the Gaussian family is the weighted mean and (biased) weighted variance
    g = torch.Generator().manual_seed(2)
    x = torch.randn(20_000, 1, generator=g)
    w = torch.softmax(1.5 * x[:, 0] - 0.5 * x[:, 0] ** 2, 0)  # tilts N(0, 1) to N(0.75, 0.5)
    mean = (w * x[:, 0]).sum()
    sd = ((w * (x[:, 0] - mean) ** 2).sum()).sqrt()
    affine = LearnableAffine(1)
    flow = Flow(StandardNormal(1), affine)
    stats = fit_weighted(flow, x, w, FitConfig(steps=300, batch_size=2048, lr=0.03), g)
    assert stats.n_skipped == 0 and stats.nll_last < stats.nll_first
    assert abs(affine.loc.item() - float(mean)) < 0.02
    assert abs(affine.log_scale.exp().item() - float(sd)) < 0.02


def test_evaluate_gives_ess_one_and_log_z_of_an_exact_flow():
    flow = Flow(StandardNormal(2), Compose([]))
    out = evaluate(flow, lambda x: 0.5 * (x**2).sum(-1), 3000, torch.Generator().manual_seed(0), chunk=1000)
    assert out["eval_ess_fraction"] == pytest.approx(1.0, abs=1e-12)
    assert out["eval_log_z"] == pytest.approx(math.log(2 * math.pi), abs=1e-12)  # ∫ exp(-|x|²/2) dx in 2-D


def test_cmt_step_meets_the_trust_region_on_its_buffer_and_logs_the_schedule():
    flow = small_flow(seed=3)
    method = CMT(CMTConfig(n_steps=2, n_samples=2000, eps_tr=0.05, eps_ent=0.02, fit=FitConfig(steps=3)))
    target = CountedTarget(Mixture2D())
    rec = method.step(flow, target, 0, torch.Generator().manual_seed(0))
    assert target.evals == 2000
    assert rec["lam"] > 0 and abs(rec["kl"] - 0.05) < 1e-8
    assert rec["delta_h"] <= 0.02 + 1e-8 and (rec["eta"] == 0 or abs(rec["delta_h"] - 0.02) < 1e-8)
    s = 1 + rec["lam"] + rec["eta"]
    assert rec["a"] == pytest.approx(rec["lam"] / s) and rec["b"] == pytest.approx(1 / s)
    assert rec["temperature_factor"] == pytest.approx(s)


def test_geometric_ladder_is_ta_bg_alanine_ladder():
    kelvin = [round(300 * t, 2) for t in geometric_ladder(4.0, 9)]
    assert kelvin == [1028.69, 881.84, 755.95, 648.04, 555.52, 476.22, 408.24, 349.96, 300.0]


def tiny_methods():
    fit = FitConfig(steps=4, batch_size=32, lr=1e-2)
    return {
        "cmt": lambda: CMT(CMTConfig(n_steps=3, n_samples=200, eps_tr=0.3, eps_ent=0.2, fit=fit)),
        "reverse-kl": lambda: ReverseKLMethod(ReverseKLConfig(n_blocks=3, iters=4, batch_size=32, lr=1e-2)),
        "ta-bg": lambda: TemperatureAnnealing(AnnealingConfig(
            reverse_kl=ReverseKLConfig(n_blocks=1, iters=4, batch_size=32, lr=1e-2, temperature_factor=3.0),
            ladder=[2.0, 1.0], n_final=0, n_samples=200, fit=fit)),
        "md-nll": lambda: MDNLLMethod(MDNLLConfig(n_steps=3, iters=4, batch_size=32, lr=1e-2),
                                      Mixture2D().sample(300, torch.Generator().manual_seed(2)), "exact"),
    }


class Interrupted(Exception):
    pass


class StopAt:
    """A method that raises at step ``k`` (as if the job were killed after step k - 1's checkpoint)."""

    def __init__(self, method, k):
        self._method, self._k = method, k

    def __getattr__(self, name):
        return getattr(self._method, name)

    def step(self, flow, target, step, generator):
        if step == self._k:
            raise Interrupted
        return self._method.step(flow, target, step, generator)


@pytest.mark.parametrize("name", ["cmt", "reverse-kl", "ta-bg", "md-nll"])
def test_a_killed_run_resumes_bit_identically_with_the_same_budget(tmp_path, name):
    make = tiny_methods()[name]
    energy = Mixture2D()

    def evaluator(flow, step):
        return evaluate(flow, energy, 100, torch.Generator().manual_seed(1000 + step))

    full_flow = small_flow(seed=4)
    full = run_method(make(), full_flow, CountedTarget(energy, budget=planned_cost(make())), 9, tmp_path / "a",
                      evaluator)
    assert full.evals == planned_cost(make()) and full.steps_run == 3

    flow = small_flow(seed=4)
    with pytest.raises(Interrupted):
        run_method(StopAt(make(), 2), flow, CountedTarget(energy), 9, tmp_path / "b", evaluator)
    resumed_flow = small_flow(seed=5)  # other weights: the checkpoint must replace them
    resumed = run_method(make(), resumed_flow, CountedTarget(energy), 9, tmp_path / "b", evaluator)
    assert resumed.steps_run == 1 and resumed.evals == full.evals
    for k, v in full_flow.state_dict().items():
        assert torch.equal(v, resumed_flow.state_dict()[k]), k
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(resumed.history) == drop(full.history)
    assert len(list((tmp_path / "b").glob("state-*.safetensors"))) == 1
    assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 3


def test_resume_refuses_a_different_configuration(tmp_path):
    energy = Mixture2D()
    fit = FitConfig(steps=2, batch_size=16)
    run_method(CMT(CMTConfig(n_steps=1, n_samples=50, fit=fit)), small_flow(), CountedTarget(energy), 0, tmp_path)
    with pytest.raises(BoltzflowError, match="another configuration"):
        run_method(CMT(CMTConfig(n_steps=1, n_samples=60, fit=fit)), small_flow(), CountedTarget(energy), 0, tmp_path)


def test_figures_draw_every_method_and_panel():
    history = [
        {"step": i, "lam": lam, "eta": eta, "a": 0.5, "b": 0.5, "temperature_factor": 2.0, "entropy": 1.0,
         "kl": 0.1, "delta_h": 0.05, "buffer_ess_fraction": 0.3, "target_ess_fraction": 0.1}
        for i, (lam, eta) in enumerate([(2.0, 1.0), (1.0, 0.0), (0.0, 0.0)])
    ]
    fig = learned_schedule(history, temperature_kelvin=300.0)
    assert len(fig.axes) == 6
    fig = ess_vs_evaluations({"cmt": ([1e3, 2e3], [[0.1, 0.5], [0.2, 0.6]]), "reverse-kl": ([1e3, 2e3], [0.1, 0.2])})
    assert len(fig.axes[0].get_lines()) == 2
