"""Batched random-walk Metropolis: many independent chains, a functional ``init``/``step`` core and a driver.

Proposal x' = x + σ ξ with ξ ~ N(0, I), accepted with probability min(1, exp(u(x) − u(x'))) for a reduced
energy u (kT). The step size σ adapts during burn-in only and is frozen for production.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

EnergyFn = Callable[[Tensor], Tensor]


class MetropolisState(NamedTuple):
    """Current chain positions and their reduced energies.

    Attributes:
        x: positions, shape (n_chains, D).
        energy: u(x), shape (n_chains,), kT.
    """

    x: Tensor
    energy: Tensor


class MetropolisInfo(NamedTuple):
    """Diagnostics of one step.

    Attributes:
        accept_prob: min(1, exp(−Δu)) per chain, shape (n_chains,); 0 where Δu is undefined (inf − inf).
        accepted: whether each chain moved, shape (n_chains,), bool.
    """

    accept_prob: Tensor
    accepted: Tensor


class MetropolisResult(NamedTuple):
    """Output of :func:`sample_metropolis`.

    Attributes:
        samples: production samples, shape (n_samples, D); rows cycle over chains (row i is from chain
            i % n_chains).
        acceptance: mean acceptance rate over all production steps and chains.
        step_size: the frozen production step size σ.
    """

    samples: Tensor
    acceptance: float
    step_size: float


def init(x: Tensor, energy_fn: EnergyFn) -> MetropolisState:
    """Start chains at ``x`` of shape (n_chains, D); ``energy_fn`` maps (..., D) -> (...) reduced energies."""
    with torch.no_grad():
        return MetropolisState(x, energy_fn(x))


def step(
    state: MetropolisState,
    energy_fn: EnergyFn,
    step_size: float | Tensor,
    generator: torch.Generator | None = None,
) -> tuple[MetropolisState, MetropolisInfo]:
    """One Gaussian random-walk Metropolis step for every chain.

    Args:
        state: current :class:`MetropolisState`.
        energy_fn: reduced energy, (..., D) -> (...), kT.
        step_size: proposal standard deviation σ, a float or a tensor broadcastable to (n_chains, D).
        generator: random source for proposals and acceptance draws.

    Returns:
        ``(new_state, info)``.
    """
    x, u = state
    with torch.no_grad():
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        proposal = x + step_size * noise
        u_new = energy_fn(proposal)
        log_ratio = u - u_new
        log_ratio = torch.where(torch.isnan(log_ratio), torch.full_like(log_ratio, -math.inf), log_ratio)
        accept_prob = torch.exp(log_ratio.clamp(max=0.0))
        uniform = torch.rand(u.shape, generator=generator, dtype=x.dtype, device=x.device)
        accepted = uniform < accept_prob
        x = torch.where(accepted.unsqueeze(-1), proposal, x)
        u = torch.where(accepted, u_new, u)
    return MetropolisState(x, u), MetropolisInfo(accept_prob, accepted)


def _check_args(x0: Tensor, n_samples: int, burn_in: int, thin: int, step_size: float, target: float) -> None:
    if x0.dim() != 2:
        raise ValueError(f"x0 must have shape (n_chains, D), got {tuple(x0.shape)}")
    if n_samples < 1 or burn_in < 0 or thin < 1:
        raise ValueError(f"need n_samples >= 1, burn_in >= 0, thin >= 1; got {n_samples}, {burn_in}, {thin}")
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size}")
    if not 0 < target < 1:
        raise ValueError(f"target_acceptance must lie in (0, 1), got {target}")


def sample_metropolis(
    energy_fn: EnergyFn,
    x0: Tensor,
    n_samples: int,
    burn_in: int,
    thin: int = 1,
    step_size: float = 0.1,
    target_acceptance: float = 0.4,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> MetropolisResult:
    """Run ``n_chains`` parallel chains: adapt σ during burn-in, then collect thinned samples with σ frozen.

    Burn-in adapts log σ by Robbins–Monro, log σ += (ā − target) / (k + 10)^0.6, with ā the acceptance
    probability averaged over chains at burn-in step k. Production runs ``ceil(n_samples / n_chains) * thin``
    steps per chain and keeps every ``thin``-th state.

    Args:
        energy_fn: reduced energy u, (..., D) -> (...), kT (an :class:`~boltzflow.energies.base.Energy`
            works).
        x0: chain starting points, shape (n_chains, D).
        n_samples: total number of samples returned (over all chains).
        burn_in: adaptation steps per chain, discarded.
        thin: keep every ``thin``-th production step.
        step_size: initial proposal standard deviation σ (same units as x).
        target_acceptance: acceptance rate the burn-in adaptation aims for.
        generator: random source.
        progress: show a tqdm progress bar.

    Returns:
        :class:`MetropolisResult`.
    """
    _check_args(x0, n_samples, burn_in, thin, step_size, target_acceptance)
    n_chains = x0.shape[0]
    n_rounds = -(-n_samples // n_chains)
    state = init(x0.detach(), energy_fn)
    log_step = math.log(step_size)
    samples, n_accepted, n_prod = [], 0, 0
    with tqdm(total=burn_in + n_rounds * thin, disable=not progress, desc="metropolis") as bar:
        for k in range(burn_in):
            state, info = step(state, energy_fn, math.exp(log_step), generator)
            log_step += (float(info.accept_prob.mean()) - target_acceptance) / (k + 10) ** 0.6
            bar.update()
        frozen = math.exp(log_step)
        for k in range(n_rounds * thin):
            state, info = step(state, energy_fn, frozen, generator)
            n_accepted += int(info.accepted.sum())
            n_prod += n_chains
            if (k + 1) % thin == 0:
                samples.append(state.x)
            bar.update()
    x = torch.stack(samples).reshape(-1, x0.shape[1])[:n_samples]
    return MetropolisResult(x, n_accepted / n_prod, frozen)
