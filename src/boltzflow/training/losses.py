"""Losses as plain functions ``(flow, batch, ...) -> scalar tensor``.

* :func:`nll`: negative log-likelihood of data (paper 001 §4);
* :func:`reverse_kl`: E_q[u/τ + log q] on flow samples (energy-based training, paper 004 eq. (3));
* :func:`importance_weighted_nll`: forward KL to the target from self-normalised weights of flow samples;
* :func:`force_matching`: E_data ||f/kT - ∇_x log q||² (paper 004 eq. (4));
* :func:`weighted`: ``Σ_k w_k L_k`` of ``(flow, batch)`` losses (paper 004 eq. (5));
* :func:`linlog_cut`: a smooth cap on reduced energies for training (bgflow-style lin-log cut).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.eval.weights import log_importance_weights
from boltzflow.flows.flow import Flow

LossFn = Callable[[Flow, Tensor], Tensor]
EnergyFn = Callable[[Tensor], Tensor]


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


def force_matching(flow: Flow, x: Tensor, forces_kt: Tensor, create_graph: bool = True) -> Tensor:
    """Force mean-squared error, paper 004 eq. (4): ``mean_n ||f_n - ∇_x log q(x_n)||²``.

    ``∇_x log q`` is the flow's force in kT per length unit (q ∝ exp(-u_q) gives -∇u_q). The squared norm is
    summed over the D components and averaged over the batch.

    Args:
        flow: the model q (needs to be differentiable in x; C¹ at least for training).
        x: configurations, shape (n, D) (e.g. flattened Cartesian positions, nm).
        forces_kt: reference forces ``-∇u`` at ``x``, shape (n, D), kT per unit of x (kT/nm).
        create_graph: keep the graph of the gradient so the loss can be backpropagated (training); False for
            evaluation only.
    """
    if x.shape != forces_kt.shape:
        raise ValueError(
            f"x and forces_kt must have the same shape, got {tuple(x.shape)} and {tuple(forces_kt.shape)}"
        )
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        log_q = flow.log_prob(x)
        (grad,) = torch.autograd.grad(log_q.sum(), x, create_graph=create_graph)
    return ((grad - forces_kt) ** 2).sum(-1).mean()


def weighted(*terms: tuple[float, LossFn]) -> LossFn:
    """The loss ``(flow, batch) -> Σ_k w_k L_k(flow, batch)`` from ``(w_k, L_k)`` pairs (paper 004 eq. (5)).

    Terms with weight 0 are not evaluated. Losses that need more than ``(flow, batch)`` (an energy, a sample
    size) go in as closures, e.g. ``weighted((0.9, nll), (0.1, lambda f, b: reverse_kl(f, u, 256)))``.

    Raises:
        ValueError: no term, or a negative or non-finite weight.
    """
    if not terms:
        raise ValueError("weighted() needs at least one (weight, loss_fn) pair")
    for w, fn in terms:
        if not (math.isfinite(w) and w >= 0) or not callable(fn):
            raise ValueError(f"each term must be (weight >= 0, callable loss); got ({w!r}, {fn!r})")
    active = [(float(w), fn) for w, fn in terms if w > 0]
    if not active:
        raise ValueError("weighted() needs at least one positive weight")

    def loss(flow: Flow, batch: Tensor) -> Tensor:
        total = active[0][0] * active[0][1](flow, batch)
        for w, fn in active[1:]:
            total = total + w * fn(flow, batch)
        return total

    return loss


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
