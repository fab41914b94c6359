"""One CMT annealing step and the CMT method (paper 002 Alg. 1; research notes §1.3-1.5).

Step i, from the current flow q̂_i:

1. draw N samples x_n ~ q̂_i and store log q̂_i(x_n) and log p̃(x_n) = -u(x_n) (capped; non-finite dropped and
   counted): N target evaluations;
2. solve the dual for (λ_i, η_i) >= 0 on that buffer (:func:`~boltzflow.training.cmt.dual.solve_dual`, warm-
   started from the previous step's multipliers) and check that KL̂ ≈ ε_tr and ΔĤ <= ε_ent;
3. fit q̂_{i+1} to the intermediate q_{i+1} ∝ q̂_i^{λ/s} p̃^{1/s} by self-normalised importance-weighted NLL on
   the buffer, warm-started, with a fixed number of Adam steps (:func:`~boltzflow.training.cmt.harness.fit_weighted`).

The learned schedule (notes §1.3): writing the ideal path as q_i ∝ q_0^{a_i} p̃^{b_i} (a_0 = 1, b_0 = 0),
``a_{i+1} = λ a_i / s`` and ``b_{i+1} = (λ b_i + 1) / s``; p̃^{b} is the Boltzmann factor at temperature T / b,
so ``1 / b_i`` is the effective temperature factor of the step. β_i = 1 - a_i and α_i = b_i / β_i are the
geometric-tempered path's coordinates (Theorem 2.4).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.eval.weights import log_importance_weights, weight_summary
from boltzflow.flows.flow import Flow
from boltzflow.training.cmt.dual import intermediate_log_weights, solve_dual
from boltzflow.training.cmt.harness import CountedTarget, FitConfig, fill_buffer, fit_weighted


@dataclass
class CMTConfig:
    """Hyperparameters of a CMT run.

    Attributes:
        n_steps: annealing steps Ĩ (fixed, so budgets are equal: the run costs ``n_steps * n_samples``).
        n_samples: buffer size N per step (target evaluations per step).
        eps_tr: trust-region radius ε_tr, nats.
        eps_ent: entropy decay per step ε_ent, nats; None for the trust-region-only (geometric) path.
        fit: the inner fitting loop.
        chunk: samples per forward pass when filling the buffer.
        dual_tol: gradient tolerance of the dual, nats; a step whose dual does not reach it raises.
    """

    n_steps: int = 20
    n_samples: int = 10_000
    eps_tr: float = 0.3
    eps_ent: float | None = 0.5
    fit: FitConfig = field(default_factory=FitConfig)
    chunk: int = 4096
    dual_tol: float = 1e-8

    def __post_init__(self) -> None:
        if isinstance(self.fit, dict):
            self.fit = FitConfig(**self.fit)
        if self.n_steps < 1 or self.n_samples < 2:
            raise ValueError(f"CMTConfig needs n_steps >= 1 and n_samples >= 2, got {self.n_steps}, {self.n_samples}")
        if not self.eps_tr > 0 or (self.eps_ent is not None and not self.eps_ent > 0):
            raise ValueError(f"CMTConfig needs eps_tr > 0 and eps_ent > 0 or None, got {self.eps_tr}, {self.eps_ent}")


def next_exponents(a: float, b: float, lam: float, eta: float) -> tuple[float, float]:
    """Path exponents after one step: ``(λ a / s, (λ b + 1) / s)``, s = 1 + λ + η (notes §1.3)."""
    s = 1.0 + lam + eta
    return lam * a / s, (lam * b + 1.0) / s


def schedule_fields(a: float, b: float) -> dict[str, float | None]:
    """a, b, β = 1 - a, α = b / β and the effective temperature factor 1 / b (None where undefined)."""
    beta = 1.0 - a
    return {
        "a": a,
        "b": b,
        "beta": beta,
        "alpha": b / beta if beta > 0 else None,
        "temperature_factor": 1.0 / b if b > 0 else None,
    }


class CMT:
    """Constrained mass transport as a method of :func:`~boltzflow.training.cmt.runner.run_method`.

    Args:
        config: :class:`CMTConfig`.
    """

    name = "cmt"

    def __init__(self, config: CMTConfig) -> None:
        self.config = config
        self.lam, self.eta = 1.0, 1.0 if config.eps_ent is not None else 0.0
        self.a, self.b = 1.0, 0.0

    @property
    def n_steps(self) -> int:
        return self.config.n_steps

    def step_cost(self, step: int) -> int:
        """Target evaluations of one step: N."""
        return self.config.n_samples

    def config_dict(self) -> dict[str, Any]:
        return {"method": self.name, **asdict(self.config)}

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Tensors and JSON to checkpoint (the warm start of the dual and the path exponents)."""
        return {}, {"lam": self.lam, "eta": self.eta, "a": self.a, "b": self.b}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.lam, self.eta, self.a, self.b = meta["lam"], meta["eta"], meta["a"], meta["b"]

    def step(self, flow: Flow, target: CountedTarget, step: int, generator: torch.Generator) -> dict[str, Any]:
        """One annealing step (module docstring); trains ``flow`` in place and returns the step's record.

        Raises:
            BoltzflowError: the dual did not converge (KL̂ ≠ ε_tr or ΔĤ > ε_ent beyond ``dual_tol``).
        """
        cfg = self.config
        buf = fill_buffer(flow, target, cfg.n_samples, generator, cfg.chunk)
        log_p = -buf.u
        sol = solve_dual(buf.log_q, log_p, cfg.eps_tr, cfg.eps_ent, init=(self.lam, self.eta), tol=cfg.dual_tol)
        if not sol.converged:
            raise BoltzflowError(
                f"CMT step {step}: the dual did not converge (KKT residual {sol.kkt_residual:.3g} nats after "
                f"{sol.iterations} Newton steps); check the buffer's energies or raise n_samples"
            )
        weights = torch.softmax(intermediate_log_weights(buf.log_q.double(), log_p.double(), sol.lam, sol.eta), 0)
        fit = fit_weighted(flow, buf.x, weights.to(buf.x.dtype), cfg.fit, generator)
        target_ess = weight_summary(log_importance_weights(buf.u.double(), buf.log_q.double()).cpu())
        self.a, self.b = next_exponents(self.a, self.b, sol.lam, sol.eta)
        self.lam, self.eta = max(sol.lam, 1e-3), max(sol.eta, 1e-3) if cfg.eps_ent is not None else 0.0
        return {
            "lam": sol.lam,
            "eta": sol.eta,
            "log_lam": math.log(sol.lam) if sol.lam > 0 else None,
            "log_eta": math.log(sol.eta) if sol.eta > 0 else None,
            **schedule_fields(self.a, self.b),
            "kl": sol.kl,
            "delta_h": sol.delta_h,
            "entropy": sol.entropy,
            "entropy_next": sol.entropy - sol.delta_h,
            "log_z_step": sol.log_z,
            "buffer_ess": sol.ess,
            "buffer_ess_fraction": sol.ess_fraction,
            "target_ess_fraction": target_ess.ess_fraction,
            "kkt_residual": sol.kkt_residual,
            "dual_iterations": sol.iterations,
            "n_nonfinite": buf.n_nonfinite,
            "nll_first": fit.nll_first,
            "nll_last": fit.nll_last,
            "fit_skipped": fit.n_skipped,
        }
