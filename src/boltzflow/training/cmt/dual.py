"""The 2-D dual of one constrained-mass-transport step (paper 002 eq. 9-11 and 16; research notes §1.2-1.4).

One CMT step projects the current model q_i towards the unnormalised target p̃ under a trust region and an
entropy-decay constraint::

    q_{i+1} = argmin_q KL(q || p)  s.t.  KL(q || q_i) <= eps_tr,  H(q_i) - H(q) <= eps_ent.

Stationarity of the Lagrangian gives the closed-form intermediate (notes §1.2; the parsed paper's exponent on
q_i is wrong, λ/(1+λ+η) is right)::

    q_{i+1} ∝ q_i^{λ/s} p̃^{1/s},   s = 1 + λ + η,

and the multipliers maximise the concave dual (with the **plus** sign of notes §1.2; the parsed paper's minus
sign violates the entropy constraint)::

    g(λ, η) = -s log Z(λ, η) - λ eps_tr + η (H(q_i) - eps_ent),   λ, η >= 0.

Everything is estimated from points x_n with masses v_n (Σ v_n = 1: v_n = 1/N for samples of q_i, or q_i(x_n) dx
for a quadrature grid) holding log q_i(x_n) and log p̃(x_n). With ``ℓ_n = (log p̃_n - (1 + η) log q_i,n) / s``,
``log Z = logsumexp(ℓ + log v)`` and ``w̄ = softmax(ℓ + log v)`` (the weights of q_{i+1} on the points):

* ∂g/∂λ = KL(q_{i+1} || q_i) - eps_tr,     KL = Σ w̄ ℓ - log Z;
* ∂g/∂η = ΔH - eps_ent,                    ΔH = H(q_i) - H(q_{i+1}) = H(q_i) + Σ w̄ (log q_i + ℓ) - log Z;
* Hessian = -Cov_w̄([ℓ, log q_i + ℓ]) / s   (derived by differentiating the two gradients; negative
  semidefinite, hence concavity).

Solver choice: projected Newton on the exact 2×2 Hessian, with the bound λ, η >= 0 handled by an active set
(a multiplier sitting at 0 with a non-positive gradient is held at exactly 0: an inactive constraint) and a
backtracking line search on g. The problem is two-dimensional and every g, gradient and Hessian costs one pass
over the buffer, so Newton's handful of quadratically convergent iterations is the cheapest way to reach the
gradient tolerance (1e-10 nats) at which the constraint checks of the tests are meaningful; a quasi-Newton
method in (log λ, log η) could never return an exact 0 for an inactive constraint, and derivative-free
coordinate searches need hundreds of passes. Newton is also invariant to the scale of λ, which ranges over
decades (λ grows as the model approaches the target). Hand-written because SciPy's bounded solvers are
quasi-Newton or trust-region methods that do not take a user Hessian together with bounds in 2-D any more
simply than these thirty lines.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class DualTerms(NamedTuple):
    """The dual and its derivatives at one (λ, η).

    Attributes:
        g: dual value (without the constant log Z of p̃).
        grad: (∂g/∂λ, ∂g/∂η), shape (2,).
        hessian: shape (2, 2), negative semidefinite.
        kl: KL(q_{i+1} || q_i) estimate, nats.
        delta_h: H(q_i) - H(q_{i+1}) estimate, nats.
        log_z: log Z_{i+1}(λ, η) estimate.
        weights: self-normalised weights of q_{i+1} on the points, shape (N,).
    """

    g: float
    grad: Tensor
    hessian: Tensor
    kl: float
    delta_h: float
    log_z: float
    weights: Tensor


class DualSolution(NamedTuple):
    """Solved multipliers of one CMT step and the estimates at the solution.

    Attributes:
        lam: trust-region multiplier λ >= 0 (exactly 0 when the trust region is inactive).
        eta: entropy multiplier η >= 0 (exactly 0 when the entropy constraint is inactive or absent).
        kl: KL(q_{i+1} || q_i) estimate, nats (= eps_tr when λ > 0).
        delta_h: H(q_i) - H(q_{i+1}) estimate, nats (= eps_ent when η > 0, <= eps_ent otherwise).
        entropy: H(q_i) estimate, ``-Σ v log q_i``, nats.
        log_z: log Z_{i+1}(λ, η) = log Σ v exp(ℓ).
        ess: Kish effective sample size of the weights, ``1 / Σ w̄²`` (a count).
        ess_fraction: ess / N.
        kkt_residual: largest violation of the optimality conditions (|∂g| for a positive multiplier, the
            positive part of ∂g for one at 0), nats; this is the check that KL ≈ eps_tr and ΔH <= eps_ent.
        converged: ``kkt_residual <= tol``.
        iterations: Newton iterations used.
    """

    lam: float
    eta: float
    kl: float
    delta_h: float
    entropy: float
    log_z: float
    ess: float
    ess_fraction: float
    kkt_residual: float
    converged: bool
    iterations: int


def intermediate_log_weights(log_q: Tensor, log_p: Tensor, lam: float, eta: float) -> Tensor:
    """``ℓ_n = (log p̃_n - (1 + η) log q_i,n) / (1 + λ + η)`` = log(q_{i+1} Z / q_i) at the points, shape (N,).

    Args:
        log_q: log q_i(x_n), shape (N,).
        log_p: log p̃(x_n) = -u(x_n), shape (N,).
        lam: λ >= 0.
        eta: η >= 0.
    """
    return (log_p - (1.0 + eta) * log_q) / (1.0 + lam + eta)


def dual_terms(
    log_q: Tensor, log_p: Tensor, log_v: Tensor, lam: float, eta: float, eps_tr: float, eps_ent: float
) -> DualTerms:
    """g, its gradient and Hessian at (λ, η), all in log space (see the module docstring for the formulas).

    Args:
        log_q: log q_i at the points, shape (N,), float64.
        log_p: log p̃ at the points, shape (N,), float64.
        log_v: log masses of the points, shape (N,), logsumexp = 0.
        lam: λ >= 0.
        eta: η >= 0.
        eps_tr: trust-region radius, nats.
        eps_ent: allowed entropy decrease, nats (``math.inf`` for no entropy constraint).
    """
    s = 1.0 + lam + eta
    ell = intermediate_log_weights(log_q, log_p, lam, eta)
    log_z = torch.logsumexp(ell + log_v, 0)
    w = torch.softmax(ell + log_v, 0)
    entropy = -(log_v.exp() * log_q).sum()
    m = log_q + ell
    e_ell, e_m = (w * ell).sum(), (w * m).sum()
    kl = e_ell - log_z
    delta_h = entropy + e_m - log_z
    c_ell, c_m = ell - e_ell, m - e_m
    cov = torch.stack([(w * c_ell * c_ell).sum(), (w * c_ell * c_m).sum(), (w * c_m * c_m).sum()])
    hessian = -torch.stack([cov[:2], cov[1:]]) / s
    ent_term = 0.0 if eta == 0.0 else eta * (float(entropy) - eps_ent)
    g = -s * float(log_z) - lam * eps_tr + ent_term
    grad = torch.stack([kl - eps_tr, delta_h - eps_ent])
    return DualTerms(g, grad, hessian, float(kl), float(delta_h), float(log_z), w)


def _free(theta: Tensor, grad: Tensor, active: Tensor) -> Tensor:
    """Multipliers free to move: allowed at all, and positive or pushed up by the gradient."""
    return active & ((theta > 0) | (grad > 0))


def _kkt_residual(theta: Tensor, grad: Tensor, active: Tensor) -> float:
    res = torch.where(theta > 0, grad.abs(), grad.clamp_min(0.0))
    return float(torch.where(active, res, torch.zeros_like(res)).max())


def _newton_direction(t: DualTerms, free: Tensor) -> Tensor:
    """Ascent direction ``(-H_FF)^{-1} grad_F`` on the free multipliers (0 on the others), Levenberg-damped."""
    d = torch.zeros_like(t.grad)
    idx = torch.nonzero(free).flatten()
    neg_h = -t.hessian[idx][:, idx]
    damp = 1e-12 * float(neg_h.diagonal().abs().sum()) + 1e-300
    eye = torch.eye(len(idx), dtype=neg_h.dtype)
    d[idx] = torch.linalg.solve(neg_h + damp * eye, t.grad[idx])
    return d


def _validate(log_q: Tensor, log_p: Tensor, log_v: Tensor | None, eps_tr: float, eps_ent: float | None) -> None:
    if log_q.ndim != 1 or log_q.shape != log_p.shape or log_q.numel() == 0:
        raise ValueError(f"log_q and log_p must be non-empty 1-D of one shape, got {tuple(log_q.shape)}, "
                         f"{tuple(log_p.shape)}")
    if log_v is not None and log_v.shape != log_q.shape:
        raise ValueError(f"log_v must have shape {tuple(log_q.shape)}, got {tuple(log_v.shape)}")
    for name, t in (("log_q", log_q), ("log_p", log_p)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} holds non-finite values; drop those points before solving the dual")
    if not (math.isfinite(eps_tr) and eps_tr > 0):
        raise ValueError(f"eps_tr must be a positive number, got {eps_tr}")
    if eps_ent is not None and not eps_ent > 0:
        raise ValueError(f"eps_ent must be positive or None (no entropy constraint), got {eps_ent}")


def solve_dual(
    log_q: Tensor,
    log_p: Tensor,
    eps_tr: float,
    eps_ent: float | None,
    log_v: Tensor | None = None,
    init: tuple[float, float] = (1.0, 1.0),
    tol: float = 1e-10,
    max_iter: int = 100,
) -> DualSolution:
    """Maximise the CMT dual over λ, η >= 0 by projected Newton (module docstring).

    Args:
        log_q: log q_i(x_n) of the buffer points, shape (N,), finite.
        log_p: log p̃(x_n) = -u(x_n) (after any energy cap), shape (N,), finite.
        eps_tr: trust-region radius ε_tr > 0, nats.
        eps_ent: entropy decay ε_ent > 0, nats, or None for the trust-region-only (geometric) step, η = 0.
        log_v: log masses of the points (normalised here); None means equal masses 1/N (samples of q_i).
        init: starting (λ, η), e.g. the previous step's solution (negative entries are clipped to 0).
        tol: gradient tolerance of the optimality conditions, nats.
        max_iter: Newton iteration cap.

    Returns:
        a :class:`DualSolution`; ``converged`` is False when ``max_iter`` was reached first.
    """
    _validate(log_q, log_p, log_v, eps_tr, eps_ent)
    log_q, log_p = log_q.detach().double().cpu(), log_p.detach().double().cpu()
    lv = log_q.new_full(log_q.shape, -math.log(log_q.numel())) if log_v is None else log_v.detach().double().cpu()
    lv = lv - torch.logsumexp(lv, 0)
    e_ent = math.inf if eps_ent is None else float(eps_ent)
    active = torch.tensor([True, eps_ent is not None])
    theta = torch.tensor([max(init[0], 0.0), max(init[1], 0.0) if eps_ent is not None else 0.0], dtype=torch.float64)

    def terms(th: Tensor) -> DualTerms:
        t = dual_terms(log_q, log_p, lv, float(th[0]), float(th[1]), float(eps_tr), e_ent)
        return t._replace(grad=torch.where(active, t.grad, torch.zeros_like(t.grad)))

    t, iterations = terms(theta), 0
    while _kkt_residual(theta, t.grad, active) > tol and iterations < max_iter:
        new, t = _line_search(theta, t, _bounded(theta, _newton_direction(t, _free(theta, t.grad, active))), terms)
        iterations += 1
        if torch.equal(new, theta):  # no ascent possible at this precision
            break
        theta = new
    return _solution(theta, t, log_q, lv, active, tol, iterations)


def _bounded(theta: Tensor, d: Tensor, growth: float = 10.0) -> Tensor:
    """The Newton direction shortened (same direction) so that no multiplier grows beyond ``growth * (θ + 1)``.

    When the buffer's weights sit on a handful of points (a molecule's first steps: energies spread over
    thousands of kT), the Hessian is nearly singular and the raw Newton step is astronomically long; bounding it
    lets λ climb geometrically, a decade per iteration, to the scale where the Hessian is informative again.
    """
    limit = growth * (theta + 1.0)
    ratio = float(torch.where(d > 0, d / limit, torch.zeros_like(d)).max())
    return d / ratio if ratio > 1.0 else d


def _line_search(theta: Tensor, t: DualTerms, d: Tensor, terms) -> tuple[Tensor, DualTerms]:
    """Backtracking along the projected Newton arc until g rises (Armijo), or the full step once the predicted
    rise is below the resolution of g (the quadratic-convergence regime, where comparing g values is noise)."""
    predicted = float(t.grad @ d)
    step = 1.0
    for _ in range(60):
        new = (theta + step * d).clamp_min(0.0)
        nt = terms(new)
        if predicted <= 1e-13 * (1.0 + abs(t.g)) or nt.g >= t.g + 1e-4 * float(t.grad @ (new - theta)):
            return new, nt
        step *= 0.5
    return theta, t


def _solution(
    theta: Tensor, t: DualTerms, log_q: Tensor, lv: Tensor, active: Tensor, tol: float, iterations: int
) -> DualSolution:
    residual = _kkt_residual(theta, t.grad, active)
    ess = float(1.0 / (t.weights**2).sum())
    entropy = float(-(lv.exp() * log_q).sum())
    return DualSolution(
        float(theta[0]), float(theta[1]), t.kl, t.delta_h, entropy, t.log_z, ess, ess / log_q.numel(),
        residual, residual <= tol, iterations,
    )
