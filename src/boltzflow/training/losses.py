"""Losses as plain functions ``(flow, batch, ...) -> scalar tensor``.

The training loop calls ``loss(flow, batch, ctx)`` when the loss has a parameter named ``ctx`` and
``loss(flow, batch)`` otherwise (:func:`call_loss`). ``ctx`` is a :class:`StepContext`: the step, the epoch, the
stage, the loop's ``torch.Generator`` for any sampling the loss does, and a dict for extra metrics to log.

* :func:`nll`: negative log-likelihood of data (paper 001 §4);
* :func:`sample_reverse_kl` and :func:`weighted_nll`: the same objectives on batches of flow samples or replay
  buffers (:mod:`boltzflow.training.sources`);
* :func:`reverse_kl`: E_q[u/τ + log q] on flow samples (energy-based training, paper 004 eq. (3));
* :func:`importance_weighted_nll`: forward KL to the target from self-normalised weights of flow samples;
* :func:`force_matching`: E_data ||f/kT - ∇_x log q||² (paper 004 eq. (4));
* :func:`weighted`: ``Σ_k w_k L_k`` of ``(flow, batch[, ctx])`` losses (paper 004 eq. (5));
* :func:`linlog_cut`: a smooth cap on reduced energies for training (bgflow-style lin-log cut).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from boltzflow.eval.weights import log_importance_weights
from boltzflow.flows.flow import Flow

LossFn = Callable[..., Tensor]  # (flow, batch) -> scalar, or (flow, batch, ctx) -> scalar
EnergyFn = Callable[[Tensor], Tensor]


class StepContext(NamedTuple):
    """What the loop tells a loss about the step it is computed for.

    Attributes:
        step: optimiser steps attempted so far in this stage (0-based, skipped steps included).
        epoch: 0-based epoch.
        stage: name of the training stage (``"nll"``, ``"energy"``, ...).
        generator: the loop's generator for flow samples; draw from it, never from torch's global generator.
        metrics: extra per-step values to log (name -> float); a loss may add entries.
    """

    step: int
    epoch: int
    stage: str
    generator: torch.Generator | None
    metrics: dict[str, float]


def takes_context(loss: Callable[..., Any]) -> bool:
    """True when ``loss`` has a parameter named ``ctx`` (it is then called as ``loss(flow, batch, ctx)``)."""
    try:
        return "ctx" in inspect.signature(loss).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def call_loss(loss: Callable[..., Tensor], flow: Flow, batch: Any, ctx: StepContext | None) -> Tensor:
    """``loss(flow, batch, ctx)`` for losses that take a context, ``loss(flow, batch)`` for the others."""
    return loss(flow, batch, ctx) if takes_context(loss) else loss(flow, batch)


def nll(flow: Flow, x: Tensor) -> Tensor:
    """Negative log-likelihood of data (forward KL up to a constant), paper 001 §4.

    Args:
        flow: the model q.
        x: data, shape (n, D).

    Returns:
        ``-mean(log q(x))``, a scalar in nats.
    """
    return -flow.log_prob(x).mean()


class ReverseKL(NamedTuple):
    """A reverse-KL estimate and what went into it.

    Attributes:
        loss: mean of ``u(x)/τ + log q(x)`` over the samples with a finite value, scalar (differentiable).
        n_nonfinite: samples left out because their energy or log q was NaN or ±inf.
        n: samples drawn.
    """

    loss: Tensor
    n_nonfinite: int
    n: int


def _check_sampling(name: str, n: int, temperature_factor: float) -> None:
    if n < 1:
        raise ValueError(f"{name} needs n >= 1 samples, got {n}")
    if not temperature_factor > 0:
        raise ValueError(f"temperature_factor must be positive, got {temperature_factor}")


def reverse_kl_terms(
    flow: Flow,
    energy: EnergyFn,
    n: int,
    generator: torch.Generator | None = None,
    temperature_factor: float = 1.0,
) -> ReverseKL:
    """Reverse KL ``KL(q || p) - log Z = E_q[u(x)/τ + log q(x)]`` from ``n`` samples drawn with gradients.

    Samples whose energy or log density is not finite are left out of the mean and counted; if none is
    finite the loss is NaN (the fit loop then skips the step).

    Args:
        flow: the model q, sampled by reparameterisation (gradients flow through the samples).
        energy: reduced energy u, ``x (n, D) -> (n,)`` in kT (an :class:`~boltzflow.energies.base.Energy` on
            the flow's event shape, or any callable).
        n: number of samples.
        generator: source of the latent samples (None: torch's global generator).
        temperature_factor: τ = T / T_target; the target is ``exp(-u/τ)``.
    """
    _check_sampling("reverse_kl", n, temperature_factor)
    sample = flow.sample(n, generator)
    values = energy(sample.x) / temperature_factor + sample.log_prob
    finite = torch.isfinite(values)
    n_bad = int((~finite).sum())
    kept = torch.where(finite, values, torch.zeros_like(values))
    loss = kept.sum() / (n - n_bad) if n_bad < n else values.new_tensor(math.nan)
    return ReverseKL(loss, n_bad, n)


def reverse_kl(
    flow: Flow,
    energy: EnergyFn,
    n: int,
    generator: torch.Generator | None = None,
    temperature_factor: float = 1.0,
) -> Tensor:
    """The scalar of :func:`reverse_kl_terms` (see there): ``E_q[u(x)/τ + log q(x)]`` in nats."""
    return reverse_kl_terms(flow, energy, n, generator, temperature_factor).loss


def importance_weighted_nll(
    flow: Flow,
    energy: EnergyFn,
    n: int,
    generator: torch.Generator | None = None,
    temperature_factor: float = 1.0,
) -> Tensor:
    """Forward KL to the target estimated on the flow's own samples: ``-Σ_i w̄_i log q(x_i)``, x_i ~ q.

    ``w̄`` are the self-normalised importance weights ``∝ exp(-u(x)/τ) / q(x)`` of ``n`` samples drawn without
    gradient; the gradient flows through ``log q`` re-evaluated at those (fixed) points. Unlike the reverse KL this
    is mass-covering: a sample in a region the flow under-populates carries a large weight and pulls density
    there, which is how a Boltzmann generator can repopulate a state its training data under-sample. The estimate
    is consistent but has the variance of the weights; combine it with NLL and gradient clipping. Samples with a
    non-finite energy or log q are left out; if none is left the loss is NaN (the fit loop skips the step).

    Args:
        flow: the model q.
        energy: reduced energy u, ``x (n, D) -> (n,)`` in kT.
        n: samples per estimate.
        generator: source of the latent samples (None: torch's global generator).
        temperature_factor: τ = T / T_target; the target is ``exp(-u/τ)``.
    """
    _check_sampling("importance_weighted_nll", n, temperature_factor)
    with torch.no_grad():
        sample = flow.sample(n, generator)
        log_w = log_importance_weights(energy(sample.x).to(sample.log_prob.dtype) / temperature_factor, sample.log_prob)
        finite = torch.isfinite(log_w) & torch.isfinite(sample.x).all(-1)
        if not finite.any():
            return sample.log_prob.new_tensor(math.nan)
        weights = torch.softmax(log_w[finite], dim=0)
    return -(weights * flow.log_prob(sample.x[finite])).sum()


def force_matching(flow: Flow, x: Tensor, forces_kt: Tensor, create_graph: bool = True,
                   reduction: str = "sum") -> Tensor:
    """Force mean-squared error, paper 004 eq. (4): ``mean_n ||f_n - ∇_x log q(x_n)||²``.

    ``∇_x log q`` is the flow's force in kT per length unit (q ∝ exp(-u_q) gives -∇u_q). The squared norm is
    summed over the D components (``reduction="sum"``, eq. (4) as printed) or averaged over them
    (``reduction="mean"``, the MSE of paper 004's code, D times smaller), and averaged over the batch.

    Args:
        flow: the model q (needs to be differentiable in x; C¹ at least for training).
        x: configurations, shape (n, D) (e.g. flattened Cartesian positions, nm).
        forces_kt: reference forces ``-∇u`` at ``x``, shape (n, D), kT per unit of x (kT/nm).
        create_graph: keep the graph of the gradient so the loss can be backpropagated (training); False for
            evaluation only.
        reduction: ``"sum"`` or ``"mean"`` over the D components.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean' over the components, got {reduction!r}")
    if x.shape != forces_kt.shape:
        raise ValueError(
            f"x and forces_kt must have the same shape, got {tuple(x.shape)} and {tuple(forces_kt.shape)}"
        )
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        log_q = flow.log_prob(x)
        (grad,) = torch.autograd.grad(log_q.sum(), x, create_graph=create_graph)
    sq = (grad - forces_kt) ** 2
    return (sq.sum(-1) if reduction == "sum" else sq.mean(-1)).mean()


def weighted(*terms: tuple[float, LossFn] | tuple[float, LossFn, str]) -> LossFn:
    """The loss ``(flow, batch, ctx=None) -> Σ_k w_k L_k(flow, batch[, ctx])`` (paper 004 eq. (5)).

    Each term is ``(w_k, L_k)`` or ``(w_k, L_k, name)``; named terms are logged as ``ctx.metrics[name]`` (the
    unweighted value). Terms with weight 0 are not evaluated. ``L_k`` takes ``ctx`` when it has a parameter of
    that name (:func:`call_loss`); losses that need more than the batch (an energy, a sample size) go in as
    closures, e.g. ``weighted((0.9, nll), (0.1, lambda f, b, ctx: reverse_kl(f, u, 256, ctx.generator)))``.

    Raises:
        ValueError: no term, or a negative or non-finite weight.
    """
    if not terms:
        raise ValueError("weighted() needs at least one (weight, loss_fn) pair")
    for term in terms:
        w, fn = term[0], term[1]
        if len(term) not in (2, 3) or not (math.isfinite(w) and w >= 0) or not callable(fn):
            raise ValueError(f"each term must be (weight >= 0, callable loss[, name]); got {term!r}")
    active = [(float(t[0]), t[1], t[2] if len(t) == 3 else None) for t in terms if t[0] > 0]
    if not active:
        raise ValueError("weighted() needs at least one positive weight")

    def loss(flow: Flow, batch: Any, ctx: StepContext | None = None) -> Tensor:
        total = None
        for w, fn, name in active:
            value = call_loss(fn, flow, batch, ctx)
            if name is not None and ctx is not None:
                ctx.metrics[name] = float(value.detach())
            total = w * value if total is None else total + w * value
        return total

    return loss


def sample_reverse_kl(flow: Flow, batch: Any, ctx: StepContext | None = None) -> Tensor:
    """Reverse KL ``E_q[u + log q]`` on a reparameterised batch of flow samples (``FlowSampleSource``).

    Args:
        flow: the model q (unused: the batch already carries the graph back to its parameters).
        batch: with ``u`` and ``log_q``, shape (n,), computed with gradients through the samples.
        ctx: step context; ``n_nonfinite`` is logged in ``ctx.metrics``.

    Returns:
        the mean of ``u + log q`` over the samples where it is finite, in nats (NaN when none is).
    """
    values = batch.u.to(batch.log_q.dtype) + batch.log_q
    finite = torch.isfinite(values)
    n_bad = int((~finite).sum())
    if ctx is not None:
        ctx.metrics["n_nonfinite"] = float(n_bad)
    if n_bad == len(values):
        return values.new_tensor(math.nan)
    return torch.where(finite, values, torch.zeros_like(values)).sum() / (len(values) - n_bad)


def weighted_nll(flow: Flow, batch: Any, ctx: StepContext | None = None) -> Tensor:
    """Self-normalised importance-weighted NLL ``-Σ_i w̄_i log q(x_i)`` of a batch of weighted samples.

    With detached flow samples (``log_w = -u - log q``) this is the mass-covering forward KL estimate of
    :func:`importance_weighted_nll`; with a replay buffer's weighted minibatches it is the weighted NLL of the
    buffer; with resampled batches (all ``log_w`` 0) it is the plain NLL. Rows with a non-finite ``log_w`` or
    ``x`` are left out; if none is left the loss is NaN (the loop skips the step).

    Args:
        flow: the model q.
        batch: with ``x`` (n, D) and ``log_w`` (n,) (unnormalised log weights, no gradient).
        ctx: step context; the batch's Kish ESS fraction is logged as ``ctx.metrics["ess_fraction"]``.
    """
    log_w = batch.log_w.detach()
    finite = torch.isfinite(log_w) & torch.isfinite(batch.x).all(-1)
    if not finite.any():
        return batch.x.new_tensor(math.nan)
    w = torch.softmax(log_w[finite].to(batch.x.dtype), dim=0)
    if ctx is not None:
        ctx.metrics["ess_fraction"] = float(1.0 / (w**2).sum() / len(log_w))
    return -(w * flow.log_prob(batch.x[finite].detach())).sum()


def linlog_cut(u: Tensor, high: float = 1e3, max_value: float = 1e9) -> Tensor:
    """Reduced energy with a lin-log cut: ``u`` below ``high``, ``high + log(1 + u - high)`` above, capped.

    Keeps the gradient of reverse-KL training bounded on clashes; NaN stays NaN (counted as non-finite by
    :func:`reverse_kl_terms`) and +inf becomes ``max_value``.

    Args:
        u: reduced energies, shape (...), kT.
        high: where the logarithmic branch starts, kT.
        max_value: final cap, kT.
    """
    over = torch.clamp(u - high, min=0.0)
    cut = torch.where(u > high, high + torch.log1p(over), u)
    return torch.clamp(cut, max=max_value)
