"""Baselines on the model systems (GMM-40, ManyWell-32, DW4, LJ13): a data-trained BG and data-free reverse KL.

``run(out, system, method, seed=..., scale=...)`` trains one RealNVP and evaluates it:

* ``method="nll"``: maximum likelihood on reference samples (the data-trained Boltzmann generator). GMM-40 and
  ManyWell-32 train on fresh exact samples; DW4 and LJ13 on one half of the shipped MCMC reference (a seeded
  random split), the other half is held out for every evaluation of both methods.
* ``method="reverse_kl"``: E_q[u + log q] on the flow's own reparameterised samples, no data (paper 004 eq. (3));
  for LJ13 the training energy is lin-log cut above 10³ kT (:func:`~boltzflow.training.losses.linlog_cut`),
  the evaluation uses the true energy.

The flow lives on R^D: the configuration itself for GMM-40 (D = 2) and ManyWell-32 (D = 32), and the Helmert
coordinates of the zero centre-of-mass subspace for DW4 (D = 6) and LJ13 (D = 36)
(:meth:`~boltzflow.systems.particles.ParticleSystem.to_com_free`; an isometry, so log q and the log weights need
no correction). Both methods use the same flow with the same fixed de-standardisation, taken from the system's
definition, never from samples: for a Gaussian mixture its exact mean and per-coordinate standard deviation, unit
scale otherwise (:func:`prior_affine`).

The metrics (:mod:`boltzflow.experiments.baselines_eval`) are the system's, each as mean ± sd over independent
draws of flow samples, next to its noise floor. The run directory holds ``config.json``, the resumable training
checkpoint and ``metrics.jsonl`` under ``checkpoints/``, ``results.json`` and ``samples.npz`` (at most ~1 MB).
A killed run resumes from its last epoch; a finished one (``results.json``) is returned as it is.

Run from the command line::

    python -m boltzflow.experiments.baselines gmm40 nll --out runs/baselines/gmm40-nll --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.experiments.baselines_eval import evaluate_baseline
from boltzflow.experiments.common import provenance
from boltzflow.experiments.stages import positive
from boltzflow.flows.flow import Flow
from boltzflow.flows.realnvp import RealNVPConfig, n_parameters
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.io import save_json, save_npz
from boltzflow.systems.registry import get_system
from boltzflow.training.config import TrainConfig
from boltzflow.training.loop import train
from boltzflow.training.losses import linlog_cut, nll, sample_reverse_kl
from boltzflow.training.reporters import MetricsLog, ProgressBar
from boltzflow.training.sources import DatasetSource, FlowSampleSource

METHODS = ("nll", "reverse_kl")
SAMPLE_BYTES = 1_000_000  # most bytes written to samples.npz (positions and log weights)


@dataclass
class BaselineScale:
    """Sizes of one baseline run.

    Attributes:
        n_layers, hidden: RealNVP coupling layers and hidden widths.
        n_train: exact training samples (GMM-40, ManyWell-32; the particle systems use half their reference).
        nll: optimisation of the NLL stage (``val_fraction`` of the training data picks the best epoch).
        reverse_kl: optimisation of the reverse-KL stage (an epoch is ``kl_steps`` batches of ``kl_batch``).
        kl_batch, kl_steps: flow samples per reverse-KL step, steps per epoch.
        energy_cut: lin-log cut of u for reverse-KL training (kT), or None.
        n_draws, n_per_draw: independent evaluation draws and flow samples per draw.
        n_metric: samples per set for the energy distance and the particle W2 (capped by the held-out data).
        dtype: training dtype ("float32" or "float64"); evaluation always runs in float64.
    """

    n_layers: int = 8
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    n_train: int = 20_000
    nll: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, batch_size=256, lr=1e-3,
                                                                  checkpoint_every=5))
    reverse_kl: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, lr=5e-4, val_fraction=0.0,
                                                                         checkpoint_every=5))
    kl_batch: int = 256
    kl_steps: int = 100
    energy_cut: float | None = None
    n_draws: int = 4
    n_per_draw: int = 5000
    n_metric: int = 5000
    dtype: str = "float32"

    def __post_init__(self) -> None:
        positive(self, "n_layers", "n_train", "kl_batch", "kl_steps", "n_draws", "n_per_draw", "n_metric",
                 "energy_cut")
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {self.hidden}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")


def scale_for(system_name: str, name: str = "full") -> BaselineScale:
    """The preset ``name`` ("full": the committed table, ≤ ~10 CPU-minutes per run; "smoke": seconds, tests)."""
    if name == "smoke":
        return BaselineScale(n_layers=4, hidden=[16], n_train=2000,
                             nll=TrainConfig(epochs=3, batch_size=200, lr=2e-3, val_fraction=0.1),
                             reverse_kl=TrainConfig(epochs=3, lr=2e-3, val_fraction=0.0), kl_batch=200,
                             kl_steps=10, n_draws=4, n_per_draw=500, n_metric=250, dtype="float64",
                             energy_cut=1e3 if system_name == "lj13" else None)
    if name != "full":
        raise ValueError(f"unknown scale {name!r}; choose full or smoke")
    base = BaselineScale()  # CPU ms per step (1 thread, batch 256): GMM 13-15, MW 25-28, DW4 11-12, LJ13 20-21
    per_system = {
        "gmm40": replace(base, hidden=[64, 64], nll=replace(base.nll, epochs=100),
                         reverse_kl=replace(base.reverse_kl, epochs=40)),
        "manywell32": replace(base, n_train=100_000, nll=replace(base.nll, epochs=16),
                              reverse_kl=replace(base.reverse_kl, epochs=30)),
        "dw4": replace(base, hidden=[64, 64], nll=replace(base.nll, epochs=300)),
        "lj13": replace(base, nll=replace(base.nll, epochs=200), energy_cut=1e3),
    }
    return per_system.get(system_name, base)


def prior_affine(system: Any) -> tuple[Tensor, Tensor]:
    """Fixed de-standardisation (loc, scale), each shape (D,), from the system's definition (no samples).

    An equal-weight isotropic Gaussian mixture (``means``, ``scale``) gets its exact mean and per-coordinate
    standard deviation sqrt(Var(means) + σ²); every other system loc 0 and scale 1 on the flow's coordinates.
    """
    if hasattr(system, "means") and hasattr(system, "scale"):
        means = torch.as_tensor(system.means, dtype=torch.float64)
        return means.mean(0), (means.var(0, unbiased=False) + float(system.scale) ** 2).sqrt()
    d = flow_dim(system)
    return torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)


def flow_dim(system: Any) -> int:
    """Dimension of the flow's coordinates: (n − 1)·d for particle systems, ``system.dim`` otherwise."""
    return int(getattr(system, "com_free_dim", system.dim))


def to_flow(system: Any, x: Tensor) -> Tensor:
    """Configurations (n, *event_shape) -> flow coordinates (n, D)."""
    return system.to_com_free(x) if hasattr(system, "com_free_dim") else x.flatten(1)


def from_flow(system: Any, y: Tensor) -> Tensor:
    """Flow coordinates (n, D) -> configurations (n, *event_shape)."""
    return system.from_com_free(y) if hasattr(system, "com_free_dim") else y.unflatten(-1, system.event_shape)


def flow_energy(system: Any) -> Any:
    """u on the flow's coordinates, (n, D) -> (n,), kT."""
    return system.com_free_energy() if hasattr(system, "com_free_dim") else system.flat_energy()


def reference_split(system: Any, seed: int, n_train: int) -> tuple[Tensor | None, Tensor]:
    """(training configurations or None, held-out configurations), float64, shape (n, *event_shape).

    Exact samplers: ``n_train`` samples from seed ``seed`` and 10⁴ held-out ones from seed ``seed + 10⁶``.
    MCMC references (DW4, LJ13): a random half of the shipped samples each (permutation seeded by ``seed``).
    """
    if system.has_exact_sampler:
        held = system.sample_exact(10_000, torch.Generator().manual_seed(seed + 1_000_000))
        return system.sample_exact(n_train, torch.Generator().manual_seed(seed)), held
    if "mcmc" not in system.references():
        raise BoltzflowError(f"system {system.name} has neither an exact sampler nor an MCMC reference")
    ref = torch.as_tensor(system.reference("mcmc").load(), dtype=torch.float64)
    perm = torch.randperm(len(ref), generator=torch.Generator().manual_seed(seed))
    half = len(ref) // 2
    return ref[perm[:half]], ref[perm[half:]]


def make_flow(system: Any, sc: BaselineScale, seed: int, dtype: torch.dtype) -> tuple[Flow, dict[str, Any]]:
    """A freshly initialised RealNVP (weights from ``seed``, global RNG state restored) and its spec."""
    loc, scale = prior_affine(system)
    spec = realnvp_spec(RealNVPConfig(dim=flow_dim(system), n_layers=sc.n_layers, hidden=list(sc.hidden)), loc, scale)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = build_flow(spec).to(dtype)
    return flow, spec


def _train(system: Any, method: str, flow: Flow, spec: dict[str, Any], sc: BaselineScale, seed: int,
           train_y: Tensor | None, ckpt: Path, progress: bool) -> dict[str, Any]:
    """Train ``flow`` in place by ``method``; returns the fit summary."""
    dtype = next(flow.parameters()).dtype
    if method == "nll":
        if train_y is None:
            raise BoltzflowError(f"system {system.name} has no reference samples for NLL training")
        cfg, loss = replace(sc.nll, seed=seed), nll
        source = DatasetSource(train_y.to(dtype), cfg.batch_size, cfg.val_fraction, keep_best=True)
    else:
        energy = flow_energy(system)
        train_energy = energy if sc.energy_cut is None else (lambda y: linlog_cut(energy(y), sc.energy_cut))
        cfg, loss = replace(sc.reverse_kl, seed=seed), sample_reverse_kl
        source = FlowSampleSource(train_energy, sc.kl_batch, sc.kl_steps, reparameterized=True)
    reporters = [ProgressBar(f"{system.name} {method}", disable=not progress),
                 MetricsLog(ckpt.parent / "metrics.jsonl")]
    res = train(flow, loss, source, cfg, checkpoint=ckpt, reporters=reporters, stage=method,
                extra={"flow_spec": spec, "system": system.name, "method": method})
    return {"best_epoch": res.best_epoch, "best_val": res.best_val, "skipped_steps": res.skipped_steps,
            "steps": int(sum(h["steps"] for h in res.history)),
            "train_seconds_all_epochs": res.train_seconds, "final_train_loss": res.history[-1]["train_loss"],
            "train_config": asdict(cfg)}


def run(out: str | Path, system_name: Any, method: str, *, seed: int = 0, scale: str | BaselineScale = "full",
        progress: bool = True) -> dict[str, Any]:
    """Train and evaluate one baseline; returns (and writes) ``results.json`` (see the module docstring).

    Args:
        out: run directory (created; an unfinished run there is resumed).
        system_name: registry name ("gmm40", "manywell32", "dw4", "lj13") or a System object.
        method: "nll" or "reverse_kl".
        seed: training seed (data draw or split, initial weights, minibatches, flow samples); evaluation samples
            come from seeds derived from it.
        scale: "full", "smoke", or a :class:`BaselineScale`.
        progress: show a progress bar.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    system = get_system(system_name) if isinstance(system_name, str) else system_name
    sc = scale if isinstance(scale, BaselineScale) else scale_for(system.name, scale)
    out = Path(out)
    if (out / "results.json").exists():
        return json.loads((out / "results.json").read_text())
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    started, cpu0, load0 = time.time(), time.process_time(), os.getloadavg()
    dtype = getattr(torch, sc.dtype)
    flow, spec = make_flow(system, sc, seed, dtype)
    config = {"system": system.name, "method": method, "seed": seed,
              "scale": scale if isinstance(scale, str) else "custom", "baseline_scale": asdict(sc),
              "flow_spec": spec, "n_parameters": n_parameters(flow)}
    save_json(out / "config.json", config)
    train_x, held_x = reference_split(system, seed, sc.n_train)
    train_y = None if train_x is None else to_flow(system, train_x)
    fit = _train(system, method, flow, spec, sc, seed, train_y, out / "checkpoints" / "train.safetensors", progress)
    cpu_train = time.process_time() - cpu0
    evaluation, samples = evaluate_baseline(system, flow.double().eval(), held_x, sc, seed, to_flow, from_flow,
                                            flow_energy(system))
    rows = max(1, min(len(samples["x"]), SAMPLE_BYTES // (4 * system.dim + 8)))  # float32 x, float64 log_w
    save_npz(out / "samples.npz", x=samples["x"][:rows].astype(np.float32), log_w=samples["log_w"][:rows])
    results = {**config, "training": fit, "evaluation": evaluation, "samples_saved": rows,
               "timing": {"cpu_seconds_train": round(cpu_train, 1),
                          "cpu_seconds_total": round(time.process_time() - cpu0, 1),
                          "loadavg_start": list(load0), "loadavg_end": list(os.getloadavg())},
               "provenance": provenance(sys.argv if __name__ == "__main__" else None, started)}
    save_json(out / "results.json", results)
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m boltzflow.experiments.baselines SYSTEM METHOD --out DIR [--seed N] [--scale full|smoke]``."""
    p = argparse.ArgumentParser(prog="python -m boltzflow.experiments.baselines", description=__doc__.split("\n")[0])
    p.add_argument("system")
    p.add_argument("method", choices=METHODS)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", default="full", choices=("full", "smoke"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        res = run(args.out, args.system, args.method, seed=args.seed, scale=args.scale, progress=not args.no_progress)
    except (BoltzflowError, ValueError, FileNotFoundError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, "timing": res["timing"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
