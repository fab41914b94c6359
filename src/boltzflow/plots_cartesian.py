"""Figures of the 66-D Cartesian alanine experiment (paper 001 Fig. 4): array in, Figure out."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:gray")


def min_r_histograms(r_min: Mapping[str, np.ndarray], threshold_nm: float | None = 0.17) -> Figure:
    """Paper 001 Fig. 4 (left): distribution of the smallest non-bonded distance per configuration.

    Args:
        r_min: name -> r_min per configuration, shape (n,), nm (the first entry is drawn as the reference).
        threshold_nm: a vertical marker (the penalty's ε), or None.
    """
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    finite = [np.asarray(v)[np.isfinite(v)] for v in r_min.values()]
    lo = min(float(v.min()) for v in finite if v.size)
    hi = max(float(v.max()) for v in finite if v.size)
    bins = np.linspace(max(0.0, lo), hi, 80)
    for k, (name, values) in enumerate(zip(r_min, finite, strict=True)):
        style = {"histtype": "stepfilled", "alpha": 0.3} if k == 0 else {"histtype": "step", "lw": 1.4}
        ax.hist(values, bins=bins, density=True, color=_COLORS[k % len(_COLORS)], label=name, **style)
    if threshold_nm is not None:
        ax.axvline(threshold_nm, color="black", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("min non-bonded distance r_min [nm]")
    ax.set_ylabel("density (log scale)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pca_panels(proj: Mapping[str, np.ndarray], bins: int = 60) -> Figure:
    """Paper 001 Fig. 4 (right): 2-D histograms of the first two principal components, one panel per set.

    Args:
        proj: name -> projections, shape (n, 2) (the first entry sets the axis limits).
        bins: histogram bins per axis.
    """
    first = np.asarray(next(iter(proj.values())))
    lo, hi = np.percentile(first, 0.5, axis=0), np.percentile(first, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    edges = [np.linspace(lo[d] - pad[d], hi[d] + pad[d], bins + 1) for d in range(2)]
    ncols = min(3, len(proj))
    nrows = -(-len(proj) // ncols)
    fig = Figure(figsize=(3.4 * ncols, 3.1 * nrows))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax in axes[len(proj) :]:
        ax.set_visible(False)
    for ax, (name, p) in zip(axes, proj.items(), strict=False):
        p = np.asarray(p)
        p = p[np.isfinite(p).all(1)]
        h, _, _ = np.histogram2d(p[:, 0], p[:, 1], bins=edges, density=True)
        ax.pcolormesh(edges[0], edges[1], np.log10(h.T + 1e-4), cmap="viridis", shading="flat")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("PC 1")
    for ax in axes[::ncols]:
        ax.set_ylabel("PC 2")
    fig.tight_layout()
    return fig
