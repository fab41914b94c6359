"""Elementwise maps for the one coupling layer (:class:`~boltzflow.flows.coupling.Coupling`).

An elementwise map is a univariate bijection applied entry by entry; its parameters come, per entry, from the
coupling's conditioner. The contract the coupling relies on:

* ``param_sizes``: the raw conditioner outputs per transformed entry, one number per parameter group, in the
  order the conditioner lays them out. A group of size 1 arrives squeezed, shape (..., d_b); a larger one as
  (..., d_b, size). ``n_params`` is their sum.
* ``forward(x, params) -> (y, logdet)`` and ``inverse(y, params) -> (x, logdet)``, all shapes (..., d_b), where
  ``logdet`` is the elementwise log|dy/dx| (resp. log|dx/dy|) of *that* direction; the coupling sums it.
* ``periodic``: True when the map acts on angles (radians) and is a diffeomorphism of the circle [-pi, pi).

Maps hold no trainable parameters; everything learned lives in the conditioner. The affine and spline maps are
the identity at all-zero raw parameters, so a zero-initialised conditioner starts a layer as the identity.

Here: :class:`Affine` (RealNVP, paper 001 §4, with its soft scale clamp), :class:`RQSpline` (monotone
rational-quadratic spline on an interval with linear tails), :class:`CircularRQSpline` (circular spline plus an
optional conditional rotation) and :class:`Inverted` (swaps the two directions of any map). The C-infinity
mixtures live in :mod:`boltzflow.flows.smooth`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from boltzflow.flows.splines import rq_spline, spline_parameters

Params = tuple[Tensor, ...]


def wrap(x: Tensor) -> Tensor:
    """Angles (radians) mapped to [-pi, pi)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


class Elementwise(nn.Module):
    """Base class of the elementwise maps (see the module docstring for the contract)."""

    param_sizes: tuple[int, ...] = ()
    periodic: bool = False

    @property
    def n_params(self) -> int:
        """Raw conditioner outputs per transformed entry."""
        return sum(self.param_sizes)

    def forward(self, x: Tensor, params: Params) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Map x -> y elementwise; returns ``(y, log|dy/dx|)``, shapes (..., d_b)."""
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Params) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Map y -> x elementwise; returns ``(x, log|dx/dy|)``, shapes (..., d_b)."""
        raise NotImplementedError


class Affine(Elementwise):
    """RealNVP's affine map (paper 001 §4), params ``(s, t)``, each (..., d_b).

    The paper writes the data -> latent direction, our ``inverse``: ``z = x exp(s) + t``, log-det ``s``; its
    explicit inverse is our ``forward`` (sampling): ``x = (z - t) exp(-s)``, log-det ``-s``. With
    ``scale_clamp = c`` the raw ``s`` is soft-clamped to ``c tanh(s / c)``, so a layer scales by at most e^c.

    Args:
        scale_clamp: soft bound ``c`` on ``|s|``, or None (unbounded).
    """

    param_sizes = (1, 1)

    def __init__(self, scale_clamp: float | None = None) -> None:
        super().__init__()
        if scale_clamp is not None and not 0 < scale_clamp < float("inf"):
            raise ValueError(f"scale_clamp must be positive and finite, or None, got {scale_clamp}")
        self.scale_clamp = scale_clamp

    def _s(self, s: Tensor) -> Tensor:
        return s if self.scale_clamp is None else torch.tanh(s / self.scale_clamp) * self.scale_clamp

    def forward(self, x: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        s, t = self._s(params[0]), params[1]
        return (x - t) * torch.exp(-s), -s

    def inverse(self, y: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        s, t = self._s(params[0]), params[1]
        return torch.addcmul(t, y, torch.exp(s)), s


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")


class RQSpline(Elementwise):
    """Monotone rational-quadratic spline on ``[-bound, bound]`` with linear tails (C¹ on the line).

    Params: K raw widths, K raw heights, K + 1 raw knot slopes (:func:`~boltzflow.flows.splines.spline_parameters`).

    Args:
        bins: number of bins K (>= 2).
        bound: half-width of the spline interval.
    """

    def __init__(self, bins: int = 8, bound: float = 5.0) -> None:
        super().__init__()
        _check_bins(bins)
        if not bound > 0:
            raise ValueError(f"tail_bound must be positive, got {bound}")
        self.bins, self.bound = bins, float(bound)
        self.param_sizes = (bins, bins, bins + 1)

    def _spline(self, v: Tensor, params: Params, inverse: bool) -> tuple[Tensor, Tensor]:
        b = self.bound
        p = spline_parameters(*params, low=-b, high=b, circular=False)
        return rq_spline(v, p.widths, p.heights, p.derivatives, inverse=inverse, low=-b, high=b)

    def forward(self, x: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        return self._spline(x, params, inverse=False)

    def inverse(self, y: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        return self._spline(y, params, inverse=True)


class CircleMap(Elementwise):
    """Base of the maps of the circle: ``y = wrap(g(wrap(x)) + shift)`` with an optional conditional rotation.

    Subclasses define ``_circle(v, params, inverse)`` for v in [-pi, pi] (a diffeomorphism fixing ±pi) and
    ``_base_sizes``; with ``rotate`` one more raw parameter per entry, last, is the shift (radians).
    """

    periodic = True
    _base_sizes: tuple[int, ...] = ()

    def __init__(self, rotate: bool) -> None:
        super().__init__()
        self.rotate = bool(rotate)
        self.param_sizes = self._base_sizes + ((1,) if self.rotate else ())

    def _circle(self, v: Tensor, params: Params, inverse: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, x: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        base = params[: len(self._base_sizes)]
        y, logdet = self._circle(wrap(x), base, inverse=False)
        return (wrap(y + params[-1]) if self.rotate else y), logdet

    def inverse(self, y: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        base = params[: len(self._base_sizes)]
        return self._circle(wrap(y - params[-1]) if self.rotate else wrap(y), base, inverse=True)


class CircularRQSpline(CircleMap):
    """Circular rational-quadratic spline on [-pi, pi] (Rezende et al. 2020), optionally rotated.

    Params: K raw widths, K raw heights, K raw knot slopes (the seam slope is shared), then the shift.

    Args:
        bins: number of bins K (>= 2).
        rotate: add a conditional rotation after the spline.
    """

    def __init__(self, bins: int = 8, rotate: bool = True) -> None:
        _check_bins(bins)
        self._base_sizes = (bins, bins, bins)
        super().__init__(rotate)
        self.bins = bins

    def _circle(self, v: Tensor, params: Params, inverse: bool) -> tuple[Tensor, Tensor]:
        p = spline_parameters(*params, circular=True)
        return rq_spline(v, p.widths, p.heights, p.derivatives, inverse=inverse)


class Inverted(Elementwise):
    """Any elementwise map with its two directions swapped (same parameters).

    E.g. ``Inverted(SmoothInterval(...))`` puts the analytic mixture in the density direction and the
    root finding in the sampling direction (paper 004's default for training on data).

    Args:
        inner: the map to invert.
    """

    def __init__(self, inner: Elementwise) -> None:
        super().__init__()
        self.inner = inner
        self.param_sizes = inner.param_sizes
        self.periodic = inner.periodic

    def forward(self, x: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        return self.inner.inverse(x, params)

    def inverse(self, y: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        return self.inner.forward(y, params)
