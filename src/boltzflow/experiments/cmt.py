"""Runner ``cmt`` (issue 14): CMT and its baselines on one system, one flow and one energy budget, in one harness.

``boltzflow reproduce cmt-gmm40`` (also ``cmt-manywell32``, ``cmt-alanine``, ``cmt-tetrapeptide``) runs, for each
method of the recipe (:mod:`boltzflow.experiments.cmt_config`):

1. the same initial flow (weights from ``--seed``), trained by :func:`boltzflow.training.cmt.runner.run_method`
   against a :class:`~boltzflow.training.cmt.harness.CountedTarget` holding the recipe's budget; checkpoints after
   every step in ``checkpoints/<method>/``, so a killed run resumes at its last finished step (``reproduce`` with
   the same ``--out``); the ESS of fresh samples on an uncounted energy at about ``curve_points`` steps gives the
   ESS-vs-evaluations curve; the data-trained baseline md-nll fits reference samples that are not evaluation
   samples (:func:`~boltzflow.experiments.cmt_report.training_samples`) and spends no training evaluation;
2. the evaluation in float64 by :func:`boltzflow.experiments.runner.bg_evaluation` (``n_draws`` independent
   draws scored by :func:`boltzflow.eval.evaluate.evaluate`: ESS mean ± sd, EUBO on reference samples, log Z
   error, mode coverage and energy distance with floor for model systems, Ramachandran TV and basin populations
   for molecules);
3. the outputs: ``samples/<method>.npz`` (x as float32 and log_prob, u of the first draw), ``table.md`` (paper
   002 Table 1 plus the model-system or αL columns, :mod:`boltzflow.experiments.cmt_report`),
   ``figures/ess_vs_evaluations.png``, ``figures/learned_schedule.png`` (CMT), and ``results.json``.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.experiments.cmt_config import Config, eval_every
from boltzflow.experiments.cmt_report import (
    build_flow_for,
    method_summary,
    reference_samples,
    training_samples,
    write_report,
)
from boltzflow.experiments.runner import bg_evaluation, check_device, finish, start
from boltzflow.io import save_npz
from boltzflow.systems.registry import get_system
from boltzflow.training.cmt.harness import CountedTarget, evaluate
from boltzflow.training.cmt.runner import run_method


class _Logged:
    """A method that prints one line per finished step (for the logs of long background runs)."""

    def __init__(self, method: Any, enabled: bool) -> None:
        self._m, self._enabled, self.name = method, enabled, method.name

    def __getattr__(self, key: str) -> Any:
        return getattr(self._m, key)

    @property
    def n_steps(self) -> int:
        return self._m.n_steps

    def step(self, flow: Any, target: CountedTarget, step: int, generator: torch.Generator) -> dict[str, Any]:
        t0 = time.perf_counter()
        record = self._m.step(flow, target, step, generator)
        if self._enabled:
            keys = ("lam", "eta", "b", "buffer_ess_fraction", "target_ess_fraction", "reverse_kl", "temperature_factor",
                    "nll_last")
            info = " ".join(f"{k}={record[k]:.4g}" for k in keys if isinstance(record.get(k), float))
            print(f"[{time.strftime('%H:%M:%S')}] {self.name} step {step + 1}/{self.n_steps} evals={target.evals} "
                  f"{time.perf_counter() - t0:.1f}s {info}", file=sys.stderr, flush=True)
        return record


def _states(system: Any) -> tuple[Any, list[str]] | None:
    """Basin labels for populations (molecules with a ``basin`` observable), else None."""
    obs = system.observables()
    if "basin" not in obs:
        return None
    from boltzflow.systems.alanine import BASINS

    fn = obs["basin"].fn
    return (lambda x: np.asarray(fn(x)).reshape(-1)), list(BASINS)


def _train(ctx: Any, system: Any, cfg: Config, name: str, method: Any) -> dict[str, Any]:
    """Train one method from the seeded initial flow (resumable); returns the flow and the run's numbers."""
    flow, spec = build_flow_for(system, cfg.flow, ctx.seed)
    energy = system.flat_energy()
    target = CountedTarget(energy, budget=cfg.budget, cap_high=cfg.energy_cap)
    ev = cfg.evaluation

    def curve(f: Any, step: int) -> dict[str, float]:
        f64 = copy.deepcopy(f).double().eval()
        return evaluate(f64, energy, ev.curve_samples, torch.Generator().manual_seed(ctx.seed + 10**6 + step),
                        chunk=ev.chunk_size)

    t0, cpu0, load0 = time.time(), time.process_time(), os.getloadavg()
    res = run_method(_Logged(method, ctx.progress), flow, target, seed=ctx.seed + 1,
                     out=ctx.out / "checkpoints" / name, evaluator=curve,
                     eval_every=eval_every(method.n_steps, ev.curve_points))
    timing = {"wall_seconds_this_session": round(time.time() - t0, 1),
              "cpu_seconds_this_session": round(time.process_time() - cpu0, 1),
              "steps_run_this_session": res.steps_run, "train_seconds_all_sessions":
              round(sum(r["seconds"] for r in res.history), 1), "loadavg_start": list(load0),
              "loadavg_end": list(os.getloadavg())}
    return {"flow": flow, "spec": spec, "evals": res.evals, "history": res.history, "timing": timing}


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | None = None,
        recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train every method (resumable), evaluate, write the table, figures, samples and results.json."""
    check_device(device, "cmt")
    cfg = config
    system = get_system(cfg.system)
    train_x, train_source = training_samples(system, cfg, seed) if "md-nll" in cfg.methods else (None, "")
    methods = cfg.methods_for(train_x, train_source)
    ref_x = reference_samples(system, cfg.evaluation, seed)
    ctx = start(out, seed=seed, progress=progress, force=force, command=command)
    ev = cfg.evaluation
    energy = system.flat_energy()
    per_method = {}
    for name, method in methods.items():
        trained = _train(ctx, system, cfg, name, method)
        if name == "md-nll":
            trained["training_data"] = {"n_samples": len(train_x), "source": train_source,
                                        "training_energy_evaluations": 0}
        flow64 = copy.deepcopy(trained["flow"]).double().eval()
        metrics, draws = bg_evaluation(system, flow64, energy, ev, seed + 2_000_000, reference_x=ref_x,
                                       states=_states(system))
        d = draws[0]
        save_npz(ctx.out / "samples" / f"{name}.npz", x=d.x.float().numpy(), log_prob=d.log_q.numpy(),
                 u=d.u.numpy())
        per_method[name] = method_summary(system, name, trained, metrics, draws, cfg)
        if progress:
            print(f"{name}: ESS {100 * metrics['ess_fraction']['mean']:.2f} % after {trained['evals']} evaluations",
                  file=sys.stderr, flush=True)
    results = write_report(ctx.out, system, cfg, per_method)
    return finish(ctx, results, cfg, recipe)


__all__ = ["Config", "run"]
