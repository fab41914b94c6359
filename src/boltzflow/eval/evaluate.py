"""One evaluation: (system, independent draws of samples with log weights) -> the standard metric set.

Every reproduction reports the same quantities under the same names (the ``results.json`` schema below), so
methods can be compared in one table. "One draw is not a result": ESS and populations are reported as mean and
standard deviation over ``len(draws)`` independent draws (≥ 4 recommended), and populations also with a
bootstrap confidence interval of the pooled draws.

Schema of :func:`evaluate`'s return value (all plain JSON types; absent entries do not apply to the system)::

    n_draws, n_per_draw, weighted (False: samples without log weights; the entries marked * are then absent and
                           populations and histograms are those of the plain samples)
    ess_fraction: *          {mean, sd, values}      Kish ESS / n, unclipped, per draw
    ess_fraction_clipped: * {mean, sd, values}      the same with the top 1e-4 of log w clipped (TA-BG, CMT)
    n_dropped: *           non-finite log weights over all draws
    nll_reference:         mean -log q on held-out reference samples (nats), if given
    eubo:                  E_ref[-u - log q] = log Z + KL(p || q) >= log Z (paper 002; lower is better; for
                           internal-coordinate flows it carries the flow's constant rigid-frame offset)
    log_z: *               {estimate, exact, error}          when the system knows its log Z
    w2:                    {value, floor, ratio, observable} W2 of an observable vs the reference, and its floor
    ramachandran_tv:       mean TV of 100x100 (phi, psi) histograms per residue (model samples unweighted)
    populations:           {state: {mean, lo, hi, sd_draws}}  reweighted state populations, 95 % bootstrap CI
    delta_f_kt:            {state: {mean, lo, hi}}            -ln(P / (1 - P)) per state, kT
    energy_histogram:      {edges, reference, model, reweighted}  densities of u on common bins
    model_system:          for model systems (no temperature), with ``model_metrics_n``: mode coverage and
                           per-mode weight error (GMM), energy distance to exact samples or W2 to the MCMC
                           reference, each with its floor (:func:`~boltzflow.eval.model_systems.model_system_metrics`)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from boltzflow.eval.weights import ess_fraction, finite_log_weights


class Draw(NamedTuple):
    """One independent set of model samples.

    Attributes:
        x: configurations, shape (n, *event_shape) (or (n, dim)), float64.
        log_w: log importance weights ``-u - log q``, shape (n,); None for samples without weights (a flow whose
            target has no normalisable density on its coordinates, or samples scored as they are).
        u: reduced target energies, shape (n,), kT (optional).
    """

    x: Tensor
    log_w: Tensor | None
    u: Tensor | None = None


def clip_log_weights(log_w: Tensor, fraction: float = 1e-4) -> Tensor:
    """Clip the largest ``fraction`` of finite log weights to the k-th largest (TA-BG's evaluator).

    Args:
        log_w: shape (n,).
        fraction: share clipped, ``k = max(1, ceil(fraction * n_finite))``.
    """
    finite = torch.isfinite(log_w)
    n = int(finite.sum())
    if n == 0:
        return log_w
    k = max(1, math.ceil(fraction * n))
    kth = torch.topk(log_w[finite], k).values[-1]
    return torch.where(finite, torch.minimum(log_w, kth), log_w)


def mean_sd(values: Sequence[float]) -> dict[str, Any]:
    """``{mean, sd, values}`` (sd with ddof 1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "sd": sd, "values": [float(a) for a in v]}


def weighted_populations(
    labels: np.ndarray, log_w: np.ndarray, names: Sequence[str], n_boot: int = 200, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Reweighted state populations with a 95 % bootstrap interval.

    Args:
        labels: state index of each sample, shape (n,), in ``range(len(names))``.
        log_w: log weights, shape (n,) (non-finite ones get weight 0).
        names: state names.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.

    When more than 5 % of the bootstrap resamples hold no weight-carrying sample (the ESS is a few samples), the
    interval is reported as [0, 1]: the bootstrap cannot bound the populations then.
    """
    w = np.exp(np.where(np.isfinite(log_w), log_w - np.max(log_w[np.isfinite(log_w)]), -np.inf))
    rng = np.random.default_rng(seed)
    one_hot = np.eye(len(names))[labels]  # (n, k)

    def pops(idx: np.ndarray) -> np.ndarray:
        ww = w[idx]
        total = ww.sum()
        if not total > 0:  # a resample without any weight-carrying sample: its populations are undefined
            return np.full(len(names), np.nan)
        return (ww[:, None] * one_hot[idx]).sum(0) / total

    est = pops(np.arange(len(w)))
    boot = np.stack([pops(rng.integers(0, len(w), len(w))) for _ in range(n_boot)])
    undefined = np.isnan(boot[:, 0])
    if undefined.mean() > 0.05:  # the weight sits on so few samples that the 95 % interval is not determined
        lo, hi = np.zeros(len(names)), np.ones(len(names))
    else:
        lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    return {n: {"mean": float(est[i]), "lo": float(lo[i]), "hi": float(hi[i])} for i, n in enumerate(names)}


def delta_f(pop: dict[str, float]) -> dict[str, float]:
    """``-ln(P / (1 - P))`` in kT for a population ``{mean, lo, hi}`` (the interval maps monotonically)."""

    def f(p: float) -> float:
        return float("inf") if p <= 0 else (-float("inf") if p >= 1 else -math.log(p / (1 - p)))

    return {"mean": f(pop["mean"]), "lo": f(pop["hi"]), "hi": f(pop["lo"])}


def ramachandran_tv(model: np.ndarray, reference: np.ndarray, bins: int = 100) -> float:
    """Mean total variation between (φ, ψ) histograms of model and reference, averaged over residues.

    Args:
        model: angles, shape (n, n_residues, 2), radians (unweighted, as paper 002 does).
        reference: angles, shape (m, n_residues, 2), radians.
        bins: bins per axis on [-pi, pi).
    """
    edges = np.linspace(-math.pi, math.pi, bins + 1)
    tvs = []
    for r in range(model.shape[1]):
        p = np.histogram2d(model[:, r, 0], model[:, r, 1], bins=[edges, edges])[0]
        q = np.histogram2d(reference[:, r, 0], reference[:, r, 1], bins=[edges, edges])[0]
        tvs.append(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())
    return float(np.mean(tvs))


def energy_histogram(u_ref: np.ndarray | None, u_model: np.ndarray, log_w: np.ndarray, bins: int = 60) -> dict:
    """Densities of u for the reference, the model and the reweighted model on common bins (1st-99th pct)."""
    finite = np.isfinite(u_model) & np.isfinite(log_w)
    pool = np.concatenate([u_model[finite]] + ([u_ref] if u_ref is not None else []))
    lo, hi = np.percentile(pool, [1, 99])
    edges = np.linspace(lo, hi, bins + 1)
    w = np.exp(log_w[finite] - log_w[finite].max())
    out = {"edges": edges.tolist(),
           "model": np.histogram(u_model[finite], edges, density=True)[0].tolist(),
           "reweighted": np.histogram(u_model[finite], edges, weights=w, density=True)[0].tolist()}
    if u_ref is not None:
        out["reference"] = np.histogram(u_ref, edges, density=True)[0].tolist()
    return out


def evaluate(
    system: Any,
    draws: Sequence[Draw],
    reference_x: Tensor | None = None,
    log_q_reference: Tensor | None = None,
    states: tuple[Callable[[Tensor], np.ndarray], Sequence[str]] | None = None,
    w2: Callable[[Tensor, Tensor], dict[str, float]] | None = None,
    clip_fraction: float = 1e-4,
    model_metrics_n: int | None = None,
) -> dict[str, Any]:
    """The standard metric set of a trained model (see the module docstring for the schema).

    Args:
        system: a :class:`~boltzflow.systems.base.System` (``log_z`` and the ``phi_psi`` observable are used
            when present).
        draws: independent draws of model samples, all with log weights or all without (``log_w=None``).
        reference_x: held-out reference configurations, shape (m, *event_shape), for NLL/EUBO, Ramachandran TV
            and the energy histogram.
        log_q_reference: the model's log q at ``reference_x``, shape (m,) (NLL and EUBO need it).
        states: ``(labels_fn, names)``: a function of configurations (n, ...) -> state index array (n,), and the
            state names, for populations and ΔF.
        w2: ``(model_x, reference_x) -> {value, floor, ...}``, the system's W2 with its noise floor.
        clip_fraction: share of top log weights clipped for the clipped ESS.
        model_metrics_n: samples per set for the model-system distances (None: no model-system metrics).
    """
    if not draws:
        raise ValueError("evaluate needs at least one draw")
    weighted = all(d.log_w is not None for d in draws)
    if not weighted and any(d.log_w is not None for d in draws):
        raise ValueError("evaluate: either every draw has log weights or none has")
    if not weighted:  # plain samples: every sample counts once
        draws = [d._replace(log_w=d.x.new_zeros(len(d.x), dtype=torch.float64)) for d in draws]
    out: dict[str, Any] = {"n_draws": len(draws), "n_per_draw": int(len(draws[0].log_w)), "weighted": weighted}
    if weighted:
        out["ess_fraction"] = mean_sd([ess_fraction(d.log_w) for d in draws])
        out["ess_fraction_clipped"] = mean_sd([ess_fraction(clip_log_weights(d.log_w, clip_fraction))
                                               for d in draws])
        out["n_dropped"] = int(sum(finite_log_weights(d.log_w)[1] for d in draws))
    x_all = torch.cat([d.x for d in draws])
    lw_all = torch.cat([d.log_w for d in draws]).double()
    if weighted and getattr(system, "log_z", None) is not None:
        ests = [float(torch.logsumexp(finite_log_weights(d.log_w)[0].double(), 0) - math.log(len(d.log_w)))
                for d in draws]
        out["log_z"] = {"estimate": mean_sd(ests), "exact": float(system.log_z),
                        "error": float(np.mean(ests) - system.log_z)}
    u_ref = None
    with_u = all(d.u is not None for d in draws)
    if reference_x is not None and (with_u or log_q_reference is not None):  # a system without energy needs neither
        u_ref = system.energy()(reference_x).detach().double().cpu().numpy()
        if log_q_reference is not None:
            out["nll_reference"] = float(-log_q_reference.double().mean())
            out["eubo"] = float((-u_ref - log_q_reference.double().cpu().numpy()).mean())
    obs = system.observables() if hasattr(system, "observables") else {}
    if "phi_psi" in obs and reference_x is not None:
        model_angles = obs["phi_psi"].fn(x_all).detach().cpu().numpy()
        ref_angles = obs["phi_psi"].fn(reference_x).detach().cpu().numpy()
        out["ramachandran_tv"] = ramachandran_tv(model_angles, ref_angles)
    if states is not None:
        labels_fn, names = states
        pops = weighted_populations(labels_fn(x_all), lw_all.cpu().numpy(), names)
        per_draw = np.stack([[weighted_populations(labels_fn(d.x), d.log_w.double().cpu().numpy(), names,
                                                   n_boot=1)[n]["mean"] for n in names] for d in draws])
        for i, n in enumerate(names):
            pops[n]["sd_draws"] = float(per_draw[:, i].std(ddof=1)) if len(draws) > 1 else 0.0
        out["populations"] = pops
        out["delta_f_kt"] = {n: delta_f(p) for n, p in pops.items()}
    if w2 is not None and reference_x is not None:
        out["w2"] = w2(x_all, reference_x)
    if with_u:
        u_model = torch.cat([d.u for d in draws]).double().cpu().numpy()
        out["energy_histogram"] = energy_histogram(u_ref, u_model, lw_all.cpu().numpy())
        if not weighted:
            out["energy_histogram"].pop("reweighted")
    if model_metrics_n is not None and getattr(system, "temperature_kelvin", 0.0) is None:
        from boltzflow.eval.model_systems import model_system_metrics

        out["model_system"] = model_system_metrics(system, x_all.double().cpu(), lw_all.cpu(), n=model_metrics_n)
    return out
