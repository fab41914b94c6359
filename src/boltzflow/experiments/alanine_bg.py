"""Boltzmann generator for alanine dipeptide: IC spline flow trained on MD, then with the energy; exact reweighting.

Pipeline (each stage resumable from DIR/checkpoints/):

1. data: the 60 ns OBC dataset (or an ``.npz`` with ``xyz`` (n, 22, 3) nm and optional ``forces_kj``); the test
   split is the last ``test_fraction`` of every replica (less leakage between time-correlated frames than a
   random split). The MD used HBond constraints, but the target is the *unconstrained* AMBER99SB-ILDN/OBC
   energy at 300 K. Bonds that are (numerically) fixed in the data get lengths drawn from their harmonic
   Boltzmann distribution ``N(r0, kT/k)`` of the unconstrained force field (the X-H stretch is fast and
   nearly independent of the rest); the remaining small mismatch is what the energy-based stage and the
   importance weights correct.
   αL seeding: the 60 ns reach αL (0 < φ < 120°) in one replica only; short unbiased MD runs started from those
   training frames (:mod:`boltzflow.samplers.seeded`, cached in DIR/data/) add frames of the basin's local
   equilibrium to the training set, so the flow covers αL; its population is left to the importance weights.
2. NLL training of :func:`~boltzflow.flows.ic_flow.ic_spline_flow` (latent -> flattened (66,) Cartesian, nm).
3. fine-tuning with ``w_n NLL + w_k KL_rev + w_i IW-NLL (+ w_f force matching)`` against the torch AMBER
   energy (lin-log cut above ``energy_high`` kT for training only). The reverse KL sharpens the flow onto the
   Boltzmann density (it raises the ESS) but is mode-seeking; the importance-weighted NLL on flow samples is
   mass-covering, so states the flow under-populates (αL) are pulled back instead of starved. A polish stage
   repeats the objective with a decaying learning rate.
4. evaluation in float64: test NLL, ESS fraction of ``n_samples`` flow samples, independence-MH acceptance,
   αL population (0 < φ < 120°) of the data, of the reweighted BG and of the umbrella/MBAR reference
   (the shipped copy of ``docs/results/alanine-umbrella.json``, or ``umbrella_path``), figures.

The NLL is the density of the rigid-motion-free configuration (see :mod:`boltzflow.flows.internal`): as a
Cartesian density it is off by the constant log(8π²V), which cancels in every reweighted quantity.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.energies.amber import AmberEnergy
from boltzflow.energies.openmm_system import alanine_dipeptide
from boltzflow.errors import BoltzflowError
from boltzflow.eval.weights import reweight, weight_summary
from boltzflow.experiments.bg_data import load_bg_data, oversample, split_by_replica, to_internal, unconstrain_bonds
from boltzflow.experiments.common import prepare_out_dir, provenance
from boltzflow.flows.ic_flow import ic_spline_flow, ic_spline_spec, ic_statistics, sibling_torsions
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.realnvp import n_parameters
from boltzflow.flows.zmatrix import build_zmatrix
from boltzflow.io import save_json, save_npz
from boltzflow.samplers.independence import Proposals, independence_mh
from boltzflow.systems.alanine import phi_psi
from boltzflow.training.config import TrainConfig
from boltzflow.training.energy_fit import bg_samples, mixed_objective, pack_forces
from boltzflow.training.loop import fit
from boltzflow.training.losses import linlog_cut, nll

TEMPERATURE_KELVIN = 300.0
# the committed umbrella/MBAR run (docs/results/alanine-umbrella.json), shipped with the package
UMBRELLA_JSON = Path(__file__).resolve().parents[1] / "data" / "alanine-umbrella.json"
ALPHA_L = (0.0, 2.0 * math.pi / 3.0)  # 0 < φ < 120°


@dataclass
class AlanineBGScale:
    """Sizes of one run (``full`` / ``quick``)."""

    train_frames: int | None = None  # None: every training frame
    test_fraction: float = 0.1
    n_layers: int = 4
    bins: int = 8
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    nll: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=256, lr=1e-3))
    # the energy stage has no validation split (val_fraction 0; its loss has a noisy sampled part): it keeps the
    # epoch with the lowest mean training loss
    mixed: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=15, batch_size=256, lr=1e-4, lr_schedule="constant", val_fraction=0.0
        )
    )
    # then the same objective with the learning rate decayed (cosine, to 1 %): averages out the sampling noise of
    # the reverse-KL gradient that a constant rate leaves in the weights. None: no polish stage.
    polish: TrainConfig | None = field(
        default_factory=lambda: TrainConfig(
            epochs=8, batch_size=256, lr=1e-4, lr_schedule="cosine", lr_final_fraction=0.01, val_fraction=0.0
        )
    )
    nll_weight: float = 0.3
    kl_weight: float = 0.4
    force_weight: float = 0.0  # C¹ splines make force matching unstable (paper 004 §6.3); opt in
    iw_weight: float = 0.3  # mass-covering importance-weighted NLL on flow samples: repopulates states
    # training frames in αL (0 < φ < 120°) appear this many times in the NLL data (a biased proposal costs
    # nothing in exactness: w = exp(-u)/q corrects any proposal that covers the state). Off by default: with 6
    # the flow put 2.9 % of its samples in αL but fitted the 429 repeated frames so tightly that those samples
    # had negligible weight (ESS 4.5 %, reweighted αL ~1e-6; docs/results/alanine-bg.md).
    alpha_l_oversample: int = 1
    # short unbiased 300 K MD runs started from the training frames in αL (spread over them), whose frames join
    # the training data: the flow learns the basin's shape, and the weights put its population right
    # (:mod:`boltzflow.samplers.seeded`). 0 runs: off. 40 runs gave ESS 49.5-53.1 % over four draws of 10^5,
    # 20 runs 40.5-55.9 % (docs/results/alanine-bg.md).
    alpha_l_seed_runs: int = 40
    alpha_l_seed_frames: int = 200  # per run, one every 0.25 ps after 2 ps of equilibration
    kl_batch: int = 256
    energy_high: float = 1e3
    n_samples: int = 100_000
    mh_steps: int = 99_999


def scale(name: str) -> AlanineBGScale:
    if name == "full":
        return AlanineBGScale()
    if name == "quick":
        return AlanineBGScale(
            train_frames=6000,
            n_layers=2,
            bins=8,
            hidden=[64, 64],
            nll=TrainConfig(epochs=30, batch_size=256, lr=2e-3),
            mixed=TrainConfig(epochs=4, batch_size=256, lr=1e-4, lr_schedule="constant", val_fraction=0.0),
            polish=TrainConfig(epochs=2, batch_size=256, lr=1e-4, lr_schedule="cosine", val_fraction=0.0),
            alpha_l_seed_runs=8,
            alpha_l_seed_frames=50,
            kl_batch=128,
            n_samples=20_000,
            mh_steps=19_999,
        )
    if name == "smoke":  # seconds: for tests only
        return AlanineBGScale(
            train_frames=200,
            n_layers=1,
            bins=4,
            hidden=[16],
            nll=TrainConfig(epochs=2, batch_size=100, lr=1e-3),
            mixed=TrainConfig(epochs=1, batch_size=100, lr=1e-4, lr_schedule="constant", val_fraction=0.0),
            polish=TrainConfig(epochs=1, batch_size=100, lr=1e-4, lr_schedule="cosine", val_fraction=0.0),
            force_weight=1e-3,
            alpha_l_seed_runs=2,
            alpha_l_seed_frames=5,
            kl_batch=16,
            n_samples=300,
            mh_steps=299,
        )
    raise ValueError(f"unknown scale {name!r}; use quick or full")


def run(
    out: str | Path,
    scale_name: str = "quick",
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
    command: list[str] | None = None,
    data_path: str | Path | None = None,
    umbrella_path: str | Path | None = None,
    alpha_l_seed_runs: int | None = None,
) -> dict[str, Any]:
    """Train (resumable), sample, reweight and compare; write results.json, figures and checkpoints under ``out``.

    ``alpha_l_seed_runs`` overrides the scale's number of αL seeding runs (0: no seeding).
    """
    started = time.time()
    sc = scale(scale_name)
    if alpha_l_seed_runs is not None:
        if alpha_l_seed_runs < 0:
            raise BoltzflowError(f"alpha_l_seed_runs must be >= 0, got {alpha_l_seed_runs}")
        sc = dataclasses.replace(sc, alpha_l_seed_runs=alpha_l_seed_runs)
    out = prepare_out_dir(out, force)
    mol = alanine_dipeptide(solvent="obc", constraints="none")
    energy = AmberEnergy.from_system(mol.system, TEMPERATURE_KELVIN)
    ic = InternalCoordinates(sibling_torsions(build_zmatrix(mol.topology)))
    data = load_bg_data(data_path, TEMPERATURE_KELVIN)
    train_idx, test_idx = split_by_replica(data["replica"], sc.test_fraction)
    gen = np.random.default_rng(seed)
    if sc.train_frames is not None and sc.train_frames < len(train_idx):
        train_idx = np.sort(gen.choice(train_idx, sc.train_frames, replace=False))
    temp = TEMPERATURE_KELVIN
    q_train, fixed = unconstrain_bonds(to_internal(ic, data["xyz"][train_idx]), ic, mol.system, gen, temp)
    q_test, _ = unconstrain_bonds(to_internal(ic, data["xyz"][test_idx]), ic, mol.system, gen, temp, fixed)
    x_train, x_test = ic.forward(q_train)[0], ic.forward(q_test)[0]
    x_seed = _alpha_l_seed(out, data["xyz"][train_idx], sc, seed, progress)
    if len(x_seed):
        q_seed, _ = unconstrain_bonds(to_internal(ic, x_seed), ic, mol.system, gen, temp, fixed)
        x_seed = ic.forward(q_seed)[0]
    else:
        x_seed = x_train[:0]
    x_fit = torch.cat([oversample(x_train, _alpha_l(x_train).bool(), sc.alpha_l_oversample), x_seed])

    periodic = torch.zeros(ic.dim, dtype=torch.bool)
    periodic[ic.periodic_idx] = True
    stats = ic_statistics(q_train, periodic)
    info = {
        "molecule": "alanine_dipeptide",
        "solvent": "obc",
        "forcefield": list(mol.forcefield),
        "constraints": "none",
        "temperature_kelvin": TEMPERATURE_KELVIN,
        "n_atoms": 22,
        "x_layout": "flattened (22, 3) positions, nm, atom order of the shipped PDB",
        "resampled_bonds": [list(map(int, p)) for p in fixed],
    }
    spec = ic_spline_spec(ic.zmatrix, stats, sc.n_layers, sc.bins, sc.hidden, **info)
    torch.manual_seed(seed)
    flow = ic_spline_flow(ic.zmatrix, stats, sc.n_layers, sc.bins, sc.hidden).float()
    extra = {"flow_spec": spec, "system": {"name": "alanine-dipeptide", **info}, "data": data["source"]}
    u_flat = lambda x: energy(x.unflatten(-1, (22, 3)))  # noqa: E731
    stages = _train(out, flow, u_flat, x_fit, energy, sc, seed, extra, progress)

    flow64 = copy.deepcopy(flow).double().eval()
    u64 = u_flat  # AmberEnergy computes in the dtype of its input (float64 parameters)
    evaluation = _evaluate(flow64, u64, x_test, data, sc, seed)
    umbrella = load_umbrella(umbrella_path)
    _figures(out, evaluation, data, x_test, u64, umbrella)
    results = {
        "nll_test": evaluation["nll_test"],
        "ess_fraction": evaluation["ess_fraction"],
        "n_samples": sc.n_samples,
        "acceptance_rate": evaluation["acceptance_rate"],
        "alpha_l_population_data": evaluation["alpha_l_data"],
        "alpha_l_population_umbrella": umbrella.get("alpha_l_population"),
        "alpha_l_population_umbrella_err": umbrella.get("alpha_l_population_err"),
        "alpha_l_population_bg": evaluation["alpha_l_bg"],
        "alpha_l_population_bg_err": evaluation["alpha_l_bg_err"],
        "alpha_l_population_flow_unweighted": evaluation["alpha_l_flow"],
        "train_seconds": sum(s["seconds"] for s in stages),
        "n_dropped": evaluation["n_dropped"],
        "n_params": n_parameters(flow),
        "n_train": len(train_idx),
        "n_alpha_l_seed_frames": len(x_seed),
        "alpha_l_population_training_set": float(_alpha_l(x_fit).mean()),
        "n_test": len(test_idx),
        "stages": stages,
        "data": data["source"],
        "config": {"scale": scale_name, "seed": seed, **dataclasses.asdict(sc)},
        "provenance": provenance(command, started),
    }
    save_npz(
        out / "samples" / "bg.npz",
        x=evaluation["x"].float().numpy(),
        log_w=evaluation["log_w"].numpy(),
        u=evaluation["u"].numpy(),
    )
    save_json(out / "results.json", results)
    return results


def _train(out, flow, u_flat, x_fit, energy, sc: AlanineBGScale, seed, extra, progress):
    """NLL on ``x_fit`` (n, 66) float64, then the energy and polish stages; returns the stage summaries."""
    x = x_fit.float()
    cfg = dataclasses.replace(sc.nll, seed=seed)
    first = fit(
        flow,
        nll,
        x,
        cfg,
        out / "checkpoints" / "nll.pt",
        extra={**extra, "stage": "nll"},
        progress=progress,
        desc="nll",
    )
    stages = [
        {"stage": "nll", "best_val": first.best_val, "seconds": first.train_seconds, "skipped": first.skipped_steps}
    ]
    if sc.kl_weight <= 0 and sc.force_weight <= 0 and sc.iw_weight <= 0:
        return stages
    batch = x
    if sc.force_weight > 0:  # exact unconstrained forces at the (bond-resampled) training positions
        forces = energy.energy_and_force(x_fit.unflatten(-1, (22, 3))).force_kj  # kJ/mol/nm
        batch = pack_forces(x, (forces / energy.kt_kj_per_mol).flatten(-2).float())
    u_train = lambda v: linlog_cut(u_flat(v), high=sc.energy_high)  # noqa: E731
    loss = mixed_objective(
        u_train, sc.nll_weight, sc.kl_weight, sc.force_weight, sc.kl_batch, dim=66, iw_weight=sc.iw_weight
    )
    cfg = dataclasses.replace(sc.mixed, seed=seed + 1)
    second = fit(
        flow,
        loss,
        batch,
        cfg,
        out / "checkpoints" / "bg.pt",
        extra={**extra, "stage": "energy"},
        progress=progress,
        desc="nll+kl",
    )
    weights = {"nll": sc.nll_weight, "kl": sc.kl_weight, "fm": sc.force_weight, "iw": sc.iw_weight}
    stages.append(_energy_summary("energy", second, weights))
    if sc.polish is not None:
        third = fit(
            flow,
            loss,
            batch,
            dataclasses.replace(sc.polish, seed=seed + 2),
            out / "checkpoints" / "bg_polish.pt",
            extra={**extra, "stage": "polish"},
            progress=progress,
            desc="polish",
        )
        stages.append(_energy_summary("polish", third, weights))
    return stages


def _energy_summary(name: str, result, weights: dict[str, float]) -> dict[str, Any]:
    return {
        "stage": name,
        "final_train_loss": result.history[-1]["train_loss"] if result.history else None,
        "best_epoch": result.best_epoch,
        "seconds": result.train_seconds,
        "skipped": result.skipped_steps,
        "weights": weights,
    }


def _alpha_l_seed(out: Path, xyz_train: np.ndarray, sc: AlanineBGScale, seed: int, progress: bool) -> np.ndarray:
    """Frames (m, 22, 3) nm of short MD runs from the training frames in αL, cached in ``out/data``.

    The starts are spread evenly over the αL training frames (reused if there are fewer frames than runs); the MD
    is the data's (HBond constraints, OBC, 300 K). No αL training frame or no runs: (0, 22, 3).
    """
    from boltzflow.samplers.seeded import short_runs

    in_al = np.flatnonzero(_alpha_l(torch.as_tensor(xyz_train).flatten(-2)).numpy() > 0)
    if sc.alpha_l_seed_runs < 1 or sc.alpha_l_seed_frames < 1 or len(in_al) == 0:
        return np.zeros((0, 22, 3))
    picks = in_al[np.linspace(0, len(in_al) - 1, sc.alpha_l_seed_runs).round().astype(int)]
    digest = hashlib.sha256(np.ascontiguousarray(xyz_train[picks], dtype=np.float64).tobytes()).hexdigest()
    key = {"starts": picks.tolist(), "start_sha256": digest, "frames": sc.alpha_l_seed_frames, "seed": seed}
    cache = out / "data" / "alpha_l_seed.npz"
    if cache.is_file():
        with np.load(cache) as f:
            if json.loads(str(f["key"])) == key:
                return f["xyz"].astype(np.float64)
    mol = alanine_dipeptide(solvent="obc", constraints="HBonds")
    xyz = short_runs(
        mol.system, xyz_train[picks], sc.alpha_l_seed_frames, temperature_kelvin=TEMPERATURE_KELVIN,
        seed=1000 * seed, progress=progress,
    )
    save_npz(cache, xyz=xyz.astype(np.float32), key=np.array(json.dumps(key)))
    return xyz.astype(np.float32).astype(np.float64)


def _alpha_l(x: torch.Tensor) -> torch.Tensor:
    phi = phi_psi(x.reshape(-1, 22, 3))[..., 0]
    return ((phi > ALPHA_L[0]) & (phi < ALPHA_L[1])).to(x.dtype)


@torch.no_grad()
def _evaluate(flow, u64, x_test, data, sc: AlanineBGScale, seed: int) -> dict[str, Any]:
    nll_test = float(torch.cat([-flow.log_prob(c) for c in x_test.split(5000)]).mean())
    s = bg_samples(flow, u64, sc.n_samples, torch.Generator().manual_seed(seed + 11), chunk_size=5000)
    summary = weight_summary(s.log_w)
    m = min(sc.mh_steps + 1, sc.n_samples)
    mh = independence_mh(
        None, Proposals(s.x[:m], s.log_q[:m], -s.u[:m]), None, torch.Generator().manual_seed(seed + 12)
    )
    ind = _alpha_l(s.x)
    est = reweight(ind, s.log_w)
    return {
        "nll_test": nll_test,
        "ess_fraction": summary.ess_fraction,
        "n_dropped": summary.n_dropped,
        "acceptance_rate": mh.acceptance_rate,
        "alpha_l_bg": float(est.mean),
        "alpha_l_bg_err": float(est.stderr),
        "alpha_l_flow": float(ind.mean()),
        "alpha_l_data": float(_alpha_l(torch.as_tensor(data["xyz"])).mean()),
        "x": s.x,
        "log_w": s.log_w,
        "u": s.u,
    }


def load_umbrella(path: str | Path | None = None) -> dict[str, Any]:
    """The umbrella/MBAR reference (keys alpha_l_population[_err], phi_grid [rad], free_energy_kt), or {}.

    Default: the shipped copy of the committed ``boltzflow umbrella`` run (``docs/results/alanine-umbrella.json``);
    if a build lacks it, the umbrella entries of results.json stay null. An explicit ``path`` must exist.
    """
    path = Path(path) if path is not None else UMBRELLA_JSON
    if not path.is_file():
        if path != UMBRELLA_JSON:
            raise BoltzflowError(f"umbrella reference not found: {path}")
        return {}
    ref = json.loads(path.read_text())
    ref = ref.get("umbrella", ref) if isinstance(ref, dict) else {}
    if "phi_grid" not in ref and "phi_deg" in ref:  # the committed umbrella JSON stores the grid in degrees
        ref = {**ref, "phi_grid": np.radians(np.asarray(ref["phi_deg"], dtype=float)).tolist()}
    return ref


def _figures(
    out: Path, ev: dict[str, Any], data: dict[str, Any], x_test, u64, umbrella: dict[str, Any]
) -> None:
    from boltzflow import plots

    w = torch.softmax(torch.nan_to_num(ev["log_w"], nan=-math.inf), 0).numpy()
    ang_bg = np.degrees(phi_psi(ev["x"].reshape(-1, 22, 3)).numpy())
    ang_md = np.degrees(phi_psi(torch.as_tensor(data["xyz"])).numpy())
    fig = plots.free_energy_phi_psi([("MD data", ang_md, None), ("BG, reweighted", ang_bg, w)])
    plots.save(fig, out / "figures" / "free_energy_phi_psi.png")
    ref = None
    if "phi_grid" in umbrella and "free_energy_kt" in umbrella:
        ref = ("umbrella/MBAR", np.degrees(umbrella["phi_grid"]), np.asarray(umbrella["free_energy_kt"]))
    fig = plots.free_energy_phi([("MD data", ang_md[:, 0], None), ("BG, reweighted", ang_bg[:, 0], w)], ref)
    plots.save(fig, out / "figures" / "free_energy_phi.png")
    u_md = torch.cat([u64(c) for c in x_test.split(5000)]).numpy()
    fig = plots.energy_histograms(u_md, ev["u"].numpy(), w, ref_label="MD test frames")
    plots.save(fig, out / "figures" / "energy_histograms.png")
