"""The report of the ``fisher-rao`` recipe: mean ± sd over seeds, the table, the figures and the issue's bars.

* the exact 1-D teleportation diagnostic (notes §2.6): W2 metric speeds along the linear and OU paths from
  N(0, 1) to 0.8 N(0, 1) + 0.2 N(m, 1), m = 4, 8, 12 (:mod:`boltzflow.eval.teleport`);
* the speeds measured along the learned paths (and the exact OU field's speed on GMM-40) beside them in one
  figure, ``figures/teleport.png``; samples of GMM-40 (``figures/samples-gmm40.png``) and loss curves;
* the verdicts on issue 16's bars: on GMM-40 the learned or OU interpolation covers all modes with the energy
  distance within 2x its floor and |log Z error| <= 0.05 (on the raw samples, and again on the reweighted distance
  against its own floor); the linear interpolation's speed at t = 1 exceeds the
  OU path's by >= 10x, with worse sample metrics (``same_base_scale``: false when the two rows start from
  different bases, where the comparison says nothing about teleportation).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.eval.teleport import (
    gaussian_mixture_log_density,
    linear_path,
    metric_speed_curve,
    ou_path_gaussian_mixture,
)
from boltzflow.experiments.common import fmt
from boltzflow.experiments.fisher_rao_eval import exact_ou_speed
from boltzflow.experiments.fisher_rao_targets import get_target
from boltzflow.plots import save
from boltzflow.plots_fisher_rao import loss_curves, samples_2d, teleport_summary

METRICS = ("energy_distance", "energy_distance_floor", "ess_fraction", "log_z_is_error", "log_z_rate_error",
           "modes_covered", "train_cpu_s", "train_wall_s", "eval_cpu_s", "eval_wall_s", "energy_distance_reweighted",
           "energy_distance_reweighted_floor", "energy_distance_reweighted_floor_at_ess")
LABELS = {"linear": "linear", "learned": "learned", "gradient_flow": "gradient flow (OU)"}
TELEPORT_MS = (4.0, 8.0, 12.0)


def _stats(values: list[float]) -> dict[str, Any]:
    a = np.asarray([np.nan if v is None else v for v in values], dtype=float)  # None: not measurable
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": a.tolist()}


def summarise(cells: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{target: {interpolation: row}}`` with mean, sd and per-seed values of every metric."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in cells:
        if "error" in c:  # a diverged fit: listed in results.json["failed"], not averaged
            continue
        groups[(c["target"], c["interpolation"])].append(c)
    table: dict[str, dict[str, Any]] = defaultdict(dict)
    for (target, interp), runs in groups.items():
        row = {k: _stats([r.get(k) for r in runs]) for k in METRICS}  # None: a cell evaluated before the key
        speed = np.array([r["speed"] for r in runs])
        row["ed_over_floor"] = _stats([r["energy_distance"] / r["energy_distance_floor"] for r in runs])
        row["rw_ed_over_floor"] = _stats([r["energy_distance_reweighted"] / r["energy_distance_reweighted_floor"]
                                          if "energy_distance_reweighted" in r else None for r in runs])
        row["abs_log_z_is_error"] = _stats([None if r["log_z_is_error"] is None else abs(r["log_z_is_error"])
                                            for r in runs])
        row["speed_t1"] = _stats(speed[:, -1].tolist())
        row["speed_max"] = _stats(speed.max(1).tolist())
        row["speed_curve"] = {"times": runs[0]["speed_times"], "mean": speed.mean(0).tolist(),
                              "sd": speed.std(0, ddof=1).tolist() if len(runs) > 1 else [0.0] * speed.shape[1]}
        row["base_scale"] = runs[0].get("training", {}).get("base_scale")
        row["seeds"], row["n_modes"], row["n_eval"] = [r["seed"] for r in runs], runs[0]["n_modes"], runs[0]["n_eval"]
        table[target][interp] = row
    return dict(table)


def teleport_exact(n_times: int, n_grid: int) -> dict[str, Any]:
    """Exact 1-D speeds along the linear and OU paths for the two-component target, m in TELEPORT_MS."""
    times = np.linspace(0.0, 1.0, n_times)
    std = gaussian_mixture_log_density([1.0], [0.0], [1.0])
    out: dict[str, Any] = {"times": times.tolist(), "n_grid": n_grid, "rows": {}}
    for m in TELEPORT_MS:
        lin = linear_path(std, gaussian_mixture_log_density([0.8, 0.2], [0.0, m], [1.0, 1.0]))
        ou = ou_path_gaussian_mixture([0.8, 0.2], [0.0, m], [1.0, 1.0])
        s_lin = metric_speed_curve(lin, times, -12, m + 12, n_grid).numpy()
        s_ou = metric_speed_curve(ou, times, -12, m + 12, n_grid).numpy()
        out["rows"][f"{m:g}"] = {"linear": s_lin.tolist(), "ou": s_ou.tolist(), "linear_max": float(s_lin.max()),
                                 "ou_max": float(s_ou.max()), "ratio_at_t1": float(s_lin[-1] / s_ou[-1])}
    return out


def verdicts(table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's bars, per seed and on the mean over seeds (only for the rows that were run)."""
    out: dict[str, Any] = {}
    gmm = table.get("gmm40", {})
    for interp in ("learned", "gradient_flow"):
        if interp in gmm:
            row = gmm[interp]
            seeds = [bool(c >= row["n_modes"] and e <= 2 and abs(z) <= 0.05) for c, e, z in zip(
                row["modes_covered"]["values"], row["ed_over_floor"]["values"], row["log_z_is_error"]["values"],
                strict=True)]
            out[f"gmm40_{interp}_modes_ed_logz"] = {"per_seed": seeds, "all_seeds": all(seeds)}
            rw = [bool(c >= row["n_modes"] and e <= 2 and abs(z) <= 0.05) for c, e, z in zip(
                row["modes_covered"]["values"], row["rw_ed_over_floor"]["values"], row["log_z_is_error"]["values"],
                strict=True)]  # the same bar on the reweighted distance (NaN, not evaluated: False)
            out[f"gmm40_{interp}_modes_reweighted_ed_logz"] = {"per_seed": rw, "all_seeds": all(rw)}
    for target, rows in table.items():
        if "linear" in rows and "gradient_flow" in rows:
            lin, ou = rows["linear"], rows["gradient_flow"]
            ratio = lin["speed_t1"]["mean"] / ou["speed_t1"]["mean"]
            worse = {"ed_over_floor": lin["ed_over_floor"]["mean"] > ou["ed_over_floor"]["mean"],
                     "ess_fraction": lin["ess_fraction"]["mean"] < ou["ess_fraction"]["mean"],
                     "abs_log_z_error": lin["abs_log_z_is_error"]["mean"] > ou["abs_log_z_is_error"]["mean"]}
            same_base = lin.get("base_scale") == ou.get("base_scale")  # teleportation is about one base
            out[f"{target}_linear_vs_ou"] = {"speed_ratio_t1": ratio, "ratio_at_least_10": ratio >= 10,
                                             "linear_worse": worse, "same_base_scale": same_base}
    return out


def markdown_table(table: dict[str, dict[str, Any]]) -> str:
    """The results table (mean ± sd over seeds)."""
    lines = ["| target | interpolation | base σ₀ | seeds | energy distance (floor) | ED / floor "
             "| reweighted ED / floor (floor at ESS / floor) | ESS % "
             "| log Z error (IS) | log Z error (∫C) | modes covered | speed at t=1 | max speed | train wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(row: dict, key: str, scale: float = 1.0) -> str:
        mean = fmt(row[key]["mean"] * scale)
        return mean if len(row[key]["values"]) < 2 else f"{mean} ± {fmt(row[key]['sd'] * scale)}"

    def at_ess(row: dict) -> str:
        at, floor = row["energy_distance_reweighted_floor_at_ess"], row["energy_distance_reweighted_floor"]
        return fmt(at["mean"] / floor["mean"])

    for target, rows in table.items():
        for interp, row in rows.items():
            lines.append(
                f"| {target} | {LABELS[interp]} | {fmt(row['base_scale'])} | {len(row['seeds'])} "
                f"| {f(row, 'energy_distance')} ({fmt(row['energy_distance_floor']['mean'])}) "
                f"| {f(row, 'ed_over_floor')} | {f(row, 'rw_ed_over_floor')} ({at_ess(row)}) "
                f"| {f(row, 'ess_fraction', 100)} | {f(row, 'log_z_is_error')} | {f(row, 'log_z_rate_error')} "
                f"| {f(row, 'modes_covered')} / {row['n_modes']} | {f(row, 'speed_t1')} | {f(row, 'speed_max')} "
                f"| {f(row, 'train_wall_s')} |")
    return "\n".join(lines)


def report(out: Path, cells: list[dict[str, Any]], config: Any) -> dict[str, Any]:
    """Summary, exact teleportation speeds, verdicts and figures of a finished grid (written under ``out``)."""
    ev = config.evaluation
    table = summarise(cells)
    tele = teleport_exact(ev.teleport_times, ev.teleport_grid)
    exact_ou = None
    if "gmm40" in table:
        times = torch.as_tensor(table["gmm40"][next(iter(table["gmm40"]))]["speed_curve"]["times"])
        exact_ou = {"times": times.tolist(), "speed": exact_ou_speed(get_target("gmm40"), times, ev.n_speed,
                                                                        ev.reference_seed + 3,
                                                                        config.training.base_scale_for(
                                                                            "gmm40", "gradient_flow"))}
    _figures(out, table, tele, exact_ou, cells, ev.n_saved)
    return {"table": table, "verdicts": verdicts(table), "teleport_exact_1d": tele, "exact_ou_speed_gmm40": exact_ou,
            "failed": [{k: c[k] for k in ("target", "interpolation", "seed", "error")} for c in cells if "error" in c],
            "cells": [{k: v for k, v in c.items() if k not in ("loss", "speed", "speed_times")} for c in cells],
            "table_markdown": markdown_table(table)}


def _figures(out: Path, table: dict, tele: dict, exact_ou: dict | None, cells: list[dict], n_saved: int) -> None:
    panels = []
    for target, rows in table.items():
        curves = {LABELS[i]: tuple(np.array(r["speed_curve"][k]) for k in ("times", "mean", "sd"))
                  for i, r in rows.items()}
        if target == "gmm40" and exact_ou is not None:
            n = len(exact_ou["times"])
            curves["exact OU field (closed form)"] = (np.array(exact_ou["times"]), np.array(exact_ou["speed"]),
                                                      np.zeros(n))
        panels.append((f"{target}: measured along the learned paths", curves))
    times = np.array(tele["times"])
    linear = {float(m): np.array(r["linear"]) for m, r in tele["rows"].items()}
    ou = {float(m): np.array(r["ou"]) for m, r in tele["rows"].items()}
    save(teleport_summary(times, linear, ou, panels), out / "figures" / "teleport.png")
    first = min((c["seed"] for c in cells if "error" not in c), default=0)
    for target in table:
        losses = {LABELS[c["interpolation"]]: (np.array(c["loss"]["steps"]), np.array(c["loss"]["values"]))
                  for c in cells if c["target"] == target and c["seed"] == first and "error" not in c}
        save(loss_curves(losses, f"{target} (seed {first})"), out / "figures" / f"loss-{target}.png")
    if "gmm40" in table:
        from boltzflow.io import load_npz

        target = get_target("gmm40")
        shown = [("exact", target.sample(n_saved, torch.Generator().manual_seed(5)).numpy())]
        for interp in table["gmm40"]:
            if (out / "samples" / f"gmm40-{interp}.npz").exists():
                shown.append((LABELS[interp], load_npz(out / "samples" / f"gmm40-{interp}.npz", ["x"])["x"]))
        save(samples_2d(shown, target.mixture.means.numpy()), out / "figures" / "samples-gmm40.png")
