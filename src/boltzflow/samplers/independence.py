"""Independence Metropolis–Hastings with a flow as the proposal: asymptotically exact samples of p ∝ exp(-u).

Each step proposes a fresh x' ~ q, independent of the current state x, and accepts it with probability
``min(1, w(x') / w(x))``, ``w = p̃ / q`` (the importance weight). The chain leaves p invariant, and it is
uniformly ergodic when the weights are bounded (Mengersen & Tweedie 1996, Ann. Statist. 24, 101).

The chain only needs the log weights, so it runs on a pre-drawn batch of proposals with their ``log q`` and
target log density: the flow and the energy stay outside this module. A callable sampler may be given instead;
it is then called in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError


class Proposals(NamedTuple):
    """A batch of independent proposals x ~ q.

    Attributes:
        x: proposals, shape (n, *event_shape).
        log_q: log q(x), shape (n,).
        log_target: unnormalised target log density ``-u(x)``, shape (n,); None to have it computed.
    """

    x: Tensor
    log_q: Tensor
    log_target: Tensor | None = None


class IndependenceMHResult(NamedTuple):
    """The chain.

    Attributes:
        samples: the states x_0, ..., x_{n_steps}, shape (n_steps + 1, *event_shape); x_0 is the first
            proposal (if its weight is non-finite, the chain stays there until a finite one is proposed).
        log_w: log importance weight of each state, shape (n_steps + 1,) (``-inf`` for a dropped proposal).
        indices: for pre-drawn proposals, the proposal index of each state, shape (n_steps + 1,); else None.
        acceptance_rate: accepted moves / n_steps.
        n_dropped: proposals with a non-finite log weight; they are never accepted.
    """

    samples: Tensor
    log_w: Tensor
    indices: Tensor | None
    acceptance_rate: float
    n_dropped: int


Sampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]


def independence_mh(
    log_target: Callable[[Tensor], Tensor] | None,
    proposals: Proposals | Sampler,
    n_steps: int | None,
    generator: torch.Generator,
    chunk_size: int = 65536,
) -> IndependenceMHResult:
    """Run an independence Metropolis–Hastings chain.

    Args:
        log_target: x (m, *event_shape) -> unnormalised log p(x) = -u(x), shape (m,); may be None when
            ``proposals`` is a :class:`Proposals` batch carrying ``log_target``.
        proposals: a pre-drawn :class:`Proposals` batch (used in order), or a sampler
            ``(m, generator) -> (x, log_q, ...)`` called in chunks of at most ``chunk_size`` (e.g.
            ``flow.sample``, whose :class:`~boltzflow.flows.flow.FlowSample` starts with ``x, log_prob``).
        n_steps: number of MH steps; uses ``n_steps + 1`` proposals (the first is the initial state).
            None with a batch: ``n - 1``.
        generator: source of the proposals (for a sampler) and of the acceptance uniforms.
        chunk_size: proposals drawn per sampler call.

    Raises:
        ValueError: shapes disagree, ``n_steps`` does not fit the batch, or no ``log_target`` is available.
    """
    if isinstance(proposals, tuple):
        return _run_batch(log_target, Proposals(*proposals), n_steps, generator)
    if n_steps is None or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer with a sampler, got {n_steps}")
    if log_target is None:
        raise ValueError("log_target is required when proposals come from a sampler")
    return _run_sampler(log_target, proposals, n_steps, generator, chunk_size)


def _run_batch(
    log_target: Callable[[Tensor], Tensor] | None,
    p: Proposals,
    n_steps: int | None,
    generator: torch.Generator,
) -> IndependenceMHResult:
    n = p.x.shape[0]
    n_steps = n - 1 if n_steps is None else n_steps
    if not 1 <= n_steps <= n - 1:
        raise ValueError(f"{n} proposals allow 1 to {n - 1} steps, got n_steps={n_steps}")
    p = Proposals(p.x[: n_steps + 1], p.log_q[: n_steps + 1], _slice(p.log_target, n_steps + 1))
    log_w, n_dropped = _log_weights(log_target, p)
    idx, n_acc = _chain(float(log_w[0]), log_w[1:], generator)
    idx = torch.cat([idx.new_zeros(1), idx + 1])  # -1 (still the initial state) becomes proposal 0
    return _result(p.x.detach()[idx], log_w[idx], idx, n_acc / n_steps, n_dropped)


def _run_sampler(
    log_target: Callable[[Tensor], Tensor], sampler: Sampler, n_steps: int, gen: torch.Generator, chunk: int
) -> IndependenceMHResult:
    x, log_q = _draw(sampler, 1, gen)
    log_w, n_dropped = _log_weights(log_target, Proposals(x, log_q))
    samples, log_ws, n_acc, left = [x], [log_w], 0, n_steps
    while left > 0:
        x, log_q = _draw(sampler, min(chunk, left), gen)
        log_w, dropped = _log_weights(log_target, Proposals(x, log_q))
        idx, acc = _chain(float(log_ws[-1][-1]), log_w, gen)
        samples.append(torch.cat([samples[-1][-1:], x])[idx + 1])
        log_ws.append(torch.cat([log_ws[-1][-1:], log_w])[idx + 1])
        n_acc, n_dropped, left = n_acc + acc, n_dropped + dropped, left - x.shape[0]
    return _result(torch.cat(samples), torch.cat(log_ws), None, n_acc / n_steps, n_dropped)


def _result(
    samples: Tensor, log_w: Tensor, idx: Tensor | None, rate: float, n_dropped: int
) -> IndependenceMHResult:
    if log_w[-1] == -math.inf:
        raise BoltzflowError("no proposal has a finite log weight; check the energies and log q")
    return IndependenceMHResult(samples, log_w, idx, rate, n_dropped)


def _draw(sampler: Sampler, m: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``m`` proposals and their log q, without autograd history (a FlowSample works: fields 0, 1)."""
    with torch.no_grad():
        out = sampler(m, generator)
    return out[0].detach(), out[1].detach()


def _slice(v: Tensor | None, n: int) -> Tensor | None:
    return None if v is None else v[:n]


def _log_weights(log_target: Callable[[Tensor], Tensor] | None, p: Proposals) -> tuple[Tensor, int]:
    """``log p̃ - log q`` with non-finite entries set to ``-inf``, and how many there were."""
    if p.log_target is None and log_target is None:
        raise ValueError("give log_target or proposals carrying log_target")
    with torch.no_grad():
        target = p.log_target if p.log_target is not None else log_target(p.x)
    if target.shape != p.log_q.shape or p.log_q.shape != p.x.shape[:1]:
        raise ValueError(
            f"x, log_q and log_target must share the leading size; got {tuple(p.x.shape)}, "
            f"{tuple(p.log_q.shape)}, {tuple(target.shape)}"
        )
    log_w = (target - p.log_q).detach().to(torch.float64)
    finite = torch.isfinite(log_w)
    return torch.where(finite, log_w, -math.inf), int((~finite).sum())


def _chain(current_lw: float, log_w: Tensor, generator: torch.Generator) -> tuple[Tensor, int]:
    """Propose the candidates in order from a state of log weight ``current_lw``.

    Returns the index of the state after each step (``-1``: still the incoming state), shape (m,), and the
    number of accepted moves.
    """
    log_u = torch.log(torch.rand(log_w.shape, generator=generator, dtype=torch.float64)).tolist()
    idx, state, n_acc = [], -1, 0
    for t, (lw, lu) in enumerate(zip(log_w.tolist(), log_u, strict=True)):
        if lu < lw - current_lw:  # nan (-inf - -inf) compares false: zero-weight moves are rejected
            state, current_lw, n_acc = t, lw, n_acc + 1
        idx.append(state)
    return torch.tensor(idx, dtype=torch.long, device=log_w.device), n_acc
