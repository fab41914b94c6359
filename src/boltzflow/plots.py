"""Figures: functions that take arrays and return a matplotlib Figure (no pyplot state, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
