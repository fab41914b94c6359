"""Paper 003 (issue 16): learned Boltzmann curves on GMM-40 and ManyWell-8 with three interpolations.

One *cell* = one (target, interpolation, seed): a curve model (:func:`~boltzflow.training.fisher_rao.build_model`)
trained on the continuity residual at points from the recipe's source (box, or OU-noised box, mixed with points on
the model's own trajectories), then sampled by the CNF and scored (:mod:`boltzflow.experiments.fisher_rao_eval`).
Each cell writes ``runs/<target>-<interpolation>-s<seed>.json`` (and its weights) and is skipped when that file
exists, so a killed run resumes where it stopped (``runs/`` survives ``--force``; delete it to retrain).
``only = "gmm40/learned/1"`` runs one cell and stops (cells as parallel processes); the final call without it
aggregates: mean ± sd over seeds, the table, the teleportation figure (exact 1-D speeds beside the speeds
measured along the learned paths), 10^4 samples per target and interpolation (first seed), and the verdicts on
the issue's bars (:mod:`boltzflow.experiments.fisher_rao_report`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.experiments.common import fmt
from boltzflow.experiments.fisher_rao_eval import evaluate_curve
from boltzflow.experiments.fisher_rao_report import report
from boltzflow.experiments.fisher_rao_targets import TARGET_NAMES, CurveTarget, get_target
from boltzflow.experiments.runner import check_device, finish, positive, seeded, start
from boltzflow.io import save_json, save_npz, save_safetensors, save_text
from boltzflow.training.fisher_rao import INTERPOLATIONS, SCHEDULES, build_model
from boltzflow.training.fisher_rao_fit import (
    FitConfig,
    TrajectorySource,
    box_source,
    fit_curve,
    mixed_source,
    noised_box_source,
)

SOURCES = ("box", "noised_box")
PAPER_BASE_SCALES = {"gmm40/linear": 30.0, "gmm40/learned": 30.0}
"""Paper 003, Fig. 3: sigma = 30 for the linear and learned interpolations on GMM-40 (1 for the gradient flow)."""


@dataclass
class CurveTraining:
    """The networks and the residual fit (Adam, cosine decay from ``lr`` to ``lr_final``).

    Attributes:
        steps: gradient steps.
        batch_size: residual points per step.
        lr: initial learning rate.
        lr_final: final learning rate.
        grad_clip: gradient-norm clip.
        hidden: hidden widths of every network (v_theta or psi_theta, phi_theta; C_phi has its own).
        base_scale: sigma0 of the base N(0, sigma0^2 I).
        base_scale_overrides: sigma0 for some cells, ``{"target/interpolation": sigma0}``; by default paper
            003's (Fig. 3), :data:`PAPER_BASE_SCALES` (a ``--set`` of this table adds to it: set a cell to 1.0 to
            undo it).
        source: ``box`` (uniform on the target's box, paper 003 eq. 17) or ``noised_box`` (the box along the OU path).
        trajectory_fraction: share of each batch on the model's own ODE trajectories (Máté & Fleuret); 0: none.
        trajectory_paths: trajectories per refresh.
        trajectory_steps: RK4 steps per trajectory.
        trajectory_refresh: steps between refreshes.
        velocity_form: ``gradient`` (v = grad psi) or ``free``.
        schedule: a_t of the curve, ``linear`` (t) or ``quadratic`` (t^2).
        hutchinson_above_dim: the divergence is a Hutchinson estimate when d exceeds this, exact otherwise.
    """

    steps: int = 10_000
    batch_size: int = 256
    lr: float = 2e-3
    lr_final: float = 2e-5
    grad_clip: float = 100.0
    hidden: list[int] = field(default_factory=lambda: [64, 64, 64])
    base_scale: float = 1.0
    base_scale_overrides: dict[str, float] = field(default_factory=lambda: dict(PAPER_BASE_SCALES))
    source: str = "box"
    trajectory_fraction: float = 0.5
    trajectory_paths: int = 512
    trajectory_steps: int = 20
    trajectory_refresh: int = 50
    velocity_form: str = "gradient"
    schedule: str = "linear"
    hutchinson_above_dim: int = 4

    def __post_init__(self) -> None:
        positive(self, "steps", "batch_size", "lr", "lr_final", "grad_clip", "base_scale", "trajectory_paths",
                 "trajectory_steps", "trajectory_refresh", "hutchinson_above_dim")
        positive(self, "trajectory_fraction", allow_zero=True)
        if self.trajectory_fraction > 1:
            raise ValueError(f"trajectory_fraction must lie in [0, 1], got {self.trajectory_fraction}")
        if not self.hidden or any(isinstance(h, bool) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {self.hidden}")
        cells = {f"{t}/{i}" for t in TARGET_NAMES for i in INTERPOLATIONS}
        for key, value in self.base_scale_overrides.items():
            if key not in cells:
                raise ValueError(f"base_scale_overrides keys must be 'target/interpolation' with a target from "
                                 f"{', '.join(TARGET_NAMES)} and an interpolation from {', '.join(INTERPOLATIONS)}, "
                                 f"got {key!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"base_scale_overrides[{key!r}] must be a finite number > 0, got {value!r}")
        for name, value, allowed in (("source", self.source, SOURCES), ("schedule", self.schedule, SCHEDULES),
                                     ("velocity_form", self.velocity_form, ("gradient", "free"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")

    def base_scale_for(self, target: str, interpolation: str) -> float:
        """sigma0 of one cell: its override, else ``base_scale``."""
        return float(self.base_scale_overrides.get(f"{target}/{interpolation}", self.base_scale))

    def for_cell(self, target: str, interpolation: str) -> dict[str, Any]:
        """The settings one cell is trained with (saved with it and compared on resume): the overrides resolved."""
        out = asdict(self)
        del out["base_scale_overrides"]
        return {**out, "base_scale": self.base_scale_for(target, interpolation)}


@dataclass
class CurveEvaluationSizes:
    """Sample sizes of the evaluation and of the exact 1-D teleportation diagnostic.

    Attributes:
        n_eval: samples for the energy distance and mode coverage (and the exact reference's size).
        n_weights: of those, samples with the exact log-density (ESS, log Z).
        n_speed: samples kept along the path for the measured speed.
        ode_steps: RK4 steps of the sampling ODE.
        speed_times: times in [0, 1] at which the speed is measured.
        n_saved: samples saved per target and interpolation (first seed).
        reference_seed: seed of the exact reference sample (its floor partner uses the next one).
        teleport_grid: quadrature points of the exact 1-D speeds.
        teleport_times: times of the exact 1-D speeds.
    """

    n_eval: int = 50_000
    n_weights: int = 10_000
    n_speed: int = 2_000
    ode_steps: int = 100
    speed_times: int = 41
    n_saved: int = 10_000
    reference_seed: int = 777
    teleport_grid: int = 200_001
    teleport_times: int = 101

    def __post_init__(self) -> None:
        positive(self, "n_eval", "n_weights", "n_speed", "ode_steps", "speed_times", "n_saved", "reference_seed",
                 "teleport_grid", "teleport_times")
        if self.n_weights > self.n_eval or self.n_saved > self.n_eval:
            raise ValueError(f"n_weights and n_saved must not exceed n_eval = {self.n_eval}")
        if self.speed_times < 2 or self.teleport_times < 2 or self.teleport_grid < 101:
            raise ValueError("speed_times and teleport_times must be >= 2 and teleport_grid >= 101")


@dataclass
class Config:
    """The recipe ``fisher-rao`` (``recipes/fisher-rao.toml``).

    Attributes:
        targets: names from :data:`~boltzflow.experiments.fisher_rao_targets.TARGET_NAMES`.
        interpolations: names from :data:`~boltzflow.training.fisher_rao.INTERPOLATIONS`.
        seeds: seeds per (target, interpolation): ``--seed``, ``--seed + 1``, ...
        only: ``target/interpolation/seed``: train and score that cell only, then stop.
        skip_missing: aggregate the finished cells only; cells not run yet are listed as missing, not trained.
        training: the networks and the fit.
        evaluation: sample sizes.
    """

    targets: list[str] = field(default_factory=lambda: list(TARGET_NAMES))
    interpolations: list[str] = field(default_factory=lambda: list(INTERPOLATIONS))
    seeds: int = 3
    only: str | None = None
    skip_missing: bool = False
    training: CurveTraining = field(default_factory=CurveTraining)
    evaluation: CurveEvaluationSizes = field(default_factory=CurveEvaluationSizes)

    def __post_init__(self) -> None:
        positive(self, "seeds")
        for name, values, allowed in (("targets", self.targets, TARGET_NAMES),
                                      ("interpolations", self.interpolations, INTERPOLATIONS)):
            if not values or len(set(values)) != len(values) or any(v not in allowed for v in values):
                raise ValueError(f"{name} must be distinct names from {', '.join(allowed)}, got {values}")
        if self.only is not None:
            parts = self.only.split("/")
            if (len(parts) != 3 or parts[0] not in self.targets or parts[1] not in self.interpolations
                    or not parts[2].isdigit()):
                raise ValueError(f"only must be 'target/interpolation/seed' from the recipe's lists, got {self.only!r}")


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | None = None,
        recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and score every cell (resuming finished ones), then write results.json, table.md, figures, samples."""
    check_device(device, "fisher-rao")
    torch.set_default_dtype(torch.float64)
    ctx = start(out, seed=seed, progress=progress, force=force, command=command)
    cells_dir = ctx.out / "runs"
    cells_dir.mkdir(exist_ok=True)
    if config.only is not None:
        name, interp, k = config.only.split("/")
        _cell(cells_dir, get_target(name), interp, int(k), config, int(k) == seed, progress)
        return {"message": f"cell {config.only} done in {cells_dir}"}
    cells, missing = [], []
    for name in config.targets:
        target = get_target(name)
        for interp in config.interpolations:
            for k in range(seed, seed + config.seeds):
                if config.skip_missing and not (cells_dir / f"{name}-{interp}-s{k}.json").exists():
                    missing.append(f"{name}/{interp}/{k}")
                    continue
                cells.append(_cell(cells_dir, target, interp, k, config, k == seed, progress))
    for name in config.targets:
        for interp in config.interpolations:
            src = cells_dir / f"samples-{name}-{interp}-s{seed}.npz"
            if src.exists():  # absent when the first seed's fit diverged
                shutil.copy(src, ctx.out / "samples" / f"{name}-{interp}.npz")
    if not cells:
        raise BoltzflowError(f"no finished cell in {cells_dir} (skip_missing = true); run some cells first")
    results = {**report(ctx.out, cells, config), "missing": missing}
    results = finish(ctx, results, config, recipe)
    save_text(ctx.out / "table.md", results["table_markdown"] + "\n")
    return results


def _check_same_settings(saved: dict[str, Any], path: Path, training: dict[str, Any],
                         ev: CurveEvaluationSizes) -> None:
    """Refuse to reuse a finished cell that was trained or scored with other settings than these."""
    diff = [k for k in sorted(set(training) | set(saved.get("training", {})))
            if saved.get("training", {}).get(k) != training.get(k)]
    if "error" not in saved:  # a diverged cell has no evaluation to compare
        diff += [k for k in ("n_eval", "n_weights") if saved.get(k) != getattr(ev, k)]
    if diff:
        raise BoltzflowError(f"{path} was made with other settings ({', '.join(diff)}); use a new --out, or the "
                             "settings it was made with")


def _cell(cells_dir: Path, target: CurveTarget, interp: str, seed: int, config: Config, keep_samples: bool,
          progress: bool) -> dict[str, Any]:
    """One (target, interpolation, seed): train, score, save; the saved result if the cell has run already."""
    stem = f"{target.name}-{interp}-s{seed}"
    path = cells_dir / f"{stem}.json"
    tc, ev = config.training, config.evaluation
    if path.exists():
        with open(path) as f:
            saved = json.load(f)
        _check_same_settings(saved, path, tc.for_cell(target.name, interp), ev)
        return saved
    sigma0 = tc.base_scale_for(target.name, interp)
    model = seeded(lambda: build_model(interp, target.energy, target.dim, sigma0, tc.hidden,
                                       velocity_form=tc.velocity_form, schedule=tc.schedule, **target.scales), seed)
    fit = FitConfig(steps=tc.steps, batch_size=tc.batch_size, lr=tc.lr, lr_final=tc.lr_final,
                    grad_clip=tc.grad_clip, hutchinson=target.dim > tc.hutchinson_above_dim,
                    log_every=max(tc.steps // 50, 1))
    gen = torch.Generator().manual_seed(1000 + seed)
    box = box_source(*target.box) if tc.source == "box" else noised_box_source(*target.box, sigma0)
    source = box
    if tc.trajectory_fraction > 0:
        traj = TrajectorySource(model, *target.box, n_paths=tc.trajectory_paths, steps=tc.trajectory_steps,
                                refresh=tc.trajectory_refresh)
        source = mixed_source(traj, box, tc.trajectory_fraction)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    head = {"target": target.name, "interpolation": interp, "seed": seed, "training": tc.for_cell(target.name, interp)}
    try:
        history = fit_curve(model, source, fit, gen)
    except BoltzflowError as err:  # a diverged fit is a result too: recorded, not retried on resume
        failed = {**head, "error": str(err), "train_wall_s": time.perf_counter() - wall0}
        save_json(path, failed)
        if progress:
            print(f"{stem}: failed: {err}", flush=True)
        return failed
    train_cpu, train_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    scored = evaluate_curve(model, target, ev, gen, cells_dir, ev.reference_seed)
    result = {
        **head, "box": target.box, "scales": target.scales,
        "loss": {"steps": history.steps, "values": history.loss},
        "train_cpu_s": train_cpu, "train_wall_s": train_wall,
        "eval_cpu_s": time.process_time() - cpu0, "eval_wall_s": time.perf_counter() - wall0,
        **scored.metrics, "load_average": list(os.getloadavg()),
    }
    if keep_samples:
        n_w = min(ev.n_saved, ev.n_weights)
        save_npz(cells_dir / f"samples-{stem}.npz", x=scored.x[: ev.n_saved].numpy().astype(np.float32),
                 log_w=scored.log_w[:n_w].numpy())
    save_safetensors(cells_dir / f"{stem}.safetensors", model.state_dict(), {"result": {"cell": stem}})
    save_json(path, result)
    if progress:
        print(f"{stem}: ED {fmt(result['energy_distance'])} (floor {fmt(result['energy_distance_floor'])}), "
              f"ESS {fmt(result['ess_fraction'])}, log Z err {fmt(result['log_z_is_error'])}, modes "
              f"{result['modes_covered']}/{result['n_modes']}, train {train_wall:.0f} s", flush=True)
    return result
