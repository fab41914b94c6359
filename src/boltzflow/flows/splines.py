"""Monotone rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows"), as pure functions.

``rq_spline`` maps x -> y on ``[low, high]`` with K bins given by bin widths, bin heights and the K + 1
derivatives at the knots; outside the interval it continues linearly with the boundary slopes, so the map is
C¹ on the whole line. When the first and last derivatives are equal and ``low``/``high`` are the same for x
and y (our case: ``[-pi, pi]``), the restriction to the interval fixes both ends and its derivative matches
across the seam, so it is a C¹ diffeomorphism of the circle (Rezende et al. 2020).

``spline_parameters`` turns unconstrained network outputs into valid widths, heights and derivatives; all-zero
raw parameters give the identity map.

zuko (``NCSF``, ``MonotonicRQSTransform``) and nflows implement the same spline, but their transforms run in
the data -> base direction with their own module interface; ours follow boltzflow's contract (a pure function
with an ``inverse`` flag, returning ``(output, logdet of that direction)``), so the code is written here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class SplineParams(NamedTuple):
    """Parameters of a K-bin rational-quadratic spline (batched, last axis = bins or knots).

    Attributes:
        widths: bin widths in x, shape (..., K), positive, summing to ``high - low``.
        heights: bin heights in y, shape (..., K), positive, summing to ``high - low``.
        derivatives: slopes at the K + 1 knots, shape (..., K + 1), positive.
    """

    widths: Tensor
    heights: Tensor
    derivatives: Tensor


def spline_parameters(
    raw_widths: Tensor,
    raw_heights: Tensor,
    raw_derivatives: Tensor,
    low: float = -math.pi,
    high: float = math.pi,
    circular: bool = True,
    min_bin: float = 1e-3,
    min_derivative: float = 1e-3,
) -> SplineParams:
    """Valid spline parameters from unconstrained ones (zeros -> identity map).

    Args:
        raw_widths: shape (..., K); softmax -> bin widths of at least ``min_bin * (high - low)``.
        raw_heights: shape (..., K); same for heights.
        raw_derivatives: shape (..., K) if ``circular`` (the last knot reuses the first slope) else
            (..., K + 1) (the boundary slopes are free, e.g. for linear tails).
        low: lower end of the interval.
        high: upper end of the interval.
        circular: tie the two boundary derivatives together.
        min_bin: smallest bin as a fraction of the interval.
        min_derivative: smallest knot slope.
    """
    k = raw_widths.shape[-1]
    if raw_heights.shape[-1] != k or raw_derivatives.shape[-1] != (k if circular else k + 1):
        raise ValueError(
            f"spline needs K widths, K heights and {'K' if circular else 'K + 1'} derivatives; got "
            f"{raw_widths.shape[-1]}, {raw_heights.shape[-1]}, {raw_derivatives.shape[-1]}"
        )
    if min_bin * k >= 1:
        raise ValueError(f"min_bin * bins must be < 1, got {min_bin} * {k}")
    span = high - low

    def bins(raw: Tensor) -> Tensor:
        return span * (min_bin + (1 - min_bin * k) * torch.softmax(raw, dim=-1))

    # softplus shifted so that a raw value of 0 gives slope exactly 1
    shift = math.log(math.expm1(1 - min_derivative))
    derivatives = min_derivative + F.softplus(raw_derivatives + shift)
    if circular:
        derivatives = torch.cat([derivatives, derivatives[..., :1]], dim=-1)
    return SplineParams(bins(raw_widths), bins(raw_heights), derivatives)


def _knots(sizes: Tensor, low: float, high: float) -> Tensor:
    """Knot positions, shape (..., K + 1), from bin sizes; ends pinned to ``low`` and ``high`` exactly."""
    inner = low + torch.cumsum(sizes, dim=-1)[..., :-1]
    ends = sizes.new_tensor([low, high]).expand(*sizes.shape[:-1], 2)
    return torch.cat([ends[..., :1], inner, ends[..., 1:]], dim=-1)


def _take(params: Tensor, idx: Tensor) -> Tensor:
    """``params[..., idx]`` elementwise, shape of ``idx``."""
    return torch.gather(params, -1, idx[..., None]).squeeze(-1)


def rq_spline(
    x: Tensor,
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    inverse: bool = False,
    low: float = -math.pi,
    high: float = math.pi,
) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline on ``[low, high]`` with linear tails, applied elementwise.

    Args:
        x: inputs, shape (...) (y-values when ``inverse``).
        widths: bin widths, shape (..., K), positive, summing to ``high - low`` (:func:`spline_parameters`).
        heights: bin heights, shape (..., K), positive, summing to ``high - low``.
        derivatives: knot slopes, shape (..., K + 1), positive.
        inverse: evaluate the inverse map.
        low: lower end of the interval (same for x and y).
        high: upper end of the interval.

    Returns:
        ``(y, logdet)``, both shape (...): the image and log|dy/dx| of the direction evaluated.
    """
    shape = torch.broadcast_shapes(x.shape, widths.shape[:-1], heights.shape[:-1], derivatives.shape[:-1])
    x = x.expand(shape)
    k = widths.shape[-1]
    w = widths.expand(*shape, k)
    h = heights.expand(*shape, k)
    d = derivatives.expand(*shape, k + 1)
    xk, yk = _knots(w, low, high), _knots(h, low, high)

    inside = (x >= low) & (x <= high)
    xin = x.clamp(low, high)
    search = yk if inverse else xk
    idx = (xin[..., None] >= search[..., 1:-1]).sum(-1)
    x0, y0, wb, hb = _take(xk, idx), _take(yk, idx), _take(w, idx), _take(h, idx)
    d0, d1 = _take(d, idx), _take(d, idx + 1)
    s = hb / wb
    c = d0 + d1 - 2 * s

    if inverse:
        dy = xin - y0
        a = hb * (s - d0) + dy * c
        b = hb * d0 - dy * c
        cc = -s * dy
        disc = (b**2 - 4 * a * cc).clamp_min(0)
        xi = (2 * cc / (-b - torch.sqrt(disc))).clamp(0, 1)
        out = x0 + xi * wb
    else:
        xi = ((xin - x0) / wb).clamp(0, 1)
        out = y0 + hb * (s * xi**2 + d0 * xi * (1 - xi)) / (s + c * xi * (1 - xi))
    om = xi * (1 - xi)
    denom = s + c * om
    numer = d1 * xi**2 + 2 * s * om + d0 * (1 - xi) ** 2
    log_slope = 2 * torch.log(s) + torch.log(numer) - 2 * torch.log(denom)

    # linear tails with the boundary slopes
    slope_lo, slope_hi = d[..., 0], d[..., -1]
    if inverse:
        tail = torch.where(x < low, low + (x - low) / slope_lo, high + (x - high) / slope_hi)
    else:
        tail = torch.where(x < low, low + (x - low) * slope_lo, high + (x - high) * slope_hi)
    tail_log_slope = torch.log(torch.where(x < low, slope_lo, slope_hi))
    y = torch.where(inside, out, tail)
    logdet = torch.where(inside, log_slope, tail_log_slope)
    return y, -logdet if inverse else logdet
