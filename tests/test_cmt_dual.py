"""The CMT dual against quadrature, a direct constrained minimisation, finite differences and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax, logsumexp

from boltzflow.training.cmt.dual import dual_terms, intermediate_log_weights, solve_dual


def log_normal(x, mean, sd):
    """log N(x; mean, sd² I), x of shape (..., d) with mean (d,) and scalar sd."""
    d = x.shape[-1]
    return -0.5 * (((x - mean) / sd) ** 2).sum(-1) - d * math.log(sd * math.sqrt(2 * math.pi))


def log_mixture(x, means, sds, weights, shift=3.0):
    """Unnormalised log p̃ = log Σ_k w_k N(x; μ_k, σ_k²) + shift (so log Z = shift)."""
    parts = [math.log(w) + log_normal(x, torch.tensor(m), s) for m, s, w in zip(means, sds, weights, strict=True)]
    return torch.logsumexp(torch.stack(parts), 0) + shift


def grid_1d(n=4001, half=12.0):
    x = torch.linspace(-half, half, n)[:, None]
    return x, float(x[1, 0] - x[0, 0])


def grid_2d(n=241, half=10.0):
    t = torch.linspace(-half, half, n)
    return torch.cartesian_prod(t, t), float(t[1] - t[0]) ** 2


def problem(dim):
    """(log q_i, log p̃, log cell area) on a grid: q_i a broad Gaussian, p̃ a two-mode mixture."""
    if dim == 1:
        x, area = grid_1d()
        lp = log_mixture(x, [[-2.0], [2.0]], [0.5, 0.7], [0.3, 0.7])
        return log_normal(x, torch.tensor([0.0]), 2.0), lp, area
    x, area = grid_2d()
    lp = log_mixture(x, [[-2.0, 0.0], [2.0, 1.0]], [0.6, 0.8], [0.3, 0.7])
    return log_normal(x, torch.tensor([0.0, 0.5]), 2.0), lp, area


def quadrature_constraints(lq, lp, area, lam, eta):
    """KL(q_{i+1} || q_i) and H(q_i) - H(q_{i+1}) by direct quadrature of the closed-form intermediate."""
    lq = lq - torch.logsumexp(lq, 0) - math.log(area)  # normalise q_i on the grid
    s = 1 + lam + eta
    lnext = (lam * lq + lp) / s
    lnext = lnext - torch.logsumexp(lnext, 0) - math.log(area)
    q, qn = lq.exp(), lnext.exp()
    kl = float((qn * (lnext - lq)).sum() * area)
    delta_h = float(-(q * lq).sum() * area + (qn * lnext).sum() * area)
    return kl, delta_h


# (eps_tr, eps_ent, λ active, η active): one case per regime, so no regime goes untested
REGIMES = [(0.1, 0.05, True, True), (0.1, 1.0, True, False), (1.0, 0.05, False, True), (50.0, 50.0, False, False)]


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize(("eps_tr", "eps_ent", "lam_active", "eta_active"), REGIMES)
def test_solved_step_meets_the_constraints_by_quadrature(dim, eps_tr, eps_ent, lam_active, eta_active):
    lq, lp, area = problem(dim)
    sol = solve_dual(lq, lp, eps_tr, eps_ent, log_v=lq + math.log(area))
    assert sol.converged and sol.kkt_residual < 1e-9
    assert (sol.lam > 0) == lam_active and (sol.eta > 0) == eta_active
    kl, delta_h = quadrature_constraints(lq, lp, area, sol.lam, sol.eta)
    if lam_active:
        assert abs(kl - eps_tr) < 1e-6
    else:
        assert sol.lam == 0.0 and kl <= eps_tr + 1e-6
    if eta_active:
        assert abs(delta_h - eps_ent) < 1e-6
    else:
        assert sol.eta == 0.0 and delta_h <= eps_ent + 1e-6
    assert abs(sol.kl - kl) < 1e-6 and abs(sol.delta_h - delta_h) < 1e-6


def test_inactive_constraints_give_the_target_and_its_log_z():
    lq, lp, area = problem(1)
    sol = solve_dual(lq, lp, 50.0, 50.0, log_v=lq + math.log(area))
    assert sol.lam == 0.0 and sol.eta == 0.0
    # λ = η = 0: q_{i+1} = p̃ / Z and Z_{i+1} = ∫ p̃ = e^3 (the mixture's shift)
    assert abs(sol.log_z - 3.0) < 1e-6


def test_entropy_only_step_is_the_tempered_target():
    lq, lp, area = problem(1)
    sol = solve_dual(lq, lp, 1.0, 0.05, log_v=lq + math.log(area))
    assert sol.lam == 0.0 and sol.eta > 0
    # λ = 0: q_{i+1} ∝ p̃^{1/(1+η)}, whatever q_i is
    w = torch.softmax(intermediate_log_weights(lq, lp, sol.lam, sol.eta) + lq, 0)
    tempered = torch.softmax(lp / (1 + sol.eta), 0)
    assert torch.allclose(w, tempered, atol=1e-12)


def test_trust_region_only_path_has_eta_zero():
    lq, lp, area = problem(2)
    sol = solve_dual(lq, lp, 0.1, None, log_v=lq + math.log(area))
    kl, _ = quadrature_constraints(lq, lp, area, sol.lam, sol.eta)
    assert sol.eta == 0.0 and sol.lam > 0 and abs(kl - 0.1) < 1e-6


def _direct_minimisation(lq, lp, eps_tr, eps_ent):
    """min_q KL(q || p) s.t. KL(q || q_i) <= eps_tr, H(q_i) - H(q) <= eps_ent over probability vectors q on the
    grid points (softmax parameters, SLSQP, analytic gradients); returns q and SLSQP's multipliers (λ, η)."""
    lq, lpn = lq - logsumexp(lq), lp - logsumexp(lp)
    h_i = -(np.exp(lq) * lq).sum()

    def term(value, dvalue):  # F(q) and its gradient in the softmax parameters, q ⊙ (∂F/∂q - Σ q ∂F/∂q)
        def fn(theta):
            lqq = log_softmax(theta)
            q, g = np.exp(lqq), dvalue(lqq)
            return value(q, lqq), q * (g - (q * g).sum())

        return fn

    obj = term(lambda q, lqq: (q * (lqq - lpn)).sum(), lambda lqq: lqq - lpn + 1)
    c_tr = term(lambda q, lqq: eps_tr - (q * (lqq - lq)).sum(), lambda lqq: -(lqq - lq + 1))
    c_ent = term(lambda q, lqq: eps_ent - h_i - (q * lqq).sum(), lambda lqq: -(lqq + 1))
    cons = [{"type": "ineq", "fun": lambda t, c=c: c(t)[0], "jac": lambda t, c=c: c(t)[1]} for c in (c_tr, c_ent)]
    res = minimize(lambda t: obj(t)[0], lq.copy(), jac=lambda t: obj(t)[1], method="SLSQP", constraints=cons,
                   options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success, res.message
    return np.exp(log_softmax(res.x)), res.multipliers


@pytest.mark.parametrize(("dim", "eps_tr", "eps_ent"), [(1, 0.1, 0.05), (2, 0.1, 0.05), (1, 1.0, 0.05)])
def test_closed_form_intermediate_equals_direct_constrained_minimisation(dim, eps_tr, eps_ent):
    # a coarse grid (25 and 6 x 6 points), so SLSQP runs over every value of a discretised density
    if dim == 1:
        x = torch.linspace(-8.0, 8.0, 25)[:, None]
        lq, lp = log_normal(x, torch.tensor([0.0]), 2.0), log_mixture(x, [[-2.0], [2.0]], [0.5, 0.7], [0.3, 0.7])
    else:
        t = torch.linspace(-7.0, 7.0, 6)
        x = torch.cartesian_prod(t, t)
        lq = log_normal(x, torch.tensor([0.0, 0.5]), 2.0)
        lp = log_mixture(x, [[-2.0, 0.0], [2.0, 1.0]], [1.0, 1.2], [0.3, 0.7])
    sol = solve_dual(lq, lp, eps_tr, eps_ent, log_v=lq - torch.logsumexp(lq, 0))
    closed = torch.softmax((sol.lam * lq + lp) / (1 + sol.lam + sol.eta), 0).numpy()
    direct, multipliers = _direct_minimisation(lq.numpy(), lp.numpy(), eps_tr, eps_ent)
    assert np.abs(closed - direct).sum() / 2 < 1e-6  # total variation between the two answers
    # SLSQP's Lagrange multipliers are the dual's (this pins the + sign of the entropy term in g)
    assert np.allclose(multipliers, [sol.lam, sol.eta], rtol=1e-4, atol=1e-6)


def test_intermediate_is_a_stationary_point_of_the_lagrangian():
    lq, lp, area = problem(2)
    sol = solve_dual(lq, lp, 0.1, 0.05, log_v=lq + math.log(area))
    s = 1 + sol.lam + sol.eta
    lnext = (sol.lam * lq + lp) / s
    lnext = lnext - torch.logsumexp(lnext, 0)
    lqn = lq - torch.logsumexp(lq, 0)
    # δL/δq = log(q/p) + 1 + λ (log(q/q_i) + 1) + η (log q + 1): constant on the support at the optimum
    dl = (lnext - lp) + sol.lam * (lnext - lqn) + sol.eta * lnext
    assert float(dl.max() - dl.min()) < 1e-9


def test_gradient_and_hessian_match_finite_differences():
    lq, lp, area = problem(1)
    lv = lq + math.log(area)
    lv = lv - torch.logsumexp(lv, 0)
    lam, eta, h = 0.7, 0.4, 1e-5
    t = dual_terms(lq, lp, lv, lam, eta, 0.1, 0.05)
    for j, (dl, de) in enumerate([(h, 0.0), (0.0, h)]):
        plus = dual_terms(lq, lp, lv, lam + dl, eta + de, 0.1, 0.05)
        minus = dual_terms(lq, lp, lv, lam - dl, eta - de, 0.1, 0.05)
        assert abs((plus.g - minus.g) / (2 * h) - float(t.grad[j])) < 1e-7
        assert torch.allclose((plus.grad - minus.grad) / (2 * h), t.hessian[:, j], atol=1e-6)
    assert bool((torch.linalg.eigvalsh(t.hessian) <= 1e-12).all())  # concave


def test_monte_carlo_dual_converges_to_the_quadrature_answer():
    lq, lp, area = problem(1)
    quad = solve_dual(lq, lp, 0.1, 0.05, log_v=lq + math.log(area))

    def mean_error(n):
        errs = []
        for seed in range(8):
            x = 2.0 * torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))
            lps = log_mixture(x, [[-2.0], [2.0]], [0.5, 0.7], [0.3, 0.7])
            mc = solve_dual(log_normal(x, torch.tensor([0.0]), 2.0), lps, 0.1, 0.05)
            assert mc.converged
            errs.append(abs(mc.lam / quad.lam - 1) + abs(mc.eta / quad.eta - 1) + abs(mc.log_z - quad.log_z))
        return float(np.mean(errs))

    small, large = mean_error(1_000), mean_error(100_000)
    assert large < 0.4 * small  # the error falls with N (1/sqrt(N) predicts 0.1)
    assert large < 0.06


def test_high_dimensional_buffer_with_large_multiplier():
    # 30-D: q_i = N(0, I), p̃ = N(0.3, 0.8² I): the log-weights spread over tens of nats and λ runs large
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20_000, 30, generator=g)
    lq, lp = log_normal(x, torch.zeros(30), 1.0), log_normal(x, torch.full((30,), 0.3), 0.8)
    sol = solve_dual(lq, lp, 0.05, 0.5)
    assert sol.converged and sol.lam > 1 and abs(sol.kl - 0.05) < 1e-8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps_tr": 0.0}, "eps_tr"),
        ({"eps_ent": -1.0}, "eps_ent"),
        ({"log_q": torch.tensor([0.0, math.nan])}, "log_q"),
        ({"log_p": torch.tensor([0.0, math.inf])}, "log_p"),
        ({"log_v": torch.zeros(3)}, "log_v"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {"log_q": torch.zeros(2), "log_p": torch.zeros(2), "eps_tr": 0.1, "eps_ent": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        solve_dual(**args)
