"""Figures of the Fisher-Rao curves work (paper 003): teleportation, learned speeds, samples, losses.

Each function takes arrays and returns a matplotlib Figure (no pyplot state); save with
:func:`boltzflow.plots.save`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def teleport_speeds(
    times: np.ndarray, linear: Mapping[float, np.ndarray], ou: Mapping[float, np.ndarray]
) -> Figure:
    """W2 metric speed along the linear and OU paths (left) and its maximum against the mode distance m (right).

    Args:
        times: shape (T,).
        linear: m -> speeds along the linear path, shape (T,).
        ou: m -> speeds along the OU path, shape (T,).
    """
    fig = Figure(figsize=(10, 3.8))
    ax, ax_m = fig.subplots(1, 2)
    colors = dict(zip(sorted(linear), ("tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:green"), strict=False))
    for m in sorted(linear):
        ax.plot(times, linear[m], color=colors[m], label=f"linear, m={m:g}")
        ax.plot(times, ou[m], color=colors[m], ls="--", label=f"OU, m={m:g}")
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(r"$\|v_t\|_{L^2(\rho_t)}$ (W2 metric speed)")
    ax.legend(fontsize=7, ncol=2)
    ms = np.array(sorted(linear))
    ax_m.plot(ms, [np.max(linear[m]) for m in ms], "o-", label="linear (max over t)")
    ax_m.plot(ms, [np.max(ou[m]) for m in ms], "s--", label="OU (max over t)")
    ax_m.set_yscale("log")
    ax_m.set_xlabel("mode distance m")
    ax_m.legend(fontsize=8)
    fig.suptitle(r"$\rho_Z=N(0,1)$, $\rho_D=0.8\,N(0,1)+0.2\,N(m,1)$: exact 1-D speeds", fontsize=10)
    fig.tight_layout()
    return fig


def learned_speeds(panels: Sequence[tuple[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]]) -> Figure:
    """Speed ``sqrt(mean |v_t|^2)`` of the learned velocities along their sampled curves, one panel per target.

    Args:
        panels: ``(title, {label: (times (T,), mean (T,), sd (T,))})`` per panel.
    """
    fig = Figure(figsize=(5 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels, strict=True):
        for label, (t, mean, sd) in curves.items():
            ax.plot(t, mean, label=label)
            ax.fill_between(t, np.maximum(mean - sd, 1e-12), mean + sd, alpha=0.25)
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(r"$\|v_t\|_{L^2(q_t)}$")
    fig.tight_layout()
    return fig


def samples_2d(panels: Sequence[tuple[str, np.ndarray]], means: np.ndarray | None = None, lim: float = 50) -> Figure:
    """Scatter plots of 2-D samples, one panel each, with the target's means marked.

    Args:
        panels: ``(title, x (n, 2))`` per panel.
        means: mode centres, shape (K, 2), or None.
        lim: half-width of the plotted square.
    """
    fig = Figure(figsize=(3.6 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, x) in zip(axes, panels, strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color="tab:blue", rasterized=True)
        if means is not None:
            ax.scatter(means[:, 0], means[:, 1], marker="x", s=12, color="tab:red", lw=0.8)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def loss_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> Figure:
    """Training loss (log scale) against the step, one line per label: ``{label: (steps, loss)}``."""
    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    for label, (steps, loss) in curves.items():
        ax.plot(steps, loss, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("mean squared residual")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
