"""Coupling flows on the internal coordinates of a molecule (Boltzmann-generator architecture, paper 004 §6.3).

Three families share the layout and differ in the elementwise map of their couplings:

* **spline** (:func:`ic_spline_flow`, spec kind ``"ic_spline"``): latent bonds, angles and *narrow* torsions
  (circular spread < 0.6 rad in the data, see :func:`ic_statistics`) are standard normal and go through RQ
  splines on ``[-tail_bound, tail_bound]`` with linear tails (C¹); the other torsions are uniform on
  [-pi, pi) and go through circular RQ splines plus a conditional rotation.
* **smooth** (:func:`ic_smooth_flow`, spec kind ``"ic_smooth"``, paper 004): C-infinity mixtures
  (:mod:`boltzflow.flows.smooth`). The non-periodic latent entries are uniform on [0, 1] and go through
  interval mixtures on [0, 1]; then :class:`NormalQuantile` maps them to the line. The periodic ones go
  through circle mixtures plus a conditional rotation. The paper maps [0, 1] onto fixed boxes of internal
  coordinates instead (bonds in [0.05, 0.3] nm); the normal quantile keeps full support (no -inf outside a
  box), C-infinity everywhere, and an identity stack of couplings is the same Gaussian model of the data
  statistics as in the spline flow. By default (``analytic_density=True``, the paper's choice) the analytic
  mixture is the density direction, so ``log_prob`` and its forces need no root finding, and sampling inverts
  the mixtures by bisection; ``False`` swaps the two.
* **realnvp** (:func:`ic_realnvp_flow`, spec kind ``"ic_realnvp"``, the affine baseline of paper 004's Table 1):
  :class:`~boltzflow.flows.elementwise.Affine` maps, all latent entries standard normal and on the line; after
  the couplings :class:`CircleFromLine` maps the wide torsions onto (-pi, pi).

The transform, latent -> Cartesian:

1. ``n_layers`` blocks of :class:`~boltzflow.flows.coupling.Coupling`, each block transforming in turn the
   even and the odd periodic torsions, the narrow torsions, the bonds and the angles, every group conditioned
   on all the others (periodic entries enter the conditioner as (cos, sin), the rest as they are);
2. (smooth only) :class:`NormalQuantile` on the non-periodic entries; (realnvp only) :class:`CircleFromLine` on
   the wide torsions;
3. :class:`ICStandardize`: fixed de-standardisation with data statistics, ``b = mean + std * z`` for bonds and
   angles, ``t = wrap(circular mean + spread * z)`` for torsions (spread 1 for the periodic ones);
4. :class:`~boltzflow.flows.internal.InternalCoordinates` (no rigid frame): internal vector -> flattened
   Cartesian positions, shape (..., 3n), nm.

So ``flow.sample(n).x`` has shape (n, 3n) (reshape to (n, n, 3) for an energy) and ``flow.log_prob(x)`` is
the exact log density of the rigid-motion-free configuration; as a density of Cartesian x it is off by the
constant ``log(8 pi^2 V)`` (see :mod:`boltzflow.flows.internal`), which cancels in self-normalised importance
weights, ESS and reweighting. The spline couplings start as the identity, so an untrained spline flow is the
Gaussian/uniform "mean structure" model of the statistics.

The flow knows no physics: the Z-matrix and statistics come in as numbers (the ``*_spec`` functions store
them in a JSON-able spec, the ``build_*`` functions rebuild the flow from it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.flows.conditioners import MLPConditioner
from boltzflow.flows.core import Compose, Transform
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.elementwise import Affine, CircularRQSpline, Elementwise, Inverted, RQSpline
from boltzflow.flows.flow import Flow
from boltzflow.flows.ic_layers import (
    CircleFromLine,
    ICBase,
    ICStandardize,
    ICStats,
    NormalQuantile,
    coupling_groups,
    ic_statistics,
    sibling_torsions,
)
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.nets import check_net_config
from boltzflow.flows.smooth import SmoothCircle, SmoothInterval
from boltzflow.flows.zmatrix import ZMatrix

__all__ = [
    "ICBase",
    "ICStandardize",
    "CircleFromLine",
    "ICStats",
    "NormalQuantile",
    "build_ic_realnvp",
    "build_ic_smooth",
    "build_ic_spline",
    "coupling_groups",
    "ic_coupling",
    "ic_realnvp_flow",
    "ic_realnvp_spec",
    "ic_smooth_flow",
    "ic_smooth_spec",
    "ic_spline_flow",
    "ic_spline_spec",
    "ic_statistics",
    "sibling_torsions",
]


def ic_coupling(
    periodic: Tensor, idx_b: Tensor, elementwise: Elementwise, hidden: Sequence[int], activation: str
) -> Coupling:
    """Coupling layer transforming the entries ``idx_b`` (all periodic or all not) given all the others.

    Args:
        periodic: bool mask of the periodic entries, shape (D,); they enter the conditioner as (cos, sin).
        idx_b: indices of the transformed entries (long, ascending).
        elementwise: the map of the b-entries; its ``periodic`` must match theirs.
        hidden: conditioner hidden widths.
        activation: conditioner activation.
    """
    periodic = torch.as_tensor(periodic, dtype=torch.bool)
    idx_b = torch.as_tensor(idx_b, dtype=torch.long)
    kinds = periodic[idx_b]
    if idx_b.numel() == 0 or bool(kinds.any()) != bool(kinds.all()):
        raise ValueError("idx_b must be non-empty and all periodic or all non-periodic")
    if bool(kinds.all()) != elementwise.periodic:
        raise ValueError("the elementwise map must be periodic exactly when the transformed entries are")
    mask = torch.ones_like(periodic)
    mask[idx_b] = False
    idx_a = torch.nonzero(mask).flatten()
    if idx_a.numel() == 0:
        raise ValueError("a coupling layer needs at least one conditioning entry")
    per, lin = idx_a[periodic[idx_a]], idx_a[~periodic[idx_a]]
    cond = MLPConditioner(per, lin, idx_b.numel(), elementwise.param_sizes, hidden, activation)
    return Coupling(mask, cond, elementwise)


def _ic_flow(
    zmatrix: ZMatrix,
    stats: ICStats,
    n_layers: int,
    make_map: Callable[[bool], Elementwise],
    hidden: Sequence[int],
    activation: str,
    latent: str,
) -> Flow:
    """The flow of the module docstring, with ``make_map(periodic)`` giving each coupling's elementwise map.

    ``latent``: ``"normal"`` (spline), ``"unit"`` (smooth: [0, 1] then :class:`NormalQuantile`) or ``"line"``
    (affine: every entry on the line, then :class:`CircleFromLine` puts the wide torsions on the circle).
    """
    ic = InternalCoordinates(zmatrix)
    angular = torch.zeros(ic.dim, dtype=torch.bool)
    angular[ic.periodic_idx] = True
    if stats.loc.shape != (ic.dim,) or stats.scale.shape != (ic.dim,):
        raise ValueError(f"stats must have shape ({ic.dim},) for this Z-matrix, got {tuple(stats.loc.shape)}")
    periodic = angular & (torch.as_tensor(stats.scale) == 1.0)  # wide torsions (see ic_statistics)
    on_circle = torch.zeros_like(periodic) if latent == "line" else periodic  # modelled as angles by the couplings
    layers: list[Transform] = [
        ic_coupling(on_circle, group, make_map(bool(on_circle[group[0]])), hidden, activation)
        for _ in range(n_layers)
        for group in coupling_groups(ic, periodic)
    ]
    layers += {"normal": [], "unit": [NormalQuantile(periodic)], "line": [CircleFromLine(periodic)]}[latent]
    layers += [ICStandardize(stats, angular), ic]
    return Flow(ICBase(on_circle, unit_interval=latent == "unit"), Compose(layers))


def ic_spline_flow(
    zmatrix: ZMatrix,
    stats: ICStats,
    n_layers: int = 4,
    bins: int = 8,
    hidden: Sequence[int] = (128, 128),
    tail_bound: float = 5.0,
    activation: str = "silu",
) -> Flow:
    """Spline flow latent (d = 3n - 6) -> flattened Cartesian positions (3n, nm), see the module docstring.

    Args:
        zmatrix: placement order of the atoms.
        stats: :func:`ic_statistics` of training data (shapes (d,)).
        n_layers: coupling blocks (each transforms all groups once).
        bins: spline bins K.
        hidden: conditioner hidden widths.
        tail_bound: spline interval half-width for standardised bonds and angles.
        activation: conditioner activation.
    """
    check_net_config(n_layers=n_layers, hidden=hidden, activation=activation, bins=(bins, 2))

    def make_map(periodic: bool) -> Elementwise:
        return CircularRQSpline(bins, rotate=True) if periodic else RQSpline(bins, tail_bound)

    return _ic_flow(zmatrix, stats, n_layers, make_map, hidden, activation, latent="normal")


def ic_smooth_flow(
    zmatrix: ZMatrix,
    stats: ICStats,
    n_layers: int = 4,
    components: int = 8,
    hidden: Sequence[int] = (128, 128),
    activation: str = "silu",
    ramp_power: int = 1,
    analytic_density: bool = True,
    fixed_periodic_scale: float | None = None,
    bisection_bins: int | None = None,
) -> Flow:
    """Smooth (C-infinity) mixture flow latent (d = 3n - 6) -> flattened Cartesian positions (3n, nm).

    Args:
        zmatrix: placement order of the atoms.
        stats: :func:`ic_statistics` of training data (shapes (d,)).
        n_layers: coupling blocks (each transforms all groups once).
        components: mixture components K per entry.
        hidden: conditioner hidden widths.
        activation: conditioner activation.
        ramp_power: exponent k of the ramp exp(-a z^-k), 1 or 2.
        analytic_density: the analytic mixtures evaluate ``log_prob`` and sampling uses root finding (paper
            004's default); False swaps the directions.
        fixed_periodic_scale: fix the circle components' scale (1.3086 = the official code) instead of
            learning it in [1, e].
        bisection_bins: bins per bisection round (None: chosen by size).
    """
    check_net_config(n_layers=n_layers, hidden=hidden, activation=activation, components=(components, 1))

    def make_map(periodic: bool) -> Elementwise:
        if periodic:
            inner: Elementwise = SmoothCircle(components, ramp_power, True, fixed_periodic_scale, bisection_bins)
        else:
            inner = SmoothInterval(components, 0.0, 1.0, ramp_power, bisection_bins)
        return Inverted(inner) if analytic_density else inner

    return _ic_flow(zmatrix, stats, n_layers, make_map, hidden, activation, latent="unit")


def ic_realnvp_flow(
    zmatrix: ZMatrix,
    stats: ICStats,
    n_layers: int = 4,
    hidden: Sequence[int] = (128, 128),
    activation: str = "silu",
    scale_clamp: float | None = 2.0,
) -> Flow:
    """Affine (RealNVP) coupling flow latent (d = 3n - 6) -> flattened Cartesian positions (3n, nm).

    The baseline of paper 004's Table 1: the layout of the spline flow with :class:`~boltzflow.flows.elementwise.
    Affine` maps. An affine map is no bijection of the circle, so here every latent entry is standard normal and
    stays on the line through the couplings, and :class:`CircleFromLine` maps the wide torsions onto (-pi, pi)
    at the end (the periodic entries enter the conditioners as plain numbers).

    Args:
        zmatrix: placement order of the atoms.
        stats: :func:`ic_statistics` of training data (shapes (d,)).
        n_layers: coupling blocks (each transforms all groups once).
        hidden: conditioner hidden widths.
        activation: conditioner activation.
        scale_clamp: soft bound on the log-scale per layer (None: unbounded).
    """
    check_net_config(n_layers=n_layers, hidden=hidden, activation=activation)
    return _ic_flow(zmatrix, stats, n_layers, lambda periodic: Affine(scale_clamp), hidden, activation, latent="line")


def _spec(kind: str, build: Callable[..., Flow], zmatrix: ZMatrix, stats: ICStats, args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON-able spec of ``build(zmatrix, stats, *args, **kwargs)``: the builder's own parameters (defaults
    filled in from its signature, so the parameter list lives in one place) go to ``config``, every other
    keyword to ``info``."""
    names = set(inspect.signature(build).parameters)
    info = {k: v for k, v in kwargs.items() if k not in names}
    bound = inspect.signature(build).bind(zmatrix, stats, *args, **{k: v for k, v in kwargs.items() if k in names})
    bound.apply_defaults()
    config = {k: v for k, v in bound.arguments.items() if k not in ("zmatrix", "stats")}
    config["hidden"] = list(config["hidden"])
    as_list = lambda v: [float(a) for a in torch.as_tensor(v).flatten()]  # noqa: E731
    return {
        "kind": kind,
        "config": {"zmatrix": np.asarray(zmatrix.rows).tolist(), **config},
        "loc": as_list(stats.loc),
        "scale": as_list(stats.scale),
        **({"info": info} if info else {}),
    }


def ic_spline_spec(zmatrix: ZMatrix, stats: ICStats, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """JSON-able spec of :func:`ic_spline_flow` (kind ``"ic_spline"``): its arguments after ``stats``, positional
    or by name; other keywords are stored as is under ``info`` (molecule, ...)."""
    return _spec("ic_spline", ic_spline_flow, zmatrix, stats, args, kwargs)


def ic_smooth_spec(zmatrix: ZMatrix, stats: ICStats, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """JSON-able spec of :func:`ic_smooth_flow` (kind ``"ic_smooth"``): its arguments after ``stats``, positional
    or by name; other keywords are stored as is under ``info`` (molecule, ...)."""
    return _spec("ic_smooth", ic_smooth_flow, zmatrix, stats, args, kwargs)


def ic_realnvp_spec(zmatrix: ZMatrix, stats: ICStats, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """JSON-able spec of :func:`ic_realnvp_flow` (kind ``"ic_realnvp"``): its arguments after ``stats``,
    positional or by name; other keywords are stored as is under ``info`` (molecule, ...)."""
    return _spec("ic_realnvp", ic_realnvp_flow, zmatrix, stats, args, kwargs)


def _unpack(config: dict[str, Any], loc: Any, scale: Any) -> tuple[dict[str, Any], ZMatrix, ICStats]:
    config = dict(config)
    if "zmatrix" not in config:
        raise ValueError("internal-coordinate flow config needs a 'zmatrix'")
    zmatrix = ZMatrix(np.asarray(config.pop("zmatrix"), dtype=np.int64))
    dtype = torch.get_default_dtype()
    return config, zmatrix, ICStats(torch.as_tensor(loc, dtype=dtype), torch.as_tensor(scale, dtype=dtype))


def build_ic_spline(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    """Builder for ``boltzflow.flows.spec.BUILDERS["ic_spline"]``: the flow of an :func:`ic_spline_spec`."""
    config, zmatrix, stats = _unpack(config, loc, scale)
    return ic_spline_flow(zmatrix, stats, **config)


def build_ic_smooth(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    """Builder for ``boltzflow.flows.spec.BUILDERS["ic_smooth"]``: the flow of an :func:`ic_smooth_spec`."""
    config, zmatrix, stats = _unpack(config, loc, scale)
    return ic_smooth_flow(zmatrix, stats, **config)


def build_ic_realnvp(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    """Builder for ``boltzflow.flows.spec.BUILDERS["ic_realnvp"]``: the flow of an :func:`ic_realnvp_spec`."""
    config, zmatrix, stats = _unpack(config, loc, scale)
    return ic_realnvp_flow(zmatrix, stats, **config)
