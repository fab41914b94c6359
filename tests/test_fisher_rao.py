"""Learned Boltzmann curves: exact checks on the closed-form OU path of a Gaussian mixture (float64)."""

import math

import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.eval.teleport import metric_speed_1d, ou_path_gaussian_mixture, sampled_metric_speed
from boltzflow.eval.wasserstein import w2
from boltzflow.eval.weights import ess_fraction, log_partition_estimate
from boltzflow.flows.cnf import CNF, IsotropicNormal, rademacher
from boltzflow.training.fisher_rao import (
    BoltzmannCurve,
    FisherRaoModel,
    build_model,
    continuity_residual,
    gradient_flow_velocity,
)
from boltzflow.training.fisher_rao_fit import (
    FitConfig,
    TrajectorySource,
    box_source,
    fit_curve,
    log_z_from_rate,
    mixed_source,
    noised_box_source,
    sample_curve,
)
from boltzflow.training.fisher_rao_gmm import ExactOUPath, GaussianMixture
from boltzflow.training.fisher_rao_nets import GradientVelocity, TimeMLP, TimeScalar

SIGMA0 = 1.3


def small_gmm(dim=2):
    means = torch.tensor([[-2.0, 1.0, 0.5], [2.5, 0.5, -1.0], [0.0, -3.0, 1.5]], dtype=torch.float64)[:, :dim]
    return GaussianMixture([0.5, 0.3, 0.2], means, [0.6, 1.0, 1.4])


def box_points(n, dim, seed=0, t_min=0.0):
    g = torch.Generator().manual_seed(seed)
    t, x = box_source([-5.0] * dim, [5.0] * dim)(n, g)
    return t_min + (1 - t_min) * t, x


def test_exact_path_meets_both_ends():
    gmm = small_gmm()
    path = ExactOUPath(gmm, SIGMA0)
    _, x = box_points(50, 2)
    torch.testing.assert_close(path.energy(0.0, x), 0.5 * (x**2).sum(-1) / SIGMA0**2)
    torch.testing.assert_close(path.energy(1.0, x), gmm.energy(x))


@pytest.mark.parametrize("t", [0.2, 0.7, 1.0])
def test_exact_velocity_is_the_ou_probability_flow(t):
    path = ExactOUPath(small_gmm(3), SIGMA0)
    _, x = box_points(40, 3)
    generic = gradient_flow_velocity(path.energy, SIGMA0)(torch.tensor(t), x)
    torch.testing.assert_close(path.velocity(t, x), generic.detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_exact_residual_vanishes(dim):
    path = ExactOUPath(small_gmm(dim), SIGMA0)
    t, x = box_points(400, dim, t_min=1e-3)
    r = continuity_residual(path.energy, path.velocity, path.log_z_rate, t, x).detach()
    assert float(r.abs().max()) < 1e-9
    # the residual is not trivially small: a wrong C or a wrong field shows up at full size
    r_c = continuity_residual(path.energy, path.velocity, lambda s: path.log_z_rate(s) + 0.1, t, x).detach()
    torch.testing.assert_close(r_c, torch.full_like(r_c, 0.1))
    r_v = continuity_residual(path.energy, lambda s, y: 1.1 * path.velocity(s, y), path.log_z_rate, t, x).detach()
    assert float(r_v.abs().mean()) > 0.1


def test_log_z_rate_is_minus_mean_time_derivative():
    gmm = small_gmm()
    path = ExactOUPath(gmm, SIGMA0)
    g = torch.Generator().manual_seed(1)
    for t in (0.3, 0.8):
        n = 100_000
        x = t * gmm.sample(n, g) + math.sqrt(1 - t**2) * SIGMA0 * torch.randn(n, 2, generator=g)
        tt = torch.full((n,), t, requires_grad=True)
        (df_dt,) = torch.autograd.grad(path.energy(tt, x).sum(), tt)
        mean, se = -float(df_dt.mean()), float(df_dt.std()) / math.sqrt(n)
        assert abs(mean - float(path.log_z_rate(torch.tensor(t)))) < 5 * se


def test_linear_curve_gaussian_closed_form():
    # rho_D = N(m, s^2 I): the linear curve is Gaussian with precision lam_t and mean mu_t, moved by the affine field
    m, s, d = torch.tensor([1.5, -0.5]), 0.7, 2
    target = GaussianMixture([1.0], m[None], [s])
    curve = BoltzmannCurve(target.energy, SIGMA0)

    def lam(t):
        return (1 - t) / SIGMA0**2 + t / s**2

    def mu(t):
        return (t / s**2 / lam(t)).unsqueeze(-1) * m

    def velocity(t, x):
        dlam = -1 / SIGMA0**2 + 1 / s**2
        dmu = (1 / s**2 / lam(t) - t / s**2 * dlam / lam(t) ** 2).unsqueeze(-1) * m
        return dmu - (0.5 * dlam / lam(t)).unsqueeze(-1) * (x - mu(t))

    def log_z(t):
        c_d = d / 2 * math.log(2 * math.pi * s**2)
        const = t * (m**2).sum() / (2 * s**2) - 0.5 * lam(t) * (mu(t) ** 2).sum(-1) + t * c_d
        return d / 2 * torch.log(2 * math.pi / lam(t)) - const

    def log_z_rate(t):
        with torch.enable_grad():
            tt = t.detach().requires_grad_(True)
            (rate,) = torch.autograd.grad(log_z(tt).sum(), tt)
        return rate

    t, x = box_points(300, 2)
    r = continuity_residual(curve.energy, velocity, log_z_rate, t, x).detach()
    assert float(r.abs().max()) < 1e-10


def test_hutchinson_residual_is_unbiased():
    model = build_model("learned", small_gmm().energy, 2, base_scale=SIGMA0, hidden=(16, 16))
    t, x = box_points(3, 2, seed=4)
    exact = continuity_residual(model.energy, model.velocity, model.log_z_rate, t, x).detach()
    reps = 20_000
    tr, xr = t.repeat(reps), x.repeat(reps, 1)
    noise = rademacher(xr.shape, xr, torch.Generator().manual_seed(5))
    est = continuity_residual(model.energy, model.velocity, model.log_z_rate, tr, xr, noise).detach()
    est = est.reshape(reps, 3)
    se = est.std(0) / math.sqrt(reps)
    assert bool((se > 0).all()) and bool(((est.mean(0) - exact).abs() < 5 * se).all())


@pytest.mark.parametrize("schedule", ["linear", "quadratic"])
def test_gradient_flow_velocity_of_the_learned_curve(schedule):
    gmm = small_gmm()
    model = build_model("gradient_flow", gmm.energy, 2, base_scale=SIGMA0, hidden=(16, 16), schedule=schedule)
    assert model.interpolation == "gradient_flow"
    _, x = box_points(20, 2)
    for t in (0.3, 0.9):
        generic = gradient_flow_velocity(model.energy, SIGMA0)(torch.tensor(t), x).detach()
        torch.testing.assert_close(model.velocity(t, x).detach(), generic, rtol=1e-9, atol=1e-9)
    # both ends of the curve, and a velocity that is regular at t = 0
    torch.testing.assert_close(model.energy(0.0, x), 0.5 * (x**2).sum(-1) / SIGMA0**2)
    torch.testing.assert_close(model.energy(1.0, x), gmm.energy(x))
    x = x.requires_grad_(True)
    (grad_phi,) = torch.autograd.grad(model.curve.phi(0.0, x).sum(), x)
    (grad_fd,) = torch.autograd.grad(gmm.energy(x).sum(), x)
    v0 = -(SIGMA0**2) * grad_phi if schedule == "quadratic" else x - SIGMA0**2 * (grad_fd + grad_phi)
    torch.testing.assert_close(model.velocity(0.0, x).detach(), v0.detach())


def test_ode_samples_from_the_exact_field_reach_the_target():
    gmm = small_gmm()
    exact = FisherRaoModel(ExactOUPath(gmm, SIGMA0), ExactOUPath(gmm, SIGMA0).log_z_rate)
    g = torch.Generator().manual_seed(2)
    n = 1500
    out = sample_curve(exact, gmm.energy, 2, n, g, steps=100)
    floor = w2(gmm.sample(n, g), gmm.sample(n, g))
    assert w2(out.x, gmm.sample(n, g)) < 1.25 * floor
    # the log-density along the ODE is exact too: the weights are all ~1 and log Z = 0
    assert ess_fraction(out.log_w) > 0.999
    assert abs(log_partition_estimate(out.log_w).log_z) < 1e-3
    assert abs(log_z_from_rate(exact, 2)) < 1e-12


def test_sampled_speed_matches_the_exact_1d_speed():
    gmm = GaussianMixture([0.8, 0.2], torch.tensor([[0.0], [6.0]]), [1.0, 1.0])
    path = ExactOUPath(gmm, 1.0)
    times = [0.5, 0.75, 1.0]
    out = CNF(path.velocity, IsotropicNormal(1), steps=50).sample(20_000, torch.Generator().manual_seed(3), times)
    sampled = sampled_metric_speed(path.velocity, out.times, out.path)
    exact = [metric_speed_1d(ou_path_gaussian_mixture([0.8, 0.2], [0.0, 6.0], [1.0, 1.0]), t, -12, 18) for t in times]
    torch.testing.assert_close(sampled[1:], torch.tensor(exact), rtol=0.03, atol=0.0)


def field_errors(model, path, gmm, seed=7):
    g = torch.Generator().manual_seed(seed)
    t, x = box_points(2000, 2, seed=seed)
    r = continuity_residual(model.energy, model.velocity, model.log_z_rate, t, x).detach()
    tt = torch.rand(4000, generator=g)
    xt = tt[:, None] * gmm.sample(4000, g) + (1 - tt[:, None] ** 2).sqrt() * SIGMA0 * torch.randn(4000, 2, generator=g)
    err = (model.velocity(tt, xt).detach() - path.velocity(tt, xt)).pow(2).sum(-1).mean()
    return float(r.pow(2).mean()), float(err / path.velocity(tt, xt).pow(2).sum(-1).mean())


def test_the_residual_fixes_the_field_only_up_to_a_rho_free_part():
    # w = J grad chi / rho_t has div(rho_t w) = 0 in 2-D: v + w solves the same equation, a free network may keep w
    gmm = small_gmm()
    path = ExactOUPath(gmm, SIGMA0)

    def extra(t, x):
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            chi = torch.exp(-0.5 * ((xg - 1.0) ** 2).sum(-1) + path.log_density(t, xg))
            (g,) = torch.autograd.grad(chi.sum(), xg, create_graph=True)
        return torch.stack([-g[:, 1], g[:, 0]], -1) / path.log_density(t, xg).exp().unsqueeze(-1)

    t, x = box_points(300, 2, t_min=0.05)
    v2 = lambda s, y: path.velocity(s, y) + extra(s, y)  # noqa: E731
    r = continuity_residual(path.energy, v2, path.log_z_rate, t, x).detach()
    assert float(r.abs().max()) < 1e-8
    assert float(extra(t, x).detach().norm(dim=-1).max()) > 0.5


def test_training_from_scratch_converges_to_the_exact_field():
    gmm = small_gmm()
    path = ExactOUPath(gmm, SIGMA0)
    model = FisherRaoModel(path, TimeScalar(hidden=(16,)), GradientVelocity(2, (64, 64), x_scale=3.0)).double()
    before = field_errors(model, path, gmm)
    cfg = FitConfig(steps=1500, batch_size=256, lr=3e-3, lr_final=1e-4)
    history = fit_curve(model, box_source([-5.0, -5.0], [5.0, 5.0]), cfg, torch.Generator().manual_seed(0))
    after = field_errors(model, path, gmm)
    assert history.loss[-1] < history.loss[0] / 10
    assert after[0] < before[0] / 20, (before, after)  # residual
    # relative L2(rho_t) error of the field (a free network stalls near 0.5: the test above)
    assert after[1] < before[1] / 5, (before, after)
    # log Z_D = log Z_0 + int C dt: exactly 0 here; an untrained C gives about c0 = 2.36
    assert abs(log_z_from_rate(model, 2)) < 0.1


def test_bad_input():
    with pytest.raises(ValueError, match="interpolation"):
        build_model("geodesic", small_gmm().energy, 2)
    with pytest.raises(ValueError, match="box"):
        box_source([1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="velocity_form"):
        build_model("linear", small_gmm().energy, 2, velocity_form="curl")
    with pytest.raises(ValueError, match="schedule"):
        build_model("learned", small_gmm().energy, 2, schedule="cubic")
    model = build_model("linear", lambda x: x.sum(-1) * math.nan, 2, hidden=(8,))
    with pytest.raises(BoltzflowError, match="learning rate"):
        fit_curve(model, box_source([-1.0] * 2, [1.0] * 2), FitConfig(steps=3), torch.Generator().manual_seed(0))


def test_point_sources():
    g = torch.Generator().manual_seed(0)
    t, x = box_source([-1.0, 0.0], [1.0, 3.0])(2000, g)
    assert t.shape == (2000,) and x.shape == (2000, 2)
    assert bool((x[:, 0].abs() <= 1).all() & (x[:, 1] >= 0).all() & (x[:, 1] <= 3).all())
    assert bool((t >= 0).all() & (t <= 1).all())
    t, x = noised_box_source([-10.0] * 2, [10.0] * 2, base_scale=2.0)(40_000, g)
    early, late = x[t < 0.02], x[t > 0.98]
    assert abs(float(early.std()) - 2.0) < 0.15  # the base N(0, 4 I) at t = 0 ...
    assert abs(float(late.std()) - 20 / math.sqrt(12)) < 0.3  # ... the uniform box at t = 1
    t, x = mixed_source(box_source([5.0], [6.0]), box_source([-6.0], [-5.0]), 0.25)(8, g)
    assert int((x > 0).sum()) == 2 and x.shape == (8, 1)
    with pytest.raises(ValueError, match="fraction"):
        mixed_source(box_source([0.0], [1.0]), box_source([0.0], [1.0]), 1.5)


def test_trajectory_source_follows_the_model_and_drops_escapees():
    gmm = small_gmm()
    exact = FisherRaoModel(ExactOUPath(gmm, 1.0), ExactOUPath(gmm, 1.0).log_z_rate)
    source = TrajectorySource(exact, [-8.0] * 2, [8.0] * 2, n_paths=2000, steps=20, refresh=5)
    g = torch.Generator().manual_seed(1)
    t, x = source(20_000, g)
    end = x[t == 1.0]
    floor = w2(gmm.sample(end.shape[0], g), gmm.sample(end.shape[0], g))
    assert w2(end, gmm.sample(end.shape[0], g)) < 1.3 * floor  # the points at t = 1 follow the target
    runaway = FisherRaoModel(ExactOUPath(gmm, 1.0), TimeScalar(), TimeMLP(2, 2, (4,), out_scale=1e4)).double()
    t, x = TrajectorySource(runaway, [-1.0] * 2, [1.0] * 2, n_paths=50, steps=5)(100, g)
    assert bool((x.abs() <= 1).all())  # points leaving the box are dropped (here: all but t = 0 ones, or the box)
