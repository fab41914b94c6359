"""Figures of the Fisher-Rao curves work (paper 003): teleportation, learned speeds, samples, losses.

Each function takes arrays and returns a matplotlib Figure (no pyplot state); save with
:func:`boltzflow.plots.save`. The model problems are dimensionless ("reduced units" on the axes); legends sit
below the panels so they cover no data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from boltzflow.plots_free_energy import legend_below


def teleport_speeds(
    times: np.ndarray, linear: Mapping[float, np.ndarray], ou: Mapping[float, np.ndarray]
) -> Figure:
    """W2 metric speed along the linear and OU paths (left) and its maximum against the mode distance m (right).

    Args:
        times: shape (T,).
        linear: m -> speeds along the linear path, shape (T,).
        ou: m -> speeds along the OU path, shape (T,).
    """
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax, ax_m = fig.subplots(1, 2)
    colors = dict(zip(sorted(linear), ("tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:green"), strict=False))
    for m in sorted(linear):
        ax.plot(times, linear[m], color=colors[m], label=f"linear, m={m:g}")
        ax.plot(times, ou[m], color=colors[m], ls="--", label=f"OU, m={m:g}")
    ax.set_yscale("log")
    ax.set_xlabel("path time t (dimensionless)")
    ax.set_ylabel(r"W2 metric speed $\|v_t\|_{L^2(\rho_t)}$ (reduced units)")
    ms = np.array(sorted(linear))
    ax_m.plot(ms, [np.max(linear[m]) for m in ms], "o-", label="linear (max over t)")
    ax_m.plot(ms, [np.max(ou[m]) for m in ms], "s--", label="OU (max over t)")
    ax_m.set_yscale("log")
    ax_m.set_xlabel("mode distance m (reduced units)")
    ax_m.set_ylabel(r"$\max_t \|v_t\|$ (reduced units)")
    legend_below(fig, [ax, ax_m])
    fig.suptitle(r"$\rho_Z=N(0,1)$, $\rho_D=0.8\,N(0,1)+0.2\,N(m,1)$: exact 1-D speeds", fontsize=10)
    return fig


def learned_speeds(panels: Sequence[tuple[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]]) -> Figure:
    """Speed ``sqrt(mean |v_t|^2)`` of the learned velocities along their sampled curves, one panel per target.

    Args:
        panels: ``(title, {label: (times (T,), mean (T,), sd (T,))})`` per panel.
    """
    fig = Figure(figsize=(5 * len(panels), 4.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels, strict=True):
        for label, (t, mean, sd) in curves.items():
            (line,) = ax.plot(t, mean, label=label)
            ax.fill_between(t, np.maximum(mean - sd, 1e-12), mean + sd, alpha=0.25, color=line.get_color())
        ax.set_yscale("log")
        ax.set_xlabel("path time t (dimensionless)")
        ax.set_ylabel(r"speed $\|v_t\|_{L^2(q_t)}$ (reduced units)")
        ax.set_title(title)
    legend_below(fig, axes)
    return fig


def teleport_summary(
    times: np.ndarray,
    linear: Mapping[float, np.ndarray],
    ou: Mapping[float, np.ndarray],
    panels: Sequence[tuple[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]],
) -> Figure:
    """The teleportation figure: exact 1-D speeds (first panel) beside the speeds along learned paths (one each).

    Args:
        times: times of the exact speeds, shape (T,).
        linear: m -> exact speeds along the linear path, shape (T,).
        ou: m -> exact speeds along the OU path, shape (T,).
        panels: ``(title, {label: (times (T',), mean (T',), sd (T',))})`` per learned target.
    """
    fig = Figure(figsize=(4.6 * (1 + len(panels)), 4.8), layout="constrained")
    axes = fig.subplots(1, 1 + len(panels), squeeze=False)[0]
    for m, color in zip(sorted(linear), ("tab:blue", "tab:orange", "tab:red", "tab:purple"), strict=False):
        axes[0].plot(times, linear[m], color=color, label=f"exact 1-D, linear, m={m:g}")
        axes[0].plot(times, ou[m], color=color, ls="--", label=f"exact 1-D, OU, m={m:g}")
    axes[0].set_title(r"exact: $N(0,1) \to 0.8N(0,1)+0.2N(m,1)$", fontsize=9)
    palette, colors = ["tab:green", "tab:purple", "tab:brown", "black", "tab:pink", "tab:gray"], {}
    for ax, (title, curves) in zip(axes[1:], panels, strict=True):
        for label, (t, mean, sd) in curves.items():
            color = colors.setdefault(label, palette[len(colors) % len(palette)])  # one colour per label
            ax.plot(t, mean, label=label, color=color)
            ax.fill_between(t, np.maximum(mean - sd, 1e-12), mean + sd, alpha=0.25, color=color)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("path time t (dimensionless)")
        ax.set_ylabel(r"speed $\|v_t\|_{L^2(\rho_t)}$ (reduced units)")
    legend_below(fig, axes)
    return fig


def samples_2d(panels: Sequence[tuple[str, np.ndarray]], means: np.ndarray | None = None, lim: float = 50) -> Figure:
    """Scatter plots of 2-D samples, one panel each, with the target's means marked.

    Args:
        panels: ``(title, x (n, 2))`` per panel.
        means: mode centres, shape (K, 2), or None.
        lim: half-width of the plotted square.
    """
    fig = Figure(figsize=(3.6 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, x) in zip(axes, panels, strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color="tab:blue", rasterized=True)
        if means is not None:
            ax.scatter(means[:, 0], means[:, 1], marker="x", s=12, color="tab:red", lw=0.8, label="mode centres")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.set(xlabel="x₁ (reduced units)", ylabel="x₂ (reduced units)")
    legend_below(fig, axes)
    return fig


def loss_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> Figure:
    """Training loss (log scale) against the step, one line per label: ``{label: (steps, loss)}``."""
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()
    for label, (steps, loss) in curves.items():
        ax.plot(steps, loss, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("training step (count)")
    ax.set_ylabel("mean squared residual (reduced units²)")
    ax.set_title(title)
    legend_below(fig, [ax])
    return fig
