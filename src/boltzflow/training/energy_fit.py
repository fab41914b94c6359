"""Energy-based and mixed objectives on top of :func:`boltzflow.training.loop.fit`, and BG sampling.

``fit`` iterates over data and calls ``loss_fn(flow, batch, ctx)``; a mixed Boltzmann-generator objective
(paper 004 eq. (5)) fits that contract: the data term uses the batch, the reverse-KL and importance-weighted
terms draw their own flow samples from ``ctx.generator`` (the loop's generator, which it checkpoints, so resumed
runs stay deterministic), and the force-matching term reads forces packed beside the positions
(:func:`pack_forces`). So the same loop, checkpoints and resume logic serve NLL, mixed and force-matching
training.

:func:`bg_samples` draws flow samples with their energies and log importance weights in chunks, without
gradients (the evaluation side of a Boltzmann generator).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.eval.weights import log_importance_weights
from boltzflow.flows.flow import Flow
from boltzflow.training.losses import (
    EnergyFn,
    LossFn,
    StepContext,
    force_matching,
    importance_weighted_nll,
    nll,
    reverse_kl,
    weighted,
)


def pack_forces(x: Tensor, forces_kt: Tensor) -> Tensor:
    """Training rows ``[x | f]`` of shape (n, 2D) from positions (n, D) and forces (n, D) in kT per unit of x."""
    if x.shape != forces_kt.shape or x.ndim != 2:
        raise ValueError(
            f"x and forces_kt must both be (n, D), got {tuple(x.shape)} and {tuple(forces_kt.shape)}"
        )
    return torch.cat([x, forces_kt], dim=-1)


def mixed_objective(
    energy: EnergyFn | None = None,
    nll_weight: float = 1.0,
    kl_weight: float = 0.0,
    force_weight: float = 0.0,
    kl_batch: int = 256,
    temperature_factor: float = 1.0,
    dim: int | None = None,
    iw_weight: float = 0.0,
    force_reduction: str = "sum",
) -> LossFn:
    """``w_n NLL + w_k KL_rev + w_f FM + w_i IW-NLL`` as a ``(flow, batch, ctx) -> scalar`` loss (paper 004 eq. (5)).

    The reverse-KL and IW-NLL terms draw their flow samples from ``ctx.generator`` (torch's global generator only
    when called without a context). Each active term's value is logged in ``ctx.metrics`` under ``nll``,
    ``reverse_kl``, ``force_matching`` and ``iw_nll``.

    Args:
        energy: reduced energy ``x (n, D) -> (n,)`` in kT, needed when ``kl_weight > 0``.
        nll_weight: weight of the data NLL.
        kl_weight: weight of the reverse KL (``kl_batch`` fresh flow samples per call).
        force_weight: weight of force matching; the batch must then be ``[x | f]`` rows (:func:`pack_forces`).
        kl_batch: flow samples per reverse-KL estimate.
        temperature_factor: τ of the reverse-KL target exp(-u/τ).
        dim: D, the width of x in a packed ``[x | f]`` batch (required with ``force_weight > 0``; with packed
            data and no force term it tells where x ends).
        iw_weight: weight of the mass-covering importance-weighted NLL on ``kl_batch`` flow samples
            (:func:`~boltzflow.training.losses.importance_weighted_nll`).
        force_reduction: ``"sum"`` (eq. (4)) or ``"mean"`` (MSE) of the squared force error over the D
            components (:func:`~boltzflow.training.losses.force_matching`).

    Raises:
        ValueError: a reverse-KL weight without an energy, or a force weight without ``dim``.
    """
    if (kl_weight > 0 or iw_weight > 0) and energy is None:
        raise ValueError("kl_weight > 0 or iw_weight > 0 needs an energy")
    if force_weight > 0 and dim is None:
        raise ValueError("force_weight > 0 needs dim (the width of x in the packed [x | f] batch)")

    def positions(batch: Tensor) -> Tensor:
        return batch if dim is None else batch[:, :dim]

    def gen(ctx: StepContext | None) -> torch.Generator | None:
        return None if ctx is None else ctx.generator

    return weighted(
        (nll_weight, lambda flow, batch: nll(flow, positions(batch)), "nll"),
        (kl_weight, lambda flow, batch, ctx: reverse_kl(flow, energy, kl_batch, gen(ctx), temperature_factor),
         "reverse_kl"),
        (force_weight, lambda flow, batch: force_matching(flow, batch[:, :dim], batch[:, dim:],
                                                          reduction=force_reduction), "force_matching"),
        (iw_weight, lambda flow, batch, ctx: importance_weighted_nll(flow, energy, kl_batch, gen(ctx),
                                                                     temperature_factor), "iw_nll"),
    )


class BGSamples(NamedTuple):
    """Flow samples with energies and importance weights (all detached).

    Attributes:
        x: samples, shape (n, D).
        log_q: log q(x), shape (n,).
        u: reduced target energy u(x), shape (n,), kT (may hold inf/nan; their weights are dropped downstream).
        log_w: ``-u - log q``, shape (n,).
    """

    x: Tensor
    log_q: Tensor
    u: Tensor
    log_w: Tensor


@torch.no_grad()
def bg_samples(
    flow: Flow, energy: EnergyFn, n: int, generator: torch.Generator, chunk_size: int = 10_000
) -> BGSamples:
    """Draw ``n`` flow samples in chunks with their energies and log importance weights.

    Args:
        flow: the proposal q.
        energy: reduced target energy ``x (m, D) -> (m,)`` in kT.
        n: number of samples.
        generator: source of the latent samples.
        chunk_size: samples per flow/energy call.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    xs, lqs, us = [], [], []
    for start in range(0, n, chunk_size):
        s = flow.sample(min(chunk_size, n - start), generator)
        xs.append(s.x)
        lqs.append(s.log_prob)
        us.append(energy(s.x))
    x, log_q, u = torch.cat(xs), torch.cat(lqs), torch.cat(us).to(torch.cat(lqs).dtype)
    return BGSamples(x, log_q, u, log_importance_weights(u, log_q))
