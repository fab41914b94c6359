"""Figures: functions that take arrays and return a matplotlib Figure (no pyplot state, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from boltzflow.io import atomic_path


def save(fig: Figure, path: str | Path, dpi: int = 130) -> None:
    """Save a figure atomically (PNG by the suffix of ``path``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")


def distance_histograms(panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """Paper 001 Fig. 1: inter-particle distance histograms, one panel per case.

    Args:
        panels: ``(title, r_singular_reference, r_training_data, r_generated)`` per case, each r of shape (n,).
    """
    fig = Figure(figsize=(4.2 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    bins = np.linspace(0.0, 4.0, 81)
    for ax, (title, r_sing, r_data, r_gen) in zip(axes, panels, strict=True):
        ax.hist(r_sing, bins=bins, density=True, histtype="step", color="black", lw=1.5, label="singular reference")
        if r_data is not r_sing:
            ax.hist(r_data, bins=bins, density=True, histtype="step", color="tab:blue", lw=1.2, label="training data")
        ax.hist(r_gen, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color="tab:red", label="generated")
        ax.set_title(title)
        ax.set_xlabel("r")
        ax.set_yscale("log")
        ax.axvline(0.3, color="gray", ls=":", lw=1)
    axes[0].set_ylabel("density (log scale)")
    axes[-1].legend(fontsize=8)
    return fig


def dynamics(x_real: np.ndarray, x_gen: np.ndarray, x1_real: np.ndarray, x1_gen: np.ndarray, dt: float) -> Figure:
    """Paper 001 Fig. 2: particle positions (real vs generated) and x1 trajectories.

    Args:
        x_real: reference samples, shape (n, 4), ordered (x1, x2, y1, y2).
        x_gen: generated samples, shape (m, 4).
        x1_real: x1 along a Langevin trajectory, shape (T,).
        x1_gen: x1 along the flow-generated sequence, shape (T',).
        dt: time between frames.
    """
    fig = Figure(figsize=(11, 7))
    axes = fig.subplots(2, 2)
    for ax, x, title in ((axes[0, 0], x_real, "(a) reference samples"), (axes[0, 1], x_gen, "(b) generated")):
        k = min(len(x), 3000)
        ax.scatter(x[:k, 0], x[:k, 1], s=2, alpha=0.4, label="particle 1")
        ax.scatter(x[:k, 2], x[:k, 3], s=2, alpha=0.4, label="particle 2")
        ax.set_title(title)
        ax.set_xlim(-2.2, 2.2)
        ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
    axes[0, 1].legend(markerscale=4, fontsize=8)
    panels = ((axes[1, 0], x1_real, "(c) overdamped Langevin"), (axes[1, 1], x1_gen, "(d) flow + latent OU"))
    for ax, x1, title in panels:
        ax.plot(np.arange(len(x1)) * dt, x1, lw=0.5)
        ax.set_title(title)
        ax.set_xlabel("time")
        ax.set_ylabel("x1")
        ax.set_ylim(-2, 2)
    fig.tight_layout()
    return fig


def ramachandran(ref: np.ndarray, gens: Mapping[str, np.ndarray], bins: int = 90) -> Figure:
    """Paper 001 Fig. 3: (φ, ψ) densities of the reference and of each model side by side, log colour scale.

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
        ax.set_title(title)
        ax.set_xlabel("φ (degrees)")
        ax.set_xticks([-180, -90, 0, 90, 180])
        ax.set_yticks([-180, -90, 0, 90, 180])
        ax.set_aspect("equal")
    axes[0].set_ylabel("ψ (degrees)")
    fig.colorbar(mesh, ax=list(axes), label="density (1/deg², log scale)")
    return fig


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


def _free_energy(h: np.ndarray) -> np.ndarray:
    """-log of a histogram, NaN where it is empty."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.log(np.where(h > 0, h, np.nan))


def free_energy_phi_psi(panels: Sequence[tuple[str, np.ndarray, np.ndarray | None]], bins: int = 60) -> Figure:
    """(φ, ψ) free-energy maps side by side; each panel is (title, angles (n, 2) in degrees, weights (n,) or None)."""
    edges = np.linspace(-180, 180, bins + 1)
    fig = Figure(figsize=(5 * len(panels), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    im = None
    for ax, (title, ang, w) in zip(axes, panels, strict=True):
        h, _, _ = np.histogram2d(ang[:, 0], ang[:, 1], bins=[edges, edges], weights=w, density=True)
        f = _free_energy(h)
        im = ax.pcolormesh(edges, edges, (f - np.nanmin(f)).T, cmap="viridis", vmax=10)
        ax.set(title=title, xlabel="φ (deg)", ylabel="ψ (deg)")
    fig.colorbar(im, ax=axes, label="F (kT)")
    return fig


def free_energy_phi(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray | None]],
    reference: tuple[str, np.ndarray, np.ndarray] | None = None,
    bins: int = 60,
) -> Figure:
    """F(φ) curves from samples (label, φ (n,) in degrees, weights or None), plus an optional reference curve
    (label, φ grid in degrees, F in kT)."""
    edges = np.linspace(-180, 180, bins + 1)
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    for label, phi, w in curves:
        p, _ = np.histogram(phi, bins=edges, weights=w, density=True)
        f = _free_energy(p)
        ax.plot(0.5 * (edges[1:] + edges[:-1]), f - np.nanmin(f), label=label)
    if reference is not None:
        ax.plot(reference[1], reference[2], "k--", label=reference[0])
    ax.set(xlabel="φ (deg)", ylabel="F(φ) (kT)")
    ax.legend()
    return fig


def energy_histograms(u_ref: np.ndarray, u_gen: np.ndarray, w_gen: np.ndarray, ref_label: str = "MD") -> Figure:
    """Reduced-energy histograms of reference frames, flow samples and reweighted flow samples (kT)."""
    ok = np.isfinite(u_gen)
    bins = np.linspace(np.percentile(u_ref, 0.1) - 5, np.percentile(u_ref, 99.9) + 30, 80)
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(u_ref, bins=bins, density=True, histtype="step", label=ref_label)
    ax.hist(u_gen[ok], bins=bins, density=True, histtype="step", label="flow samples")
    ax.hist(u_gen[ok], bins=bins, weights=w_gen[ok], density=True, histtype="step", label="flow, reweighted")
    ax.set(xlabel="u (kT)", ylabel="density")
    ax.legend()
    return fig
