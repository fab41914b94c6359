"""Paper 001 §6.2: flows on the backbone dihedrals (φ, ψ) of alanine dipeptide, Figure 3 and the 9.21° W2.

Two models are trained by negative log-likelihood on the (φ, ψ) angles of the MD data set (radians):

* ``realnvp``: the paper's model, a RealNVP on R² with 6 coupling layers and one hidden layer of 64 units
  per s and t net (2,316 parameters). The angles are standardised by the data mean and standard deviation
  and a fixed :class:`~boltzflow.flows.core.Affine` maps back exactly. It knows nothing about periodicity:
  its samples can leave [-π, π]² and its density has a seam where ψ wraps (the β basin sits at ψ ≈ ±180°).
* ``circular_spline``: a periodic flow on the torus T² (circular rational-quadratic spline couplings on a
  uniform base, :mod:`boltzflow.flows.torus`).

Metrics, each model against the full reference data set: W2 in degrees with its noise floor (two disjoint
reference subsets of the same size) on 1,000- and 10,000-point subsamples, with the Euclidean cost on raw
angles (the paper's, we assume) and the torus cost; KL(ref ‖ gen) and TV of 60 × 60 (φ, ψ) histograms; basin
populations (:mod:`boltzflow.systems.alanine`). RealNVP samples are wrapped into [-π, π) for the torus W2,
histograms and basins and used as generated for the Euclidean W2 (``w2_deg``); ``w2_deg_wrapped`` is the
Euclidean W2 after wrapping, which discounts the rare far-out samples a flow on R² draws from its base tails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.experiments.dihedral_metrics import (
    PAPER_W2_DEG,
    metrics,
    noise_floors,
    plain_evaluation,
    table_markdown,
    wrap_np,
)
from boltzflow.experiments.runner import (
    RealNVPFlow,
    RunContext,
    Stage,
    check_device,
    finish,
    positive,
    seeded,
    start,
    train_stages,
)
from boltzflow.flows.realnvp import n_parameters
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.io import save_npz, save_text
from boltzflow.systems.alanine import basin_populations
from boltzflow.systems.registry import get_system


@dataclass
class DihedralModel:
    """One model of Figure 3: a flow on the angle vector and its training stages.

    Attributes:
        name: model name (row, sample file, checkpoints ``<name>_<stage>.pt``).
        kind: "realnvp" (on R^d, the paper's) or "circular_spline" (on the torus T^d).
        n_layers, hidden, activation: architecture.
        masked_input, scale_clamp, standardise: RealNVP only (``standardise``: train on standardised angles,
            exact Affine back to radians).
        bins, rotate: circular spline only.
        stages: training (NLL on the angles); generators seeded ``--seed`` + the model's index.
    """

    name: str = "realnvp"
    kind: str = "realnvp"
    n_layers: int = 6
    hidden: list[int] = field(default_factory=lambda: [64])
    activation: str = "tanh"
    masked_input: bool = False
    scale_clamp: float | None = 2.0
    standardise: bool = True
    bins: int = 8
    rotate: bool = True
    stages: list[Stage] = field(default_factory=lambda: [Stage(name="nll", epochs=80, lr=2e-3)])

    def __post_init__(self) -> None:
        if self.kind not in ("realnvp", "circular_spline"):
            raise ValueError(f"kind must be realnvp or circular_spline, got {self.kind!r}")
        RealNVPFlow(self.n_layers, self.hidden, self.masked_input, self.activation, self.scale_clamp)
        positive(self, "bins")
        if not self.stages:
            raise ValueError(f"model {self.name}: stages must hold at least one stage")

    def spec(self, angles: np.ndarray) -> dict[str, Any]:
        """The flow spec for angles (n, d), radians."""
        dim = angles.shape[1]
        if self.kind == "realnvp":
            flow = RealNVPFlow(self.n_layers, self.hidden, self.masked_input, self.activation, self.scale_clamp)
            loc, std = (angles.mean(0), angles.std(0)) if self.standardise else (None, None)
            return realnvp_spec(flow.config(dim), loc, std)
        config = {"dim": dim, "n_layers": self.n_layers, "bins": self.bins, "hidden": list(self.hidden),
                  "rotate": self.rotate, "activation": self.activation}
        return {"kind": "circular_spline", "config": config, "loc": None, "scale": None}


@dataclass
class DihedralEvaluation:
    """Metric sizes.

    Attributes:
        n_gen: samples drawn from each model (None = as many as reference frames).
        w2_sizes: subsample sizes of the W2 estimates (1,000 and 10,000 points).
        w2_draws: independent draws per size.
        hist_bins: bins per axis of the (φ, ψ) histograms.
    """

    n_gen: int | None = None
    w2_sizes: tuple[int, ...] = (1000, 10_000)
    w2_draws: tuple[int, ...] = (20, 2)
    hist_bins: int = 60

    def __post_init__(self) -> None:
        positive(self, "n_gen", "hist_bins")
        if len(self.w2_sizes) != len(self.w2_draws) or any(v < 1 for v in (*self.w2_sizes, *self.w2_draws)):
            raise ValueError(f"w2_sizes and w2_draws must be equally long lists of integers >= 1, got "
                             f"{list(self.w2_sizes)} and {list(self.w2_draws)}")


@dataclass
class DihedralData:
    """The reference data: the system's ``md`` reference (``n_frames`` drawn at random; None = all)."""

    reference: str = "md"
    n_frames: int | None = None

    def __post_init__(self) -> None:
        positive(self, "n_frames")


def _default_models() -> list[DihedralModel]:
    return [DihedralModel(),
            DihedralModel(name="circular_spline", kind="circular_spline", n_layers=4, hidden=[64, 64],
                          activation="silu", stages=[Stage(name="nll", epochs=40, lr=2e-3)])]


@dataclass
class Config:
    """The recipe ``alanine-dihedrals`` (``recipes/alanine-dihedrals.toml``)."""

    system: str = "alanine-dipeptide"
    data: DihedralData = field(default_factory=DihedralData)
    models: list[DihedralModel] = field(default_factory=_default_models)
    evaluation: DihedralEvaluation = field(default_factory=DihedralEvaluation)

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"models must have distinct names, got {names}")


def load_angles(system: Any, data: Any = None, reference: str = "md") -> tuple[np.ndarray, dict[str, Any]]:
    """Backbone (φ, ψ) of every residue in radians, shape (n, 2 n_residues), float64, and their source.

    Args:
        system: a molecule :class:`~boltzflow.systems.base.System` with a ``phi_psi`` observable.
        data: None (the system's ``reference`` samples), positions (n, *event_shape) nm, or angles (n, d) rad.
        reference: name of the system's reference samples.
    """
    info: dict[str, Any] = {"system": system.name}
    if data is None:
        try:
            ref = system.reference(reference)
            data = ref.load()
        except (ImportError, FileNotFoundError, ValueError) as err:
            raise BoltzflowError(f"{system.name} reference data missing ({err}); make it or pass data") from None
        info |= {"reference": ref.name, "provenance": ref.description,
                 "temperature_kelvin": system.temperature_kelvin}
    arr = np.asarray(data, dtype=np.float64)
    shape = tuple(system.event_shape)
    if arr.ndim == 1 + len(shape) and arr.shape[1:] == shape:
        arr = system.observables()["phi_psi"].fn(torch.as_tensor(arr)).reshape(len(arr), -1).numpy()
    if arr.ndim != 2 or arr.shape[1] % 2 or len(arr) < 10 or not np.isfinite(arr).all():
        raise BoltzflowError(f"need (n, {', '.join(map(str, shape))}) positions or (n, 2k) finite angles, n >= 10; "
                             f"got {arr.shape}")
    return arr, info


def train_model(ctx: RunContext, model: DihedralModel, angles: np.ndarray, seed: int):
    """Build ``model``'s flow and fit it by NLL to ``angles`` (n, d), radians (float32, resumable).

    Returns ``(flow, spec, summary of the last stage)``.
    """
    spec = model.spec(angles)
    flow = seeded(lambda: build_flow(spec).to(torch.float32), seed)
    x = torch.as_tensor(angles, dtype=torch.float32)
    stages = train_stages(ctx._replace(seed=seed), flow, model.stages, x, None, x.shape[1], {"flow_spec": spec},
                          prefix=f"{model.name}_")
    return flow.eval(), stages[-1]


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | None = None, recipe: dict[str, Any] | None = None,
        data: Any = None) -> dict[str, Any]:
    """Train the models, evaluate them and write results.json, table.md, figures/ and samples/.

    Args:
        out: output folder (an unfinished run there is resumed from its checkpoints).
        config: the recipe.
        seed: seeds subsampling, initialisation, training and sampling.
        progress: show progress bars.
        force: allow overwriting a finished run.
        command: the command line, for provenance.
        device: only the CPU.
        recipe: ``{name, scale, source, toml}`` of the recipe (``recipe.toml`` is written beside the results).
        data: see :func:`load_angles` (default: the system's reference samples).
    """
    check_device(device, "alanine-dihedrals")
    cfg, ev = config, config.evaluation
    system = get_system(cfg.system)
    angles, info = load_angles(system, data, cfg.data.reference)
    n_total = len(angles)
    if cfg.data.n_frames is not None and cfg.data.n_frames < n_total:
        angles = angles[np.sort(np.random.default_rng(seed).choice(n_total, cfg.data.n_frames, replace=False))]
    floors = noise_floors(angles, ev, seed + 1)
    ctx = start(out, seed=seed, progress=progress, force=force, command=command)
    pops_real = basin_populations(angles)
    models, gens = [], {}
    for i, model in enumerate(cfg.models):
        flow, fit = train_model(ctx, model, angles, seed + i)
        with torch.no_grad():
            gen = flow.sample(ev.n_gen or len(angles), torch.Generator().manual_seed(seed + 100 + i)).x
        gens[model.name] = gen.double().numpy()
        save_npz(ctx.out / "samples" / f"{model.name}.npz", phi_psi=gens[model.name].astype(np.float32))
        row = {"model": model.name, "n_params": n_parameters(flow), "val_nll": fit["best_val"],
               "best_epoch": fit["best_epoch"], "train_seconds": fit["seconds"],
               "populations_real": pops_real, "alphaL_real": pops_real["alphaL"]}
        models.append(row | metrics(angles, gens[model.name], ev, floors, seed + 200 + i)
                      | {"evaluation": plain_evaluation(angles, gens[model.name])})
    from boltzflow import plots

    fig = plots.ramachandran(wrap_np(angles), {k: wrap_np(v) for k, v in gens.items()})
    plots.save(fig, ctx.out / "figures" / "fig3_ramachandran.png")
    results = {
        "models": models,
        "data": {"n_frames": len(angles), "n_frames_total": n_total, "populations": pops_real, **info},
        "paper": {"w2_deg": PAPER_W2_DEG, "n_params_realnvp": 2316},
    }
    results = finish(ctx, results, cfg, recipe)
    save_text(ctx.out / "table.md", table_markdown(results))
    return results


__all__ = ["Config", "DihedralEvaluation", "DihedralModel", "load_angles", "metrics", "noise_floors", "run",
           "table_markdown", "wrap_np"]
