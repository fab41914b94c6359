"""Teleportation of mass, measured exactly in 1-D (issue 16 item 2; notes §2.6; paper 003 Figs. 1-2).

1. rho_Z = N(0, 1), rho_D = 0.8 N(0, 1) + 0.2 N(m, 1), m = 4, 8, 12: the W2 metric speed along the linear
   path rho_Z^(1-t) rho_D^t and along the OU path Law(t X_D + sqrt(1 - t^2) Z), on 101 times.
2. The paper's own example: rho_0 ∝ exp(-|x|), rho_1 ∝ exp(-2 min(|x|, |x - m|)), linear path, the end speed
   ||v_1||^2 against m (the paper's Fig. 2 shows it growing exponentially).

Writes ``teleport.json`` and ``teleport.png``.

    cd docs/results/fisher-rao && PYTHONPATH=../../../src python teleport.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from boltzflow.eval.teleport import (
    gaussian_mixture_log_density,
    linear_path,
    metric_speed_1d,
    metric_speed_curve,
    ou_path_gaussian_mixture,
)
from boltzflow.plots import save
from boltzflow.plots_fisher_rao import teleport_speeds

HERE = Path(__file__).resolve().parent
NOTES_TABLE = {4: (7.4, 1.7), 8: (3.5e2, 3.6), 12: (7e4, 5.4)}  # seed-algorithms.md §2.6, for comparison only


def two_mode_table(times: np.ndarray, n_grid: int) -> dict:
    std = gaussian_mixture_log_density([1.0], [0.0], [1.0])
    rows, lin_curves, ou_curves = {}, {}, {}
    for m in (4.0, 8.0, 12.0):
        lin = linear_path(std, gaussian_mixture_log_density([0.8, 0.2], [0.0, m], [1.0, 1.0]))
        ou = ou_path_gaussian_mixture([0.8, 0.2], [0.0, m], [1.0, 1.0])
        s_lin = metric_speed_curve(lin, times, -12, m + 12, n_grid).numpy()
        s_ou = metric_speed_curve(ou, times, -12, m + 12, n_grid).numpy()
        coarse = metric_speed_1d(lin, 1.0, -12, m + 12, n_grid // 4)
        lin_curves[m], ou_curves[m] = s_lin, s_ou
        rows[str(int(m))] = {
            "linear_max": float(s_lin.max()), "linear_argmax_t": float(times[s_lin.argmax()]),
            "ou_max": float(s_ou.max()), "ou_argmax_t": float(times[s_ou.argmax()]),
            "ratio_at_t1": float(s_lin[-1] / s_ou[-1]),
            "linear_t1_grid_check": {"n_grid": n_grid // 4, "value": coarse},
            "notes_table": {"linear": NOTES_TABLE[int(m)][0], "ou": NOTES_TABLE[int(m)][1]},
            "linear": s_lin.tolist(), "ou": s_ou.tolist(),
        }
    return {"rows": rows, "curves": (lin_curves, ou_curves)}


def paper_example(n_grid: int) -> dict:
    out = {}
    for m in (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0):
        path = linear_path(lambda x: -x.abs(), lambda x, m=m: -2 * torch.minimum(x.abs(), (x - m).abs()))
        out[str(int(m))] = metric_speed_1d(path, 1.0, -40, m + 40, n_grid) ** 2
    return out


def main() -> None:
    torch.set_num_threads(1)
    start, cpu = time.perf_counter(), time.process_time()
    times = np.linspace(0.0, 1.0, 101)
    n_grid = 200_001
    table = two_mode_table(times, n_grid)
    example = paper_example(400_001)
    ms = np.array([float(k) for k in example])
    logs = np.log([example[k] for k in example])
    slope = float(np.polyfit(ms[ms >= 10], logs[ms >= 10], 1)[0])
    result = {
        "command": "cd docs/results/fisher-rao && PYTHONPATH=../../../src python teleport.py",
        "times": times.tolist(), "n_grid": n_grid, "two_mode": table["rows"],
        "paper_example_v1_squared": example, "paper_example_log_slope_m_ge_10": slope,
        "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu, "load_average": os.getloadavg(),
    }
    (HERE / "teleport.json").write_text(json.dumps(result, indent=1))
    save(teleport_speeds(times, *table["curves"]), HERE / "teleport.png")
    for m, row in table["rows"].items():
        print(f"m={m}: linear max {row['linear_max']:.4g} at t={row['linear_argmax_t']:.2f}, "
              f"OU max {row['ou_max']:.4g} at t={row['ou_argmax_t']:.2f}, ratio at t=1 {row['ratio_at_t1']:.3g}")
    print("paper example ||v_1||^2:", {k: f"{v:.4g}" for k, v in example.items()}, "slope of log:", round(slope, 4))
    print(f"wall {result['wall_s']:.0f} s, cpu {result['cpu_s']:.0f} s")


if __name__ == "__main__":
    main()
