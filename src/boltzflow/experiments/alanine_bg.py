"""Boltzmann generator for alanine dipeptide: IC spline flow trained on MD, then with the energy; exact reweighting.

Pipeline (each stage resumable from DIR/checkpoints/):

1. data: the 60 ns OBC dataset (or an ``.npz`` with ``xyz`` (n, n_atoms, 3) nm and optional ``forces_kj``); the test
   split is the last ``test_fraction`` of every replica (less leakage between time-correlated frames than a
   random split). The MD used HBond constraints, but the target is the *unconstrained* AMBER99SB-ILDN/OBC
   energy at 300 K. Bonds that are (numerically) fixed in the data get lengths drawn from their harmonic
   Boltzmann distribution ``N(r0, kT/k)`` of the unconstrained force field (the X-H stretch is fast and
   nearly independent of the rest); the remaining small mismatch is what the energy-based stage and the
   importance weights correct.
   αL seeding: the 60 ns reach αL (0 < φ < 120°) in one replica only; short unbiased MD runs started from those
   training frames (:mod:`boltzflow.samplers.seeded`, cached in DIR/data/) add frames of the basin's local
   equilibrium to the training set, so the flow covers αL; its population is left to the importance weights.
2. NLL training of :func:`~boltzflow.flows.ic_flow.ic_spline_flow` (latent -> flattened Cartesian, nm), on the
   Z-matrix of the system (:meth:`~boltzflow.systems.molecule.MoleculeSystem.zmatrix`).
3. fine-tuning with ``w_n NLL + w_k KL_rev + w_i IW-NLL (+ w_f force matching)`` against the torch AMBER
   energy (lin-log cut above ``energy_high`` kT for training only). The reverse KL sharpens the flow onto the
   Boltzmann density (it raises the ESS) but is mode-seeking; the importance-weighted NLL on flow samples is
   mass-covering, so states the flow under-populates (αL) are pulled back instead of starved. A polish stage
   repeats the objective with a decaying learning rate.
4. evaluation in float64 by :func:`~boltzflow.eval.evaluate.evaluate` over ``n_draws`` independent draws of
   ``n_samples`` flow samples: test NLL and EUBO, ESS (unclipped and clipped) as mean ± sd over the draws, basin
   populations with bootstrap CI (αL: 0 < φ < 120°), Ramachandran TV, energy histograms; independence-MH
   acceptance on the first draw; the αL population of the system's ``umbrella`` reference beside it; figures.

The NLL is the density of the rigid-motion-free configuration (see :mod:`boltzflow.flows.internal`): as a
Cartesian density it is off by the constant log(8π²V), which cancels in every reweighted quantity.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.experiments.bg_data import load_bg_data, oversample, split_by_replica, to_internal, unconstrain_bonds
from boltzflow.experiments.runner import (
    BGEvaluation,
    RunContext,
    Stage,
    bg_evaluation,
    check_device,
    finish,
    positive,
    seeded,
    start,
    train_stages,
)
from boltzflow.flows.ic_flow import ic_spline_flow, ic_spline_spec, ic_statistics
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.realnvp import n_parameters
from boltzflow.io import save_npz
from boltzflow.samplers.independence import Proposals, independence_mh
from boltzflow.systems.alanine import BASINS
from boltzflow.systems.registry import get_system
from boltzflow.training.energy_fit import pack_forces

ALPHA_L = BASINS.index("alphaL")  # 0 < φ < 120°


@dataclass
class BGData:
    """Training data: MD frames, split by replica, with αL seeding.

    Attributes:
        path: an ``.npz`` with ``xyz`` (n, n_atoms, 3) nm (optional ``forces_kj``, ``replica``,
            ``temperature_kelvin``); None: the shipped 60 ns dataset.
        train_frames: training frames drawn at random (None: all).
        test_fraction: the last share of every replica held out for testing.
        alpha_l_oversample: training frames in αL repeated this many times in the data (1: off).
        alpha_l_seed_runs: short unbiased MD runs from the αL training frames whose frames join the data (0: off).
        alpha_l_seed_frames: frames per run (one every 0.25 ps after 2 ps of equilibration).
    """

    path: str | None = None
    train_frames: int | None = None
    test_fraction: float = 0.1
    alpha_l_oversample: int = 1
    alpha_l_seed_runs: int = 40
    alpha_l_seed_frames: int = 200

    def __post_init__(self) -> None:
        positive(self, "train_frames", "alpha_l_oversample")
        positive(self, "alpha_l_seed_runs", "alpha_l_seed_frames", allow_zero=True)
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


@dataclass
class ICSplineFlow:
    """The internal-coordinate spline flow (:func:`~boltzflow.flows.ic_flow.ic_spline_flow`)."""

    n_layers: int = 4
    bins: int = 8
    hidden: list[int] = field(default_factory=lambda: [128, 128])

    def __post_init__(self) -> None:
        positive(self, "n_layers", "bins")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {self.hidden}")


@dataclass
class MoleculeBGEvaluation(BGEvaluation):
    """:class:`BGEvaluation` plus the system's free-energy reference the αL population is compared with."""

    reference: str = "umbrella"


def _default_stages() -> list[Stage]:
    mixed = {"loss": "mixed", "nll_weight": 0.3, "kl_weight": 0.4, "iw_weight": 0.3, "val_fraction": 0.0}
    return [Stage(name="nll", epochs=20, lr=1e-3),
            Stage(name="energy", epochs=15, lr=1e-4, lr_schedule="constant", seed=1, **mixed),
            Stage(name="polish", epochs=8, lr=1e-4, seed=2, **mixed)]


@dataclass
class Config:
    """The recipe ``alanine-bg`` (``recipes/alanine-bg.toml``)."""

    system: str = "alanine-dipeptide"
    data: BGData = field(default_factory=BGData)
    flow: ICSplineFlow = field(default_factory=ICSplineFlow)
    stages: list[Stage] = field(default_factory=_default_stages)
    evaluation: MoleculeBGEvaluation = field(default_factory=MoleculeBGEvaluation)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages must hold at least one stage")


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | None = None,
        recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (resumable), sample, reweight and compare; write results.json, figures and checkpoints under ``out``."""
    check_device(device, "alanine-bg")
    cfg = config
    system = get_system(cfg.system)
    temp, shape = system.temperature_kelvin, tuple(system.event_shape)
    data = load_bg_data(cfg.data.path, temp, shape)
    ctx = start(out, seed=seed, progress=progress, force=force, command=command)
    mol, energy = system.molecule("none"), system.energy()
    ic = InternalCoordinates(system.zmatrix())
    train_idx, test_idx = split_by_replica(data["replica"], cfg.data.test_fraction)
    gen = np.random.default_rng(seed)
    if cfg.data.train_frames is not None and cfg.data.train_frames < len(train_idx):
        train_idx = np.sort(gen.choice(train_idx, cfg.data.train_frames, replace=False))
    q_train, fixed = unconstrain_bonds(to_internal(ic, data["xyz"][train_idx]), ic, mol.system, gen, temp)
    q_test, _ = unconstrain_bonds(to_internal(ic, data["xyz"][test_idx]), ic, mol.system, gen, temp, fixed)
    x_train, x_test = ic.forward(q_train)[0], ic.forward(q_test)[0]
    x_seed = _alpha_l_seed(ctx, system, data["xyz"][train_idx], cfg.data)
    if len(x_seed):
        q_seed, _ = unconstrain_bonds(to_internal(ic, x_seed), ic, mol.system, gen, temp, fixed)
        x_seed = ic.forward(q_seed)[0]
    else:
        x_seed = x_train[:0]
    x_fit = torch.cat([oversample(x_train, alpha_l(system, x_train).bool(), cfg.data.alpha_l_oversample), x_seed])

    periodic = torch.zeros(ic.dim, dtype=torch.bool)
    periodic[ic.periodic_idx] = True
    stats = ic_statistics(q_train, periodic)
    info = {"molecule": system.name, "solvent": system.solvent, "forcefield": list(system.forcefield),
            "constraints": "none", "temperature_kelvin": temp, "n_atoms": shape[0],
            "x_layout": f"flattened {shape} positions, nm, atom order of the system's PDB",
            "resampled_bonds": [list(map(int, p)) for p in fixed]}
    f = cfg.flow
    spec = ic_spline_spec(ic.zmatrix, stats, f.n_layers, f.bins, f.hidden, **info)
    flow = seeded(lambda: ic_spline_flow(ic.zmatrix, stats, f.n_layers, f.bins, f.hidden).float(), seed)
    extra = {"flow_spec": spec, "system": {"name": system.name, **info}, "data": data["source"]}
    u_flat = system.flat_energy()  # AmberEnergy computes in the dtype of its input (float64 parameters)
    batches = _batches(x_fit, energy, shape)
    stages = train_stages(ctx, flow, cfg.stages, batches, u_flat, system.dim, extra)

    flow64 = copy.deepcopy(flow).double().eval()
    ev, draws = bg_evaluation(system, flow64, u_flat, cfg.evaluation, seed + 11, reference_x=x_test,
                              states=(_labels(system), BASINS))
    s = draws[0]
    m = min(cfg.evaluation.mh_steps + 1, cfg.evaluation.n_samples)
    mh = independence_mh(None, Proposals(s.x[:m], s.log_q[:m], -s.u[:m]), None,
                         torch.Generator().manual_seed(seed + 12))
    umbrella = _umbrella(system, cfg.evaluation.reference)
    pop = ev["populations"]["alphaL"]
    from boltzflow.experiments.alanine_bg_figures import figures

    figures(ctx.out, system, s, data["xyz"], x_test, u_flat, umbrella)
    results = {
        "nll_test": ev["nll_reference"],
        "eubo_test": ev["eubo"],
        "ess_fraction": ev["ess_fraction"]["mean"],
        "ess_fraction_sd": ev["ess_fraction"]["sd"],
        "ess_fraction_clipped": ev["ess_fraction_clipped"]["mean"],
        "n_samples": cfg.evaluation.n_samples,
        "n_draws": cfg.evaluation.n_draws,
        "acceptance_rate": mh.acceptance_rate,
        "alpha_l_population_data": float(alpha_l(system, torch.as_tensor(data["xyz"]).flatten(1)).mean()),
        "alpha_l_reference": cfg.evaluation.reference,
        "alpha_l_population_umbrella": umbrella.get("alpha_l_population"),
        "alpha_l_population_umbrella_err": umbrella.get("alpha_l_population_err"),
        "alpha_l_population_bg": pop["mean"],
        "alpha_l_population_bg_ci95": [pop["lo"], pop["hi"]],
        "alpha_l_population_bg_sd_draws": pop["sd_draws"],
        "alpha_l_population_flow_unweighted": float(torch.cat([alpha_l(system, d.x) for d in draws]).mean()),
        "train_seconds": sum(st["seconds"] for st in stages),
        "n_dropped": ev["n_dropped"],
        "n_params": n_parameters(flow),
        "n_train": len(train_idx),
        "n_alpha_l_seed_frames": len(x_seed),
        "alpha_l_population_training_set": float(alpha_l(system, x_fit).mean()),
        "n_test": len(test_idx),
        "stages": stages,
        "data": data["source"],
        "evaluation": ev,
    }
    save_npz(ctx.out / "samples" / "bg.npz", x=s.x.float().numpy(), log_w=s.log_w.numpy(), u=s.u.numpy())
    return finish(ctx, results, cfg, recipe)


def _batches(x_fit: torch.Tensor, energy: Any, shape: tuple[int, ...]):
    """Stage -> its batch tensor: the float32 training set, packed with exact forces for force matching."""
    x = x_fit.float()
    packed: list[torch.Tensor] = []

    def batch(stage: Stage) -> torch.Tensor:
        if stage.loss != "mixed" or stage.force_weight <= 0:
            return x
        if not packed:  # exact unconstrained forces at the (bond-resampled) training positions, in kT/nm
            forces = energy.energy_and_force(x_fit.unflatten(-1, shape)).force_kj
            packed.append(pack_forces(x, (forces / energy.kt_kj_per_mol).flatten(-2).float()))
        return packed[0]

    return batch


def _labels(system: Any):
    """Basin index of configurations (n, *event_shape), from the system's ``basin`` observable."""
    basin = system.observables()["basin"].fn
    return lambda x: np.asarray(basin(x)).reshape(-1)


def alpha_l(system: Any, x: torch.Tensor) -> torch.Tensor:
    """1 where a flattened configuration (n, dim) is in αL (0 < φ < 120°), else 0, in ``x``'s dtype."""
    labels = torch.as_tensor(_labels(system)(x.reshape(-1, *system.event_shape)))
    return (labels == ALPHA_L).to(x.dtype)


def _umbrella(system: Any, name: str) -> dict[str, Any]:
    """The system's free-energy reference ``name`` ({} when the system has none: its entries stay null)."""
    refs = system.references()
    return dict(refs[name].load()) if name in refs else {}


def _alpha_l_seed(ctx: RunContext, system: Any, xyz_train: np.ndarray, d: BGData) -> np.ndarray:
    """Frames (m, n_atoms, 3) nm of short MD runs from the training frames in αL, cached in ``out/data``.

    The starts are spread evenly over the αL training frames (reused if there are fewer frames than runs); the MD
    is the data's (HBond constraints, the system's solvent and temperature). No αL frame or no runs: m = 0.
    """
    from boltzflow.samplers.seeded import short_runs

    in_al = np.flatnonzero(alpha_l(system, torch.as_tensor(xyz_train).flatten(1)).numpy() > 0)
    if d.alpha_l_seed_runs < 1 or d.alpha_l_seed_frames < 1 or len(in_al) == 0:
        return np.zeros((0, *system.event_shape))
    picks = in_al[np.linspace(0, len(in_al) - 1, d.alpha_l_seed_runs).round().astype(int)]
    digest = hashlib.sha256(np.ascontiguousarray(xyz_train[picks], dtype=np.float64).tobytes()).hexdigest()
    key = {"starts": picks.tolist(), "start_sha256": digest, "frames": d.alpha_l_seed_frames, "seed": ctx.seed}
    cache = ctx.out / "data" / "alpha_l_seed.npz"
    if cache.is_file():
        with np.load(cache) as f:
            if json.loads(str(f["key"])) == key:
                return f["xyz"].astype(np.float64)
    xyz = short_runs(system.molecule("HBonds").system, xyz_train[picks], d.alpha_l_seed_frames,
                     temperature_kelvin=system.temperature_kelvin, seed=1000 * ctx.seed, progress=ctx.progress)
    save_npz(cache, xyz=xyz.astype(np.float32), key=np.array(json.dumps(key)))
    return xyz.astype(np.float32).astype(np.float64)


__all__ = ["Config", "alpha_l", "run"]
