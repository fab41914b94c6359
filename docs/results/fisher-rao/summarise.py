"""Aggregate the per-run JSON files of run.py into fisher-rao.json (mean ± sd over seeds) and the figures."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from targets import TARGETS

from boltzflow.io import load_npz
from boltzflow.plots import save
from boltzflow.plots_fisher_rao import learned_speeds, loss_curves, samples_2d
from boltzflow.training.fisher_rao_gmm import ExactOUPath

METRICS = ("energy_distance", "energy_distance_floor", "ess_fraction", "log_z_is_error", "log_z_rate_error",
           "modes_covered", "train_cpu_s", "train_wall_s", "eval_cpu_s", "eval_wall_s")
LABELS = {"linear": "linear", "learned": "learned", "gradient_flow": "gradient flow (OU)"}


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}


def summarise(here: Path) -> dict:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted((here / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        tag = path.stem.rsplit("-s", 1)[0].removeprefix(f"{run['target']}-")
        groups[(run["target"], tag)].append(run)
    table: dict[str, dict] = defaultdict(dict)
    for (target, tag), runs in sorted(groups.items()):
        row = {k: _stats([r[k] for r in runs]) for k in METRICS}
        speed = np.array([r["speed"] for r in runs])
        row["ed_over_floor"] = _stats([r["energy_distance"] / r["energy_distance_floor"] for r in runs])
        row["abs_log_z_is_error"] = _stats([abs(r["log_z_is_error"]) for r in runs])
        row["speed_t1"] = _stats(speed[:, -1].tolist())
        row["speed_max"] = _stats(speed.max(1).tolist())
        row["speed_curve"] = {"times": runs[0]["speed_times"], "mean": speed.mean(0).tolist(),
                              "sd": speed.std(0, ddof=1).tolist() if len(runs) > 1 else [0.0] * speed.shape[1]}
        row["seeds"] = [r["seed"] for r in runs]
        row["n_modes"] = runs[0]["n_modes"]
        row["n_eval"] = runs[0]["n_eval"]
        row["config"] = runs[0]["config"]
        table[target][tag] = row
    out = {"runs": table, "exact_ou_speed_gmm40": exact_ou_speed(), "command": "see fisher-rao.md"}
    (here / "fisher-rao.json").write_text(json.dumps(out, indent=1))
    _figures(here, table, groups)
    return out


def exact_ou_speed(n: int = 20_000) -> dict[str, list[float]]:
    """sqrt(E |v_t|^2) of the exact OU field of GMM-40 (sigma0 = 1) on exact samples of rho_t."""
    target = TARGETS["gmm40"]()
    path = ExactOUPath(target.mixture, 1.0)
    g = torch.Generator().manual_seed(11)
    times = np.linspace(0.0, 1.0, 41)
    speed = []
    for t in times:
        x = t * target.mixture.sample(n, g) + np.sqrt(1 - t**2) * torch.randn(n, 2, generator=g)
        speed.append(float(path.velocity(float(t), x).pow(2).sum(-1).mean().sqrt()))
    return {"times": times.tolist(), "speed": speed}


def _figures(here: Path, table: dict, groups: dict) -> None:
    panels = []
    for target, rows in table.items():
        curves = {LABELS.get(tag, tag): tuple(np.array(rows[tag]["speed_curve"][k]) for k in ("times", "mean", "sd"))
                  for tag in rows}
        if target == "gmm40":
            ref = exact_ou_speed()
            curves["exact OU field (closed form)"] = (np.array(ref["times"]), np.array(ref["speed"]),
                                                      np.zeros(len(ref["times"])))
        panels.append((target, curves))
    if panels:
        save(learned_speeds(panels), here / "learned_speeds.png")
    for target in table:
        losses = {LABELS.get(tag, tag): (np.array(runs[0]["loss"]["steps"]), np.array(runs[0]["loss"]["values"]))
                  for (t, tag), runs in groups.items() if t == target}
        save(loss_curves(losses, f"{target} (seed 0)"), here / f"loss-{target}.png")
    if "gmm40" in table:
        target = TARGETS["gmm40"]()
        ref = target.sample(10_000, torch.Generator().manual_seed(5)).numpy()
        shown = [("exact", ref)]
        for tag in table["gmm40"]:
            f = here / f"samples-gmm40-{tag}.npz"
            if f.exists():
                shown.append((LABELS.get(tag, tag), load_npz(f)["x"]))
        save(samples_2d(shown, target.mixture.means.numpy()), here / "samples-gmm40.png")


def markdown_table(out: dict) -> str:
    """The results table of fisher-rao.md (mean ± sd over seeds)."""
    lines = ["| target | interpolation | seeds | energy distance (floor) | ED / floor | ESS % | log Z error (IS) "
             "| log Z error (int C) | modes covered | speed at t=1 | max speed | train CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(row: dict, key: str, fmt: str = ".3g", scale: float = 1.0) -> str:
        return f"{row[key]['mean'] * scale:{fmt}} ± {row[key]['sd'] * scale:{fmt}}"

    for target, rows in out["runs"].items():
        for tag, row in rows.items():
            lines.append(
                f"| {target} | {LABELS.get(tag, tag)} | {row['energy_distance']['n']} "
                f"| {f(row, 'energy_distance')} ({row['energy_distance_floor']['mean']:.3g}) "
                f"| {f(row, 'ed_over_floor')} "
                f"| {f(row, 'ess_fraction', '.2g', 100)} | {f(row, 'log_z_is_error')} | {f(row, 'log_z_rate_error')} "
                f"| {f(row, 'modes_covered', '.3g')} / {row['n_modes']} | {f(row, 'speed_t1')} | {f(row, 'speed_max')} "
                f"| {f(row, 'train_cpu_s', '.0f')} |"
            )
    return "\n".join(lines)
