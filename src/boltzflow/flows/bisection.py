"""Inverse of an elementwise monotone map by multi-bin bisection, differentiable by the inverse function theorem.

:func:`invert` finds, for every element, x in ``[low, high]`` with ``F(x; params) = y`` (paper 004 §5, notes
§3.5): each round splits the current bracket into K bins, evaluates F at the K - 1 inner grid points,
vectorised over the grid and the batch, and keeps the bin where F crosses y, so the bracket shrinks by K per
round; K = 2 is plain bisection. The round count is fixed from the tolerance, ``ceil(log(span / tol) / log K)`` (no
data-dependent stopping, so no host synchronisation), and the root is read off the last bracket by linear
interpolation of F (error O(tol²) instead of O(tol)). The bin count K is chosen per problem size by
:func:`choose_bins` (many bins and few rounds for small batches, where per-round overhead dominates; few bins
for large ones, where the grid evaluations dominate; see ``benchmarks/bench_bisection.py``).

Gradients come from the inverse function theorem (paper 004 eqs. 8-11) in a custom ``autograd.Function``::

    dx/dy = 1 / F'(x),    dx/dparams = -(dF/dparams)(x) / F'(x),

where F' and dF/dparams are obtained by re-evaluating F at the root with ``torch.func.vjp``. That backward is
itself differentiable (it runs with ``create_graph`` when asked, on the saved root, which stays attached to
the graph), so second derivatives through the inverse work: the gradient of ``log|dx/dy| = -log F'(x)`` with
respect to y and params (eqs. 10-11), and force matching through a root-found direction.

zuko's ``bisection`` is the model for the implicit gradients; it is first-order only (``once_differentiable``)
and halves one bracket per round, so the multi-bin search and the double-backward path are written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

#: roots x bins x cost per round that :func:`choose_bins` aims for. On CPU (``benchmarks/bench_bisection.py``,
#: one thread) every grid value costs the same, so few bins win as soon as there are more than ~10^3 roots x
#: components: K = 8 was fastest for 128 roots of an 8-component mixture, K = 2 (plain bisection) from 512 roots
#: on. On a GPU the grid values of a round run in parallel, so paper 004 §6.2 found up to 256 bins best for small
#: problems; the CUDA budget below follows that report and is not measured here.
GRID_BUDGET = {"cpu": 2**13, "cuda": 2**22}
MIN_BINS, MAX_BINS = 2, 256


def choose_bins(n_roots: int, cost: int = 1, device: str = "cpu") -> int:
    """Bins K per round for ``n_roots`` roots whose F costs ``cost`` units per evaluation, on ``device``'s type.

    A power of two, about ``GRID_BUDGET[device] / (n_roots * cost)``, within [MIN_BINS, MAX_BINS].
    """
    target = GRID_BUDGET.get(device, GRID_BUDGET["cpu"]) / max(1, n_roots * cost)
    return int(min(MAX_BINS, max(MIN_BINS, 2 ** round(math.log2(max(target, 1.0))))))


def default_tolerance(dtype: torch.dtype) -> float:
    """Bracket width (relative to the search interval) at which the search stops: 1e-10 in float64, else 1e-6."""
    return 1e-10 if dtype == torch.float64 else 1e-6


def n_rounds(bins: int, tol: float) -> int:
    """Rounds for a bracket of relative width 1 to shrink below ``tol`` with ``bins`` bins per round."""
    return max(1, math.ceil(math.log(1.0 / tol) / math.log(bins)))


def grid_search(
    fn: Callable[..., Tensor], y: Tensor, params: tuple[Tensor, ...], low: float, high: float, bins: int, tol: float
) -> Tensor:
    """The root of ``fn(x, *params) = y`` in [low, high] for every element, without gradients.

    Args:
        fn: elementwise, increasing in x; called with x of shape ``y.shape + (m,)`` and every param with an
            axis inserted before its last, shape ``y.shape + (1, k)``.
        y: targets, shape S.
        params: tensors of shape ``S + (k,)``.
        low: lower end of the search interval.
        high: upper end.
        bins: bins K >= 2 per round (K - 1 new evaluations of F per element and round).
        tol: bracket width, relative to ``high - low``, to reach.
    """
    grid_params = tuple(p.unsqueeze(-2) for p in params)
    inner = torch.arange(1, bins, dtype=y.dtype, device=y.device) / bins
    target = y.unsqueeze(-1)
    lo, width = torch.full_like(target, low), (high - low)
    for _ in range(n_rounds(bins, tol)):
        below = (fn(lo + width * inner, *grid_params) < target).sum(-1, keepdim=True).to(lo.dtype)  # not int64:
        # float * int64 tensor would promote to the *default* dtype, not y's
        lo = lo + (width / bins) * below  # the bin [lo + w i / K, lo + w (i + 1) / K] where F crosses y
        width = width / bins
    ends = fn(torch.cat([lo, lo + width], dim=-1), *grid_params)
    f0, f1 = ends[..., :1], ends[..., 1:]
    slope = f1 - f0
    frac = torch.where(slope > 0, (target - f0) / torch.where(slope > 0, slope, 1.0), 0.0).clamp(0.0, 1.0)
    return (lo + frac * width).squeeze(-1)


class _Root(torch.autograd.Function):
    """x(y, params) with F(x; params) = y; backward by the inverse function theorem, itself differentiable."""

    @staticmethod
    def forward(ctx, fn, low, high, bins, tol, y, *params):  # noqa: D102
        x = grid_search(fn, y, params, low, high, bins, tol)
        ctx.fn = fn
        ctx.save_for_backward(x, *params)
        return x

    @staticmethod
    def backward(ctx, grad_x):  # noqa: D102
        x, *params = ctx.saved_tensors
        _, pullback = torch.func.vjp(ctx.fn, x, *params)
        slope, *dparams = pullback(torch.ones_like(x))  # F is elementwise: these are F' and dF/dparams
        grad_y = grad_x / slope
        grad_params = [-grad_y.unsqueeze(-1) * d for d in dparams]
        return (None, None, None, None, None, grad_y, *grad_params)


def invert(
    fn: Callable[..., Tensor],
    y: Tensor,
    params: tuple[Tensor, ...] = (),
    low: float = 0.0,
    high: float = 1.0,
    bins: int | None = None,
    tol: float | None = None,
    cost: int = 1,
) -> Tensor:
    """Differentiable inverse x = F^-1(y) of an elementwise increasing map on [low, high].

    Args:
        fn: ``F(x, *params)``, elementwise in x and increasing; it must broadcast an extra trailing axis of x
            against params given as ``S + (1, k)`` (see :func:`grid_search`).
        y: targets, shape S; values outside ``[F(low), F(high)]`` give the nearest end.
        params: tensors broadcastable to ``S + (k,)``; gradients flow to them.
        low: lower end of the search interval.
        high: upper end.
        bins: bins per round K >= 2 (K = 2 is plain bisection); None chooses by size (:func:`choose_bins`).
        tol: bracket width relative to ``high - low``; None: :func:`default_tolerance` of y's dtype.
        cost: relative cost of one F evaluation, for :func:`choose_bins` (e.g. the number of mixture terms).

    Returns:
        x, shape S, differentiable (twice) with respect to y and params.
    """
    if not high > low:
        raise ValueError(f"bisection needs low < high, got [{low}, {high}]")
    bins = choose_bins(y.numel(), cost, y.device.type) if bins is None else int(bins)
    if bins < 2:
        raise ValueError(f"bisection bins must be >= 2, got {bins}")
    tol = default_tolerance(y.dtype) if tol is None else float(tol)
    if not 0 < tol < 1:
        raise ValueError(f"bisection tol must be in (0, 1), got {tol}")
    params = tuple(p.expand(*y.shape, p.shape[-1]) for p in params)
    return _Root.apply(fn, float(low), float(high), bins, tol, y, *params)
