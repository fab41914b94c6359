"""Learned Boltzmann curves on GMM-40 and ManyWell-8 with the three interpolations (issue 16, item 4).

One run = one (target, interpolation, seed): train the continuity residual on box points, then sample
``--n-eval`` points by the CNF and measure the energy distance against an exact sample (with its floor), ESS,
log Z (importance sampling and the integral of C), mode coverage, and the metric speed of the learned velocity
along the sampled curve. Each run writes ``runs/<target>-<interp>-s<seed>.json`` (and its weights) and is
skipped when that file exists, so the script resumes after a kill. ``--summarise`` aggregates mean ± sd over
seeds into ``fisher-rao.json`` and draws the figures.

    cd docs/results/fisher-rao
    PYTHONPATH=../../../src nice -n 10 python run.py --target gmm40 --interp gradient_flow --seed 0
    PYTHONPATH=../../../src python run.py --summarise
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from evaluate import evaluate
from targets import TARGETS

from boltzflow.io import save_safetensors
from boltzflow.training.fisher_rao import build_model
from boltzflow.training.fisher_rao_fit import (
    FitConfig,
    TrajectorySource,
    box_source,
    fit_curve,
    mixed_source,
    noised_box_source,
)

HERE = Path(__file__).resolve().parent


def run_one(target_name: str, interp: str, seed: int, args: argparse.Namespace) -> dict:
    target = TARGETS[target_name]()
    torch.manual_seed(seed)
    model = build_model(interp, target.energy, target.dim, base_scale=args.base_scale, hidden=args.hidden,
                        **target.scales)
    cfg = FitConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, lr_final=args.lr / 100,
                    hutchinson=target.dim > 4, log_every=max(args.steps // 50, 1))
    gen = torch.Generator().manual_seed(1000 + seed)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    source = box_source(*target.box) if args.source == "box" else noised_box_source(*target.box, args.base_scale)
    if args.traj_fraction > 0:
        traj = TrajectorySource(model, *target.box, n_paths=512, steps=20, refresh=50)
        source = mixed_source(traj, source, args.traj_fraction)
    history = fit_curve(model, source, cfg, gen)
    train_cpu, train_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ev = evaluate(model, target, args, gen, HERE / "runs")
    result = {
        "target": target_name, "interpolation": interp, "seed": seed,
        "config": {**vars(args), "fit": cfg.__dict__, "scales": target.scales, "box": target.box},
        "loss": {"steps": history.steps, "values": history.loss},
        "train_cpu_s": train_cpu, "train_wall_s": train_wall,
        "eval_cpu_s": time.process_time() - cpu0, "eval_wall_s": time.perf_counter() - wall0,
        **ev["result"],
        "load_average": os.getloadavg(),
    }
    name = f"{target_name}-{interp}{args.tag}"
    if seed == 0:
        np.savez_compressed(HERE / f"samples-{name}.npz", x=ev["x"][:10_000].numpy().astype(np.float32),
                            log_w=ev["log_w"][:10_000].numpy())
    save_safetensors(HERE / "runs" / f"{name}-s{seed}.safetensors", model.state_dict(), {"result": result})
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=sorted(TARGETS), default="gmm40")
    p.add_argument("--interp", default="gradient_flow")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=lambda s: tuple(int(v) for v in s.split(",")), default=(64, 64, 64))
    p.add_argument("--base-scale", type=float, default=1.0)
    p.add_argument("--source", choices=("box", "noised_box"), default="noised_box")
    p.add_argument("--traj-fraction", type=float, default=0.0, help="share of residual points on model trajectories")
    p.add_argument("--ode-steps", type=int, default=100)
    p.add_argument("--n-eval", type=int, default=50_000)
    p.add_argument("--n-weights", type=int, default=20_000, help="samples with exact log q (ESS, log Z)")
    p.add_argument("--n-speed", type=int, default=5_000)
    p.add_argument("--tag", default="", help="suffix of the run file (variants such as a wider base)")
    p.add_argument("--summarise", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    if args.summarise:
        from summarise import markdown_table, summarise

        print(markdown_table(summarise(HERE)))
        return
    (HERE / "runs").mkdir(exist_ok=True)
    path = HERE / "runs" / f"{args.target}-{args.interp}{args.tag}-s{args.seed}.json"
    if path.exists():
        print(f"{path.name} exists; skipping")
        return
    result = run_one(args.target, args.interp, args.seed, args)
    result["versions"] = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    keys = ("energy_distance", "energy_distance_floor", "ess_fraction", "log_z_is_error", "log_z_rate_error",
            "modes_covered", "train_cpu_s", "train_wall_s")
    print(json.dumps({k: result[k] for k in keys}))


if __name__ == "__main__":
    main()
