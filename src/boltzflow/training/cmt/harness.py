"""What every energy-trained method shares: a counted target, a sample buffer, a weighted fit and an evaluation.

CMT and its baselines (reverse KL, TA-BG-style temperature annealing) differ only in how they choose the next
training target; they draw flow samples, evaluate the energy and fit the flow the same way. Keeping those parts
here, behind one function each, is what makes "the same energy budget" a property of the harness: every
training-time energy evaluation goes through :class:`CountedTarget`, which refuses to exceed its budget.

* :class:`CountedTarget`: the reduced energy u(x) with an evaluation counter, a budget and the lin-log cap
  (:func:`boltzflow.training.losses.linlog_cut`) for high energies;
* :func:`fill_buffer`: draw N flow samples in chunks with an explicit generator and store x, log q(x) and u(x),
  dropping (and counting) samples whose energy or density is not finite (notes §1.5 / §1.11);
* :func:`fit_weighted`: the inner loop, a fixed number of Adam steps on the self-normalised importance-weighted
  NLL ``-Σ_n w̄_n log q_θ(x_n)`` of a buffer (paper 002 eq. 13-15), warm-started from the flow's current
  parameters; minibatches are drawn by multinomial resampling of the weights, an unbiased estimate of the same
  gradient with lower variance than reweighting a uniform minibatch. It is the one place to swap for the shared
  loop's replay-buffer source;
* :func:`evaluate`: ESS and log Z of fresh samples, on an uncounted energy (evaluation is not training budget).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.eval.weights import log_importance_weights, log_partition_estimate, weight_summary
from boltzflow.flows.flow import Flow
from boltzflow.training.losses import linlog_cut

EnergyFn = Callable[[Tensor], Tensor]


class BudgetExceeded(BoltzflowError):
    """A method asked for more energy evaluations than its budget allows."""


class CountedTarget:
    """The training target p̃ = exp(-u): reduced energy with an evaluation counter, a budget and a lin-log cap.

    Args:
        energy: reduced energy u, ``x (n, D) -> (n,)``, kT (e.g. ``system.flat_energy()``).
        budget: the most evaluations (configurations) this target may compute; None for no limit.
        cap_high: where the lin-log cut of high energies starts, kT (``linlog_cut``'s ``high``).
        cap_max: the cut's final cap, kT.
    """

    def __init__(
        self, energy: EnergyFn, budget: int | None = None, cap_high: float = 1e4, cap_max: float = 1e9
    ) -> None:
        if budget is not None and budget < 0:
            raise ValueError(f"budget must be >= 0 evaluations, got {budget}")
        self._energy = energy
        self.budget = budget
        self.cap_high = float(cap_high)
        self.cap_max = float(cap_max)
        self.evals = 0

    def remaining(self) -> float:
        """Evaluations left in the budget (``math.inf`` without a budget)."""
        return math.inf if self.budget is None else self.budget - self.evals

    def raw_energy(self, x: Tensor) -> Tensor:
        """Uncapped u(x), shape (n, D) -> (n,), kT; counts n evaluations.

        Raises:
            BudgetExceeded: the evaluation would exceed the budget.
        """
        n = int(x.shape[0])
        if n > self.remaining():
            raise BudgetExceeded(f"energy budget of {self.budget} evaluations exceeded ({self.evals} used, {n} asked)")
        self.evals += n
        return self._energy(x)

    def energy(self, x: Tensor) -> Tensor:
        """Capped u(x) (lin-log above ``cap_high``), shape (n, D) -> (n,), kT; NaN stays NaN; counts n."""
        return linlog_cut(self.raw_energy(x), self.cap_high, self.cap_max)


class Buffer(NamedTuple):
    """Flow samples with their densities and energies (the finite ones only).

    Attributes:
        x: samples, shape (n_kept, D).
        log_q: log q(x) of the flow that drew them, shape (n_kept,).
        u: capped reduced energy, shape (n_kept,), kT (log p̃ = -u).
        n_drawn: samples drawn (and energies evaluated).
        n_nonfinite: samples dropped because x, log q or the uncapped energy was NaN or ±inf.
    """

    x: Tensor
    log_q: Tensor
    u: Tensor
    n_drawn: int
    n_nonfinite: int


def fill_buffer(flow: Flow, target: CountedTarget, n: int, generator: torch.Generator, chunk: int = 4096) -> Buffer:
    """Draw ``n`` samples of the flow (no gradient) in chunks, and evaluate their energies.

    Args:
        flow: the current model q̂_i.
        target: counted energy; ``n`` evaluations are charged.
        n: number of samples.
        generator: source of the latent samples (on the flow's device).
        chunk: samples per forward pass.

    Raises:
        BoltzflowError: every sample had a non-finite energy or density.
    """
    if n < 1 or chunk < 1:
        raise ValueError(f"fill_buffer needs n >= 1 and chunk >= 1, got n={n}, chunk={chunk}")
    xs, lqs, us, bad = [], [], [], 0
    with torch.no_grad():
        for start in range(0, n, chunk):
            s = flow.sample(min(chunk, n - start), generator)
            u_raw = target.raw_energy(s.x)
            ok = torch.isfinite(u_raw) & torch.isfinite(s.log_prob) & torch.isfinite(s.x).all(-1)
            bad += int((~ok).sum())
            xs.append(s.x[ok])
            lqs.append(s.log_prob[ok])
            us.append(linlog_cut(u_raw[ok], target.cap_high, target.cap_max).to(s.log_prob.dtype))
    if bad == n:
        raise BoltzflowError(f"all {n} flow samples had a non-finite energy or log q; the flow has diverged")
    return Buffer(torch.cat(xs), torch.cat(lqs), torch.cat(us), n, bad)


@dataclass
class FitConfig:
    """The inner fitting loop of an annealing step.

    Attributes:
        steps: Adam steps per annealing step (fixed, so compute budgets are equal).
        batch_size: points per step, resampled from the buffer with probabilities w̄.
        lr: Adam learning rate.
        clip_norm: gradient-norm clip (None: no clipping).
    """

    steps: int = 500
    batch_size: int = 1024
    lr: float = 1e-3
    clip_norm: float | None = 100.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"FitConfig needs steps >= 0, batch_size >= 1 and lr > 0, got {self}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"FitConfig.clip_norm must be positive or None, got {self.clip_norm}")


class FitStats(NamedTuple):
    """Outcome of :func:`fit_weighted`: mean resampled NLL of the first and last tenth of the steps (nats),
    the steps skipped for a non-finite loss or gradient, and the wall time (s)."""

    nll_first: float
    nll_last: float
    n_skipped: int
    seconds: float


def fit_weighted(flow: Flow, x: Tensor, weights: Tensor, cfg: FitConfig, generator: torch.Generator,
                 optimizer: torch.optim.Optimizer | None = None) -> FitStats:
    """Fit the flow to the weighted buffer: ``cfg.steps`` Adam steps on ``-mean log q_θ(x_idx)``, idx ~ w̄.

    Args:
        flow: the model, trained in place from its current parameters (warm start).
        x: buffer points, shape (N, D).
        weights: self-normalised weights w̄, shape (N,), >= 0 (zero-weight points are never drawn).
        cfg: steps, batch size, learning rate, clipping.
        generator: source of the minibatch indices.
        optimizer: an optimizer over the flow's parameters to continue (its state persists across calls, as in
            plain maximum likelihood); None: a fresh Adam with ``cfg.lr`` (an annealing step's warm start).
    """
    if weights.shape != x.shape[:1] or not bool(torch.isfinite(weights).all()) or not float(weights.sum()) > 0:
        raise ValueError("weights must be finite, non-negative, of shape (N,) matching x, with a positive sum")
    t0 = time.perf_counter()
    params = [p for p in flow.parameters() if p.requires_grad]
    opt = optimizer if optimizer is not None else torch.optim.Adam(params, lr=cfg.lr)
    probs = weights.detach().to(device=generator.device, dtype=torch.float64)
    losses, skipped = [], 0
    for _ in range(cfg.steps):
        idx = torch.multinomial(probs, cfg.batch_size, replacement=True, generator=generator).to(x.device)
        loss = -flow.log_prob(x[idx]).mean()
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            skipped += 1
            continue
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm or math.inf)
        if not torch.isfinite(norm):
            skipped += 1
            continue
        opt.step()
        losses.append(loss.item())
    k = max(1, len(losses) // 10)
    first = sum(losses[:k]) / k if losses else math.nan
    last = sum(losses[-k:]) / k if losses else math.nan
    return FitStats(first, last, skipped, time.perf_counter() - t0)


def evaluate(flow: Flow, energy: EnergyFn, n: int, generator: torch.Generator, chunk: int = 4096) -> dict[str, float]:
    """ESS and log Z of ``n`` fresh flow samples against the (uncapped) target, for monitoring.

    Args:
        flow: the model.
        energy: reduced energy u, ``x (n, D) -> (n,)``, kT; not counted against a training budget.
        n: samples.
        generator: source of the samples.
        chunk: samples per forward pass.

    Returns:
        ``eval_ess_fraction`` (Kish ESS / n, non-finite weights count as 0), ``eval_log_z`` (log mean w, which
        is log Z of exp(-u) when q is normalised) and its ``eval_log_z_stderr``, ``eval_n_nonfinite``.
    """
    parts = []
    with torch.no_grad():
        for start in range(0, n, chunk):
            s = flow.sample(min(chunk, n - start), generator)
            parts.append(log_importance_weights(energy(s.x).to(s.log_prob.dtype), s.log_prob))
    log_w = torch.cat(parts).double().cpu()
    summary = weight_summary(log_w)
    lz = log_partition_estimate(log_w)
    return {
        "eval_ess_fraction": summary.ess_fraction,
        "eval_log_z": lz.log_z,
        "eval_log_z_stderr": lz.stderr,
        "eval_n_nonfinite": summary.n_dropped,
    }
