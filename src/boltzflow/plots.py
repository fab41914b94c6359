"""Figures: functions that take arrays and return a matplotlib Figure (no pyplot state, no display needed).

Conventions every figure here keeps, so a reader can trust it (the tests in ``tests/test_plots.py`` check them):

* every panel has axis labels with a unit in parentheses ("reduced units" for the dimensionless model systems);
* free energies and reduced energies of one figure are in kT; when the temperature is known the kJ/mol scale is
  a secondary axis (F(φ)) or stated in the colourbar label (2-D maps);
* free-energy estimates from samples mask histogram bins with fewer than ``min_count`` samples (left blank, not
  drawn as spikes) and say so in the figure; F(φ) curves carry a band of ±1 sd over independent draws;
* 2-D histograms have a colourbar with a label; legends sit outside the axes, below the panels, so they never
  cover data.

The free-energy figures live in :mod:`boltzflow.plots_free_energy` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from boltzflow.io import atomic_path
from boltzflow.plots_free_energy import energy_histograms, free_energy_phi, free_energy_phi_psi, legend_below

__all__ = ["distance_histograms", "dynamics", "energy_histograms", "free_energy_phi", "free_energy_phi_psi",
           "legend_below", "min_r_histograms", "pca_panels", "ramachandran", "save"]


def save(fig: Figure, path: str | Path, dpi: int = 130) -> None:
    """Save a figure atomically (PNG by the suffix of ``path``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")


def distance_histograms(panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """Paper 001 Fig. 1: inter-particle distance histograms, one panel per case.

    Args:
        panels: ``(title, r_singular_reference, r_training_data, r_generated)`` per case, each r of shape (n,),
            reduced length units.
    """
    fig = Figure(figsize=(4.2 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    bins = np.linspace(0.0, 4.0, 81)
    for ax, (title, r_sing, r_data, r_gen) in zip(axes, panels, strict=True):
        ax.hist(r_sing, bins=bins, density=True, histtype="step", color="black", lw=1.5, label="singular reference")
        if r_data is not r_sing:
            ax.hist(r_data, bins=bins, density=True, histtype="step", color="tab:blue", lw=1.2, label="training data")
        ax.hist(r_gen, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color="tab:red", label="generated")
        ax.axvline(0.3, color="gray", ls=":", lw=1, label="collision threshold r = 0.3")
        ax.set(title=title, xlabel="distance r (reduced units)", ylabel="density (1/length, log scale)", yscale="log")
    legend_below(fig, axes)
    return fig


def dynamics(x_real: np.ndarray, x_gen: np.ndarray, x1_real: np.ndarray, x1_gen: np.ndarray, dt: float) -> Figure:
    """Paper 001 Fig. 2: particle positions (real vs generated) and x1 trajectories.

    Args:
        x_real: reference samples, shape (n, 4), ordered (x1, x2, y1, y2), reduced length units.
        x_gen: generated samples, shape (m, 4).
        x1_real: x1 along a Langevin trajectory, shape (T,).
        x1_gen: x1 along the flow-generated sequence, shape (T',).
        dt: time between frames, reduced time units.
    """
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for ax, x, title in ((axes[0, 0], x_real, "(a) reference samples"), (axes[0, 1], x_gen, "(b) generated")):
        k = min(len(x), 3000)
        ax.scatter(x[:k, 0], x[:k, 1], s=2, alpha=0.4, label="particle 1")
        ax.scatter(x[:k, 2], x[:k, 3], s=2, alpha=0.4, label="particle 2")
        ax.set(title=title, xlim=(-2.2, 2.2), ylim=(-1.6, 1.6), xlabel="x (reduced units)",
               ylabel="y (reduced units)")
        ax.set_aspect("equal")
    panels = ((axes[1, 0], x1_real, "(c) overdamped Langevin"), (axes[1, 1], x1_gen, "(d) flow + latent OU"))
    for ax, x1, title in panels:
        ax.plot(np.arange(len(x1)) * dt, x1, lw=0.5)
        ax.set(title=title, xlabel="time (reduced units)", ylabel="x1 (reduced units)", ylim=(-2, 2))
    legend_below(fig, axes[0, :], markerscale=4)
    return fig


def ramachandran(ref: np.ndarray, gens: Mapping[str, np.ndarray], bins: int = 90) -> Figure:
    """Paper 001 Fig. 3: (φ, ψ) densities of the reference and of each model side by side, log colour scale.

    Empty bins are left blank (white).

    Args:
        ref: reference angles, shape (n, 2), radians in [-π, π).
        gens: model name -> generated angles, shape (m, 2), radians in [-π, π) (wrap them first).
        bins: bins per axis.
    """
    panels = [("MD reference", ref), *gens.items()]
    edges = np.linspace(-180, 180, bins + 1)
    dens = [np.histogram2d(*np.degrees(a).T, bins=[edges, edges], density=True)[0] for _, a in panels]
    positive = np.concatenate([d[d > 0] for d in dens])
    norm = LogNorm(vmin=positive.min(), vmax=positive.max())
    fig = Figure(figsize=(4.0 * len(panels) + 0.8, 3.8))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, _), d in zip(axes, panels, dens, strict=True):
        mesh = ax.pcolormesh(edges, edges, np.ma.masked_equal(d.T, 0), norm=norm, cmap="viridis")
        ax.set(title=title, xlabel="φ (degrees)", xticks=[-180, -90, 0, 90, 180], yticks=[-180, -90, 0, 90, 180])
        ax.set_aspect("equal")
    axes[0].set_ylabel("ψ (degrees)")
    fig.colorbar(mesh, ax=list(axes), label="density (1/deg², log scale; empty bins blank)")
    return fig


_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:gray")


def min_r_histograms(r_min: Mapping[str, np.ndarray], threshold_nm: float | None = 0.17) -> Figure:
    """Paper 001 Fig. 4 (left): distribution of the smallest non-bonded distance per configuration.

    Args:
        r_min: name -> r_min per configuration, shape (n,), nm (the first entry is drawn as the reference).
        threshold_nm: a vertical marker (the penalty's ε), or None.
    """
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    finite = [np.asarray(v)[np.isfinite(v)] for v in r_min.values()]
    lo = min(float(v.min()) for v in finite if v.size)
    hi = max(float(v.max()) for v in finite if v.size)
    bins = np.linspace(max(0.0, lo), hi, 80)
    for k, (name, values) in enumerate(zip(r_min, finite, strict=True)):
        style = {"histtype": "stepfilled", "alpha": 0.3} if k == 0 else {"histtype": "step", "lw": 1.4}
        ax.hist(values, bins=bins, density=True, color=_COLORS[k % len(_COLORS)], label=name, **style)
    if threshold_nm is not None:
        ax.axvline(threshold_nm, color="black", ls=":", lw=1, label=f"ε = {threshold_nm:g} nm")
    ax.set(yscale="log", xlabel="min non-bonded distance r_min (nm)", ylabel="density (1/nm, log scale)")
    legend_below(fig, [ax])
    return fig


def pca_panels(proj: Mapping[str, np.ndarray], bins: int = 60, unit: str = "standardised units") -> Figure:
    """Paper 001 Fig. 4 (right): 2-D histograms of the first two principal components, one panel per set.

    Bins without samples are left blank; the colour is log10 of the density on a scale shared by all panels.

    Args:
        proj: name -> projections, shape (n, 2) (the first entry sets the axis limits).
        bins: histogram bins per axis.
        unit: unit of the projections (the PCA of alanine-cartesian runs on standardised coordinates).
    """
    first = np.asarray(next(iter(proj.values())))
    lo, hi = np.percentile(first, 0.5, axis=0), np.percentile(first, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    edges = [np.linspace(lo[d] - pad[d], hi[d] + pad[d], bins + 1) for d in range(2)]
    ncols = min(3, len(proj))
    nrows = -(-len(proj) // ncols)
    fig = Figure(figsize=(3.4 * ncols + 0.8, 3.1 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax in axes[len(proj) :]:
        ax.set_visible(False)
    hists = []
    for p in proj.values():
        p = np.asarray(p)
        p = p[np.isfinite(p).all(1)]
        hists.append(np.histogram2d(p[:, 0], p[:, 1], bins=edges, density=True)[0])
    positive = np.concatenate([h[h > 0] for h in hists] + [np.ones(1)])
    vmin, vmax = np.log10(positive.min()), np.log10(positive.max())
    for ax, name, h in zip(axes, proj, hists, strict=False):
        with np.errstate(divide="ignore"):
            mesh = ax.pcolormesh(edges[0], edges[1], np.ma.masked_invalid(np.where(h > 0, np.log10(h), np.nan)).T,
                                 cmap="viridis", shading="flat", vmin=vmin, vmax=vmax)
        ax.set(title=name, xlabel=f"PC 1 ({unit})", ylabel=f"PC 2 ({unit})")
        ax.title.set_fontsize(9)
    fig.colorbar(mesh, ax=list(axes[: len(proj)]), label=f"log10 density (1/{unit}²; empty bins blank)")
    return fig
