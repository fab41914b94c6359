"""Figures of CMT runs: ESS against energy evaluations for several methods, and CMT's learned schedule.

Functions take arrays or the per-step records of :func:`boltzflow.training.cmt.runner.run_method` and return a
matplotlib Figure (no pyplot state); save them with :func:`boltzflow.plots.save`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from boltzflow.plots_free_energy import legend_below


def ess_vs_evaluations(curves: Mapping[str, tuple[Any, Any]], title: str = "") -> Figure:
    """ESS (%) against cumulative training energy evaluations, one line per method.

    Args:
        curves: ``method -> (evals, ess_fraction)``; evals of shape (m,); ess_fraction of shape (m,) for one run
            or (k, m) for k runs (seeds), drawn as the mean with a min-max band.
        title: figure title.
    """
    fig = Figure(figsize=(6.0, 4.6), layout="constrained")
    ax = fig.subplots()
    for name, (evals, ess) in curves.items():
        evals, ess = np.asarray(evals, dtype=float), 100.0 * np.atleast_2d(np.asarray(ess, dtype=float))
        mean = ess.mean(0)
        (line,) = ax.plot(evals, mean, marker="o", ms=3, label=f"{name} (n={ess.shape[0]})")
        if ess.shape[0] > 1:
            ax.fill_between(evals, ess.min(0), ess.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("target energy evaluations during training (count)")
    ax.set_ylabel("ESS (% of samples)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    legend_below(fig, [ax])
    if title:
        ax.set_title(title)
    return fig


def _column(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in history])


def learned_schedule(
    history: Sequence[Mapping[str, Any]], temperature_kelvin: float | None = None, title: str = ""
) -> Figure:
    """CMT's learned schedule, per annealing step: multipliers, path exponents, effective temperature, entropy,
    constraint values and buffer ESS.

    Args:
        history: CMT step records (keys ``lam``, ``eta``, ``a``, ``b``, ``temperature_factor``, ``entropy``,
            ``kl``, ``delta_h``, ``buffer_ess_fraction``, ``target_ess_fraction``).
        temperature_kelvin: target temperature T; the effective temperature T / b is then shown in kelvin,
            else the factor 1 / b.
        title: figure title.
    """
    step = _column(history, "step") + 1
    fig = Figure(figsize=(13.0, 7.2), layout="constrained")
    ax = fig.subplots(2, 3).ravel()
    colors = iter(f"C{k}" for k in range(10))  # one colour per line, so the shared legend is unambiguous

    def line(a: Any, key: str, label: str | None = None, scale: float = 1.0) -> None:
        a.plot(step, scale * _column(history, key), marker="o", ms=3, color=next(colors), label=label)

    line(ax[0], "lam", "λ (trust region)")
    line(ax[0], "eta", "η (entropy)")
    ax[0].set_yscale("symlog", linthresh=1e-2)  # an inactive constraint's multiplier is exactly 0
    ax[0].set(title="multipliers", ylabel="multiplier (dimensionless)")
    line(ax[1], "a", "a (exponent of q0)")
    line(ax[1], "b", "b (exponent of p̃)")
    ax[1].set(title="path q_i ∝ q0^a p̃^b", ylabel="exponent (dimensionless)")
    line(ax[2], "temperature_factor", scale=temperature_kelvin or 1.0)
    ax[2].set(yscale="log", title="effective temperature",
              ylabel="T / b (K)" if temperature_kelvin else "factor 1 / b (dimensionless)")
    line(ax[3], "entropy")
    ax[3].set(title="entropy estimate H(q̂_i)", ylabel="H (nats)")
    line(ax[4], "kl", "KL(q_{i+1} || q̂_i)")
    line(ax[4], "delta_h", "ΔH")
    ax[4].set(title="constraints at the solution", ylabel="value (nats)")
    line(ax[5], "buffer_ess_fraction", "buffer ESS, step weights", 100.0)
    line(ax[5], "target_ess_fraction", "buffer ESS, target weights", 100.0)
    ax[5].set(title="buffer ESS", ylabel="ESS (% of samples)")
    for a in ax:
        a.set_xlabel("annealing step (index)")
        a.grid(alpha=0.3)
    legend_below(fig, ax)
    if title:
        fig.suptitle(title)
    return fig
