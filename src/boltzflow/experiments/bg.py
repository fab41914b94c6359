"""A Boltzmann generator for any registered system on Cartesian coordinates: the runner ``bg``.

The recipe names a system, where its training samples come from (its exact sampler, or one of its sample
references), a RealNVP, the stages (NLL, then NLL + reverse KL against the system's energy, ...) and the
evaluation. The run trains the flow, draws ``n_draws`` independent sets of flow samples with importance weights
``log w = -u - log q`` and scores them with :func:`boltzflow.eval.evaluate.evaluate` against held-out samples
(ESS unclipped and clipped as mean ± sd, NLL and EUBO on the held-out set, log Z error where the system knows its
log Z, energy histograms). Nothing here knows the system: shapes come from ``event_shape`` and ``dim``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.experiments.runner import (
    BGEvaluation,
    RealNVPFlow,
    Stage,
    bg_evaluation,
    check_device,
    finish,
    positive,
    seeded,
    start,
    train_stages,
)
from boltzflow.flows.realnvp import n_parameters
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.io import save_npz
from boltzflow.systems.registry import get_system


@dataclass
class SampleData:
    """Training and held-out samples of the system.

    Attributes:
        source: "exact" (the system's exact sampler) or the name of one of its sample references.
        n_train: training samples (the first ones of a reference).
        n_test: held-out samples after them (NLL, EUBO, energy histogram).
    """

    source: str = "exact"
    n_train: int = 10_000
    n_test: int = 2000

    def __post_init__(self) -> None:
        positive(self, "n_train", "n_test")


def _default_stages() -> list[Stage]:
    return [Stage(name="nll", epochs=50, lr=1e-3),
            Stage(name="nll+kl", loss="mixed", epochs=10, lr=1e-4, lr_schedule="constant", seed=1, nll_weight=0.5,
                  kl_weight=0.5)]


@dataclass
class Config:
    """The recipe of runner ``bg``.

    Attributes:
        system: registry name (``boltzflow systems`` lists them).
        data: where the samples come from.
        flow: the RealNVP (dimension from the system).
        stages: the training stages.
        evaluation: draws of flow samples, reweighted.
    """

    system: str = "gmm40"
    data: SampleData = field(default_factory=SampleData)
    flow: RealNVPFlow = field(default_factory=lambda: RealNVPFlow(n_layers=8, hidden=[64, 64]))
    stages: list[Stage] = field(default_factory=_default_stages)
    evaluation: BGEvaluation = field(default_factory=lambda: BGEvaluation(n_samples=10_000, mh_steps=1))

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages must hold at least one stage")


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | None = None,
        recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, sample, reweight and score; write results.json, recipe.toml, samples/bg.npz and checkpoints."""
    check_device(device, "bg")
    cfg = config
    system = get_system(cfg.system)
    x_train, x_test = _samples(system, cfg.data, seed)
    ctx = start(out, seed=seed, progress=progress, force=force, command=command)
    spec = realnvp_spec(cfg.flow.config(system.dim))
    flow = seeded(lambda: build_flow(spec).float(), seed)
    extra = {"flow_spec": spec, "system": {"name": system.name}}
    energy = system.flat_energy()
    stages = train_stages(ctx, flow, cfg.stages, x_train.float(), energy, system.dim, extra)
    flow = flow.double().eval()
    ev, draws = bg_evaluation(system, flow, energy, cfg.evaluation, seed + 123, reference_x=x_test)
    save_npz(ctx.out / "samples" / "bg.npz", x=draws[0].x.float().numpy(), log_w=draws[0].log_w.numpy())
    results = {"system": system.name, "ess_fraction": ev["ess_fraction"]["mean"],
               "ess_fraction_sd": ev["ess_fraction"]["sd"], "n_params": n_parameters(flow), "stages": stages,
               "train_seconds": sum(s["seconds"] for s in stages), "evaluation": ev}
    return finish(ctx, results, cfg, recipe)


def _samples(system: Any, d: SampleData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out samples, flattened to (n, dim), float64."""
    n = d.n_train + d.n_test
    if d.source == "exact":
        x = system.sample_exact(n, torch.Generator().manual_seed(seed + 1000))
    else:
        x = torch.as_tensor(np.asarray(system.reference(d.source).load(), dtype=np.float64))
        if len(x) < n:
            raise ValueError(f"data: {system.name} reference {d.source!r} has {len(x)} samples; n_train + n_test = {n}")
    x = x[:n].reshape(n, system.dim).double()
    return x[: d.n_train], x[d.n_train :]
