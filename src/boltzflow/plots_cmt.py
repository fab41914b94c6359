"""Figures of CMT runs: ESS against energy evaluations for several methods, and CMT's learned schedule.

Functions take arrays or the per-step records of :func:`boltzflow.training.cmt.runner.run_method` and return a
matplotlib Figure (no pyplot state); save them with :func:`boltzflow.plots.save`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def ess_vs_evaluations(curves: Mapping[str, tuple[Any, Any]], title: str = "") -> Figure:
    """ESS (%) against cumulative training energy evaluations, one line per method.

    Args:
        curves: ``method -> (evals, ess_fraction)``; evals of shape (m,); ess_fraction of shape (m,) for one run
            or (k, m) for k runs (seeds), drawn as the mean with a min-max band.
        title: figure title.
    """
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.subplots()
    for name, (evals, ess) in curves.items():
        evals, ess = np.asarray(evals, dtype=float), 100.0 * np.atleast_2d(np.asarray(ess, dtype=float))
        mean = ess.mean(0)
        (line,) = ax.plot(evals, mean, marker="o", ms=3, label=f"{name} (n={ess.shape[0]})")
        if ess.shape[0] > 1:
            ax.fill_between(evals, ess.min(0), ess.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("target energy evaluations (training)")
    ax.set_ylabel("ESS (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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
    fig = Figure(figsize=(13.0, 6.5))
    ax = fig.subplots(2, 3).ravel()
    for key, label in (("lam", "λ (trust region)"), ("eta", "η (entropy)")):
        ax[0].plot(step, _column(history, key), marker="o", ms=3, label=label)
    ax[0].set_yscale("symlog", linthresh=1e-2)  # an inactive constraint's multiplier is exactly 0
    ax[0].set_title("multipliers")
    for key, label in (("a", "a (exponent of q0)"), ("b", "b (exponent of p̃)")):
        ax[1].plot(step, _column(history, key), marker="o", ms=3, label=label)
    ax[1].set_title("path q_i ∝ q0^a p̃^b")
    factor = _column(history, "temperature_factor")
    ax[2].semilogy(step, factor * (temperature_kelvin or 1.0), marker="o", ms=3)
    ax[2].set_title("effective temperature " + ("T / b (K)" if temperature_kelvin else "factor 1 / b"))
    ax[3].plot(step, _column(history, "entropy"), marker="o", ms=3)
    ax[3].set_title("entropy estimate H(q̂_i) (nats)")
    ax[4].plot(step, _column(history, "kl"), marker="o", ms=3, label="KL(q_{i+1} || q̂_i)")
    ax[4].plot(step, _column(history, "delta_h"), marker="o", ms=3, label="ΔH")
    ax[4].set_title("constraints at the solution (nats)")
    ax[5].plot(step, 100 * _column(history, "buffer_ess_fraction"), marker="o", ms=3, label="step weights")
    ax[5].plot(step, 100 * _column(history, "target_ess_fraction"), marker="o", ms=3, label="target weights")
    ax[5].set_title("buffer ESS (%)")
    for a in ax:
        a.set_xlabel("annealing step")
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
