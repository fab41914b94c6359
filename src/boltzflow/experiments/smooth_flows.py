"""Smooth vs spline flows for alanine dipeptide: force matching, flows as MD potentials (paper 004 §6.3-6.5).

Pipeline (``boltzflow reproduce smooth-flows``; every training run resumable from ``DIR/checkpoints/``):

1. data: the 60 ns OBC dataset (or an ``.npz`` with ``xyz``), test split = the last ``test_fraction`` of every
   replica. The MD held X-H bonds fixed (HBond constraints) but the target and the flows are unconstrained, so
   those bonds are redrawn from their harmonic Boltzmann distribution (as in ``alanine-bg``), and the reference
   forces are the exact unconstrained AMBER forces at the redrawn positions (torch force field, kT/nm). The
   stored ``forces_kj`` belong to the constrained positions, so they would not match the redrawn ones.
2. Table 1 of paper 004: for each flow kind (``spline``: RQ splines, ``smooth``: C-infinity mixtures) and
   each (ω_k, ω_f) of the grid, ``replicas`` runs of ``(1 - ω_k - ω_f) NLL + ω_k KLD + ω_f FM`` (eq. (5),
   :func:`~boltzflow.training.force_matching.eq5_objective`), best epoch by validation loss; each baseline kind
   (``realnvp``: affine couplings) is trained NLL-only (ω_k = ω_f = 0), ``replicas`` runs. A run *fails*
   when training stops with an error (no finite loss) or its test metrics are not finite. Scored on the test
   frames: NLL, FME (eq. (4), (kT/nm)²), KLD (``E_q[u + log q]`` on flow samples, nats) and the ESS fraction
   of ``n_ess`` flow samples; ``n_saved`` samples (``xyz``, ``log_prob``) of replica 0 of every cell are kept.
3. MD (paper 004 §6.5, :mod:`boltzflow.experiments.smooth_flows_md`): NVE on AMBER, the smooth flow with the
   largest ω_f (ω_k = 0) and the plain spline flow; Langevin on the smooth flow for its (φ, ψ) W2.

The numbers are only comparable with the paper's in kind: our flows, data (60 ns, 300 K, 2 fs, constraints)
and FME units differ (see ``docs/results/smooth-flows.md``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.experiments.bg_data import load_bg_data, split_by_replica, to_internal, unconstrain_bonds
from boltzflow.experiments.runner import cached_stage, check_device, file_sha256, finish, positive, seeded, start
from boltzflow.experiments.smooth_flows_eval import cell_name, score_run, summarize, table_markdown
from boltzflow.flows import ic_flow
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.io import save_npz, save_text
from boltzflow.systems.registry import get_system
from boltzflow.training.config import TrainConfig
from boltzflow.training.energy_fit import pack_forces
from boltzflow.training.force_matching import eq5_objective
from boltzflow.training.loop import fit
from boltzflow.training.losses import linlog_cut

KINDS = ("spline", "smooth", "realnvp")


@dataclass
class SmoothData:
    """MD frames: ``path`` (None: the shipped 60 ns), ``train_frames`` drawn at random (None: all),
    ``test_frames`` scored (evenly spaced over the test split), ``test_fraction`` per replica."""

    path: str | None = None
    train_frames: int | None = None
    test_frames: int = 2000
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        positive(self, "train_frames", "test_frames")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


@dataclass
class Architecture:
    """Every flow kind: coupling blocks, conditioner widths, mixture components (smooth), spline bins."""

    n_layers: int = 4
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    components: int = 8
    bins: int = 8

    def __post_init__(self) -> None:
        positive(self, "n_layers", "components", "bins")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {self.hidden}")


@dataclass
class Grid:
    """The runs of Table 1: flow kinds x ω_k x ω_f, ``replicas`` seeds each, plus the ``baselines`` kinds
    trained NLL-only (ω_k = ω_f = 0, ``replicas`` seeds each) for the ESS comparison (paper 004: RealNVP)."""

    kinds: list[str] = field(default_factory=lambda: ["spline", "smooth"])
    kl_weights: list[float] = field(default_factory=lambda: [0.0, 0.1])
    force_weights: list[float] = field(default_factory=lambda: [0.0, 0.001])
    replicas: int = 3
    baselines: list[str] = field(default_factory=lambda: ["realnvp"])

    def __post_init__(self) -> None:
        positive(self, "replicas")
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ValueError(f"kinds must be a non-empty list of {', '.join(KINDS)}, got {self.kinds}")
        if any(k not in KINDS for k in self.baselines):
            raise ValueError(f"baselines must be a list of {', '.join(KINDS)} (may be empty), got {self.baselines}")
        for wk in self.kl_weights:
            for wf in self.force_weights:
                if not (0 <= wk and 0 <= wf and wk + wf <= 1):
                    raise ValueError(f"kl_weights and force_weights need 0 <= ω_k, ω_f and ω_k + ω_f <= 1, got "
                                     f"{wk}, {wf}")


@dataclass
class Training(TrainConfig):
    """Optimisation of every run (:class:`TrainConfig`), plus reverse-KL samples per step and the lin-log cut."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    lr_schedule: str = "step"
    grad_clip: float | None = None  # the paper does not clip, to compare the kinds fairly
    kl_batch: int = 128
    energy_high: float = 1e3
    force_reduction: str = "mean"  # the FM term per Cartesian component (paper 004's code), or "sum" (eq. (4))

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "kl_batch", "energy_high")
        if self.force_reduction not in ("mean", "sum"):
            raise ValueError(f"training.force_reduction must be 'mean' or 'sum', got {self.force_reduction!r}")


@dataclass
class Scoring:
    """Flow samples for the KLD, for the ESS, and saved per cell; frames per batched flow call."""

    n_kld: int = 10000
    n_ess: int = 100000
    n_saved: int = 20000
    chunk_size: int = 5000

    def __post_init__(self) -> None:
        positive(self, "n_kld", "n_ess", "chunk_size")
        positive(self, "n_saved", allow_zero=True)


@dataclass
class MDProtocol:
    """Paper 004 §6.5: ``runs`` starts from test frames, ``equilibrate_ps`` of Langevin at
    ``equilibrate_friction``, then ``nve_ps`` of NVE at ``timestep_fs``; and ``langevin_ps`` of Langevin at
    ``langevin_friction`` on the smooth flow for the (φ, ψ) W2 (``w2_n`` points, 5 draws)."""

    runs: int = 10
    equilibrate_ps: float = 1.0
    equilibrate_friction: float = 10.0
    nve_ps: float = 5.0
    timestep_fs: float = 1.0
    save_every_fs: float = 10.0
    langevin_ps: float = 20.0
    langevin_friction: float = 1.0
    w2_n: int = 1000

    def __post_init__(self) -> None:
        positive(self, "runs", "equilibrate_friction", "nve_ps", "timestep_fs", "save_every_fs", "w2_n",
                 "langevin_friction")
        positive(self, "equilibrate_ps", "langevin_ps", allow_zero=True)


@dataclass
class Config:
    """The recipe ``smooth-flows`` (``recipes/smooth-flows.toml``)."""

    system: str = "alanine-dipeptide"
    data: SmoothData = field(default_factory=SmoothData)
    flow: Architecture = field(default_factory=Architecture)
    grid: Grid = field(default_factory=Grid)
    training: Training = field(default_factory=Training)
    scoring: Scoring = field(default_factory=Scoring)
    md: MDProtocol = field(default_factory=MDProtocol)


def prepare_data(system: Any, cfg: SmoothData, seed: int) -> dict[str, Any]:
    """Train/test positions (flattened, nm, bonds redrawn) with exact AMBER forces (kT/nm), IC statistics."""
    temp, shape = system.temperature_kelvin, tuple(system.event_shape)
    data = load_bg_data(cfg.path, temp, shape)
    ic = InternalCoordinates(system.zmatrix())
    train_idx, test_idx = split_by_replica(data["replica"], cfg.test_fraction)
    gen = np.random.default_rng(seed)
    if cfg.train_frames is not None and cfg.train_frames < len(train_idx):
        train_idx = np.sort(gen.choice(train_idx, cfg.train_frames, replace=False))
    test_idx = test_idx[np.linspace(0, len(test_idx) - 1, min(cfg.test_frames, len(test_idx))).round().astype(int)]
    mol = system.molecule("none")
    q_train, fixed = unconstrain_bonds(to_internal(ic, data["xyz"][train_idx]), ic, mol.system, gen, temp)
    q_test, _ = unconstrain_bonds(to_internal(ic, data["xyz"][test_idx]), ic, mol.system, gen, temp, fixed)
    energy = system.energy()
    out = {"ic": ic, "fixed": fixed, "source": data["source"]}
    for name, q in (("train", q_train), ("test", q_test)):
        x = ic.forward(q)[0]
        forces = energy.energy_and_force(x.unflatten(-1, shape)).force_kj / energy.kt_kj_per_mol
        out[name] = (x, forces.flatten(1))
    periodic = torch.zeros(ic.dim, dtype=torch.bool)
    periodic[ic.periodic_idx] = True
    out["stats"] = ic_flow.ic_statistics(q_train, periodic)
    return out


def build(kind: str, arch: Architecture, ic: InternalCoordinates, stats: Any, info: dict[str, Any]):
    """``(flow, spec)`` of one kind."""
    make_flow, make_spec, extra = {
        "smooth": (ic_flow.ic_smooth_flow, ic_flow.ic_smooth_spec, {"components": arch.components}),
        "spline": (ic_flow.ic_spline_flow, ic_flow.ic_spline_spec, {"bins": arch.bins}),
        "realnvp": (ic_flow.ic_realnvp_flow, ic_flow.ic_realnvp_spec, {}),
    }[kind]
    kw = {"n_layers": arch.n_layers, "hidden": arch.hidden, **extra}
    return make_flow(ic.zmatrix, stats, **kw), make_spec(ic.zmatrix, stats, **kw, **info)


def train_one(ctx: Any, cfg: Config, d: dict[str, Any], system: Any, cell: tuple[str, float, float], rep: int,
              info: dict[str, Any]) -> tuple[Any, dict[str, Any], Path]:
    """Train one run of the grid; returns ``(flow or None if it failed, its record, checkpoint path)``."""
    kind, wk, wf = cell
    name = f"{cell_name(*cell)}-r{rep}"
    flow, spec = seeded(lambda: build(kind, cfg.flow, d["ic"], d["stats"], info), ctx.seed * 1000 + rep)
    flow = flow.float()
    x, f = d["train"]
    u_flat = system.flat_energy()
    loss = eq5_objective(system.dim, wk, wf, lambda v: linlog_cut(u_flat(v), high=cfg.training.energy_high),
                         cfg.training.kl_batch, cfg.training.force_reduction)
    fields = {k: getattr(cfg.training, k) for k in TrainConfig.__dataclass_fields__}
    schedule = TrainConfig(**{**fields, "seed": ctx.seed * 1000 + rep})
    path = ctx.out / "checkpoints" / f"{name}.safetensors"
    record: dict[str, Any] = {"kind": kind, "kl_weight": wk, "force_weight": wf, "replica": rep, "failed": False}
    try:
        result = fit(flow, loss, pack_forces(x, f).float(), schedule, path, progress=ctx.progress, desc=name,
                     extra={"flow_spec": spec, "system": {"name": system.name, **info}, "data": d["source"]})
        record.update(train_seconds=result.train_seconds, best_epoch=result.best_epoch,
                      skipped_steps=result.skipped_steps)
    except BoltzflowError as err:
        record.update(failed=True, error=str(err))
        return None, record, path
    return flow, record, path


def _score(out: Path, flow64: Any, system: Any, test: tuple[Any, Any], scoring: Scoring, seed: int,
           cell: tuple[str, float, float], rep: int, checkpoint: Path) -> dict[str, Any]:
    """:func:`score_run` of one trained run, saved as ``checkpoints/<run>-score.json`` (with the samples of
    replica 0 in ``samples/``) and reused when the run is resumed with the same checkpoint and settings."""
    saved = scoring.n_saved if rep == 0 else 0
    samples_path = out / "samples" / f"{cell_name(*cell)}.npz"
    cache = out / "checkpoints" / f"{cell_name(*cell)}-r{rep}-score.json"
    if saved and not samples_path.exists():
        cache.unlink(missing_ok=True)  # the samples went missing: score again to write them

    def compute() -> dict[str, Any]:
        record = score_run(flow64, system, test, scoring, seed + 100 * rep, saved)
        samples = record.pop("samples", None)
        if samples is not None:
            save_npz(samples_path, **samples)
        return record

    key = {"checkpoint_sha256": file_sha256(checkpoint), "scoring": asdict(scoring), "seed": seed + 100 * rep,
           "n_saved": saved, "n_test": len(test[0])}
    return cached_stage(cache, key, compute)


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | None = None,
        recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the grid, score every run, run the MD; write results.json, table.md, figures, samples and
    checkpoints."""
    from boltzflow.experiments.smooth_flows_md import md_study

    check_device(device, "smooth-flows")
    cfg = config
    system = get_system(cfg.system)
    ctx = start(out, seed=seed, progress=progress, force=force, command=command)
    d = prepare_data(system, cfg.data, seed)
    info = {"molecule": system.name, "solvent": system.solvent, "constraints": "none",
            "temperature_kelvin": system.temperature_kelvin, "resampled_bonds": [list(map(int, p)) for p in d["fixed"]]}
    runs, keep = [], {}
    cells = [(k, wk, wf) for k in cfg.grid.kinds for wk in cfg.grid.kl_weights for wf in cfg.grid.force_weights]
    cells += [(k, 0.0, 0.0) for k in cfg.grid.baselines if (k, 0.0, 0.0) not in cells]
    for cell in cells:
        for rep in range(cfg.grid.replicas):
            flow, record, path = train_one(ctx, cfg, d, system, cell, rep, info)
            if flow is not None:
                flow64 = copy.deepcopy(flow).double().eval()
                record.update(_score(ctx.out, flow64, system, d["test"], cfg.scoring, seed, cell, rep, path))
                if rep == 0 and not record["failed"]:
                    keep[cell] = (flow64, str(path))
            runs.append(record)
    md = md_study(ctx.out, system, keep, d["test"][0], cfg.md, seed + 7, cache=ctx.out / "checkpoints")
    results = {"table": summarize(runs, cells), "runs": runs, "md": md, "n_train": len(d["train"][0]),
               "n_test": len(d["test"][0]), "data": d["source"],
               "train_seconds": float(sum(r.get("train_seconds", 0.0) for r in runs))}
    save_text(ctx.out / "table.md", table_markdown(results["table"]) + "\n")
    return finish(ctx, results, cfg, recipe)


__all__ = ["Config", "run"]
