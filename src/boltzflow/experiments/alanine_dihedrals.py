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

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.eval.histograms import histogram_divergence
from boltzflow.eval.wasserstein import w2_noise_floor, w2_subsampled
from boltzflow.experiments.common import fmt, prepare_out_dir, provenance
from boltzflow.flows.realnvp import RealNVPConfig, n_parameters
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.io import save_json, save_npz, save_text
from boltzflow.systems.alanine import basin_populations, phi_psi
from boltzflow.training.config import TrainConfig
from boltzflow.training.loop import FitResult, fit
from boltzflow.training.losses import nll

PAPER_W2_DEG = 9.21  # paper 001 §6.2, Euclidean W2 on 1,000-point subsamples (RealNVP)
DEG = 180.0 / math.pi
W2_TAGS = [f"{base}{part}" for base in ("w2_deg", "w2_torus_deg", "w2_deg_wrapped")
           for part in ("", "_sd", "_floor", "_floor_sd", "_ratio")]


@dataclass
class CircularSplineConfig:
    """Architecture of the periodic model (see :func:`boltzflow.flows.torus.circular_spline_flow`)."""

    dim: int = 2
    n_layers: int = 4
    bins: int = 8
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    rotate: bool = True
    activation: str = "silu"


@dataclass
class AlanineDihedralsConfig:
    """Sizes and settings of one run (:func:`config` gives the ``quick`` and ``full`` defaults).

    Attributes:
        n_frames: frames drawn at random from the data set (None = all).
        realnvp: the paper's RealNVP on (φ, ψ).
        standardise: train the RealNVP on standardised angles (exact Affine back to radians).
        spline: the circular-spline flow on T².
        train_realnvp: optimisation of the RealNVP.
        train_spline: optimisation of the spline flow.
        n_gen: samples drawn from each model (None = as many as reference frames).
        w2_sizes: subsample sizes of the W2 estimates (1,000 and 10,000 points).
        w2_draws: independent draws per size.
        hist_bins: bins per axis of the (φ, ψ) histograms.
    """

    n_frames: int | None = None
    realnvp: RealNVPConfig = field(
        default_factory=lambda: RealNVPConfig(dim=2, n_layers=6, hidden=[64], masked_input=False)
    )
    standardise: bool = True
    spline: CircularSplineConfig = field(default_factory=CircularSplineConfig)
    train_realnvp: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=80, lr=2e-3))
    train_spline: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, lr=2e-3))
    n_gen: int | None = None
    w2_sizes: tuple[int, ...] = (1000, 10_000)
    w2_draws: tuple[int, ...] = (20, 2)
    hist_bins: int = 60


def config(scale: str) -> AlanineDihedralsConfig:
    """Defaults of the ``full`` run (all ~60k frames) and the ``quick`` demo (≤ 5 minutes on 2 cores)."""
    if scale == "full":
        return AlanineDihedralsConfig()
    if scale == "quick":
        return AlanineDihedralsConfig(
            n_frames=6000,
            train_realnvp=TrainConfig(epochs=30, lr=3e-3),
            train_spline=TrainConfig(epochs=30, lr=3e-3),
            w2_sizes=(1000,),
            w2_draws=(3,),
        )
    raise ValueError(f"unknown scale {scale!r}; use quick or full")


def load_angles(data: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(φ, ψ) in radians, shape (n, 2), float64, and a description of the source.

    Args:
        data: None (the packaged 60 ns data set), an object with ``xyz`` (n, 22, 3) nm such as
            ``AlanineDataset``, an array of positions (n, 22, 3) nm, or an array of angles (n, 2) radians.
    """
    info: dict[str, Any] = {}
    if data is None:
        try:
            from boltzflow.samplers.dataset import load_alanine_dataset

            data = load_alanine_dataset()
        except (ImportError, FileNotFoundError) as err:
            raise BoltzflowError(f"alanine dipeptide data missing ({err}); make it or pass data") from None
    if hasattr(data, "xyz"):
        info["temperature_kelvin"] = getattr(data, "temperature_kelvin", None)
        info["provenance"] = getattr(data, "provenance", None)
        data = data.xyz
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[1:] == (22, 3):
        arr = phi_psi(arr).numpy()
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 10 or not np.isfinite(arr).all():
        raise BoltzflowError(f"need (n, 22, 3) positions or (n, 2) finite angles, n >= 10; got {arr.shape}")
    return arr, info


def train_model(name: str, spec: dict[str, Any], angles: np.ndarray, cfg: TrainConfig, out: Path,
                progress: bool) -> tuple[torch.nn.Module, FitResult]:
    """Build the flow of ``spec`` and fit it by NLL to ``angles`` (n, 2), radians (float32, resumable).

    The one place that trains; swap it for another loop without touching the rest.
    """
    torch.manual_seed(cfg.seed)
    flow = build_flow(spec).to(torch.float32)
    x = torch.as_tensor(angles, dtype=torch.float32)
    result = fit(flow, nll, x, cfg, out / "checkpoints" / f"{name}.pt", extra={"flow_spec": spec},
                 progress=progress, desc=f"train {name}")
    return flow.eval(), result


def wrap_np(a: np.ndarray) -> np.ndarray:
    """Angles (radians) into [-π, π)."""
    return np.mod(a + np.pi, 2 * np.pi) - np.pi


def metrics(ref: np.ndarray, gen: np.ndarray, cfg: AlanineDihedralsConfig, floors: dict[str, Any],
            seed: int) -> dict[str, Any]:
    """W2 (degrees, both costs, each subsample size), histogram KL/TV and basin populations, gen vs ref.

    Args:
        ref: reference angles, shape (n, 2), radians.
        gen: generated angles, shape (m, 2), radians (may leave [-π, π] for a flow on R²).
        cfg: run settings.
        floors: ``{key: W2Stats}`` from :func:`noise_floors`.
        seed: seeds the subsampling.
    """
    wrapped = wrap_np(gen)
    outside = bool(np.any(np.abs(gen) > np.pi))
    row: dict[str, Any] = {f"{tag}{_suffix(n)}": None for n in (1000, 10_000) for tag in W2_TAGS}
    for n, draws in zip(cfg.w2_sizes, cfg.w2_draws, strict=True):
        s = _suffix(n)
        args = (n, draws, seed + n)
        euclid = _w2(ref, gen, "euclidean", *args)
        torus = _w2(ref, wrapped, "torus", *args)
        euclid_wrapped = _w2(ref, wrapped, "euclidean", *args) if outside else euclid
        cases = (("w2_deg", euclid, "euclidean"), ("w2_torus_deg", torus, "torus"),
                 ("w2_deg_wrapped", euclid_wrapped, "euclidean"))
        for tag, stats, metric in cases:
            floor = floors[f"{metric}{s}"]
            row |= {f"{tag}{s}": DEG * stats.mean, f"{tag}_sd{s}": DEG * stats.sd,
                    f"{tag}_floor{s}": DEG * floor.mean, f"{tag}_floor_sd{s}": DEG * floor.sd,
                    f"{tag}_ratio{s}": stats.mean / floor.mean}
    hist = histogram_divergence(ref, wrapped, bins=cfg.hist_bins)
    pops_gen = basin_populations(wrapped)
    return row | {
        "hist_kl": hist.kl, "hist_tv": hist.tv, "hist_bins": hist.bins,
        "populations_gen": pops_gen, "alphaL_gen": pops_gen["alphaL"],
        "fraction_outside_box": float(np.mean(np.any(np.abs(gen) > np.pi, axis=1))),
        "max_abs_angle_deg": float(DEG * np.abs(gen).max()),
    }


def _w2(ref: np.ndarray, gen: np.ndarray, metric: str, n: int, draws: int, seed: int) -> Any:
    return w2_subsampled(ref, gen, n, draws, np.random.default_rng(seed), metric)


def noise_floors(ref: np.ndarray, cfg: AlanineDihedralsConfig, seed: int) -> dict[str, Any]:
    """Reference-vs-reference W2 (radians) for every size and cost, computed once and shared by the models."""
    floors = {}
    for n, draws in zip(cfg.w2_sizes, cfg.w2_draws, strict=True):
        if len(ref) < 2 * n:
            raise BoltzflowError(f"W2 at n={n} needs {2 * n} reference frames, got {len(ref)}; lower n")
        for metric in ("euclidean", "torus"):  # the same subsets for both costs
            rng = np.random.default_rng(seed + n)
            floors[f"{metric}{_suffix(n)}"] = w2_noise_floor(ref, n, draws, rng, metric)
    return floors


def _suffix(n: int) -> str:
    """Key suffix of a W2 subsample size: "" for 1,000 points, "_10k" for 10,000, "_n<n>" otherwise."""
    return "" if n == 1000 else f"_{n // 1000}k" if n % 1000 == 0 else f"_n{n}"


def run(out_dir: str | Path, scale: str = "quick", seed: int = 0, data: Any = None, progress: bool = True,
        force: bool = False, command: list[str] | None = None,
        cfg: AlanineDihedralsConfig | None = None) -> dict[str, Any]:
    """Train both models, evaluate them and write results.json, table.md, figures/ and samples/.

    Args:
        out_dir: output folder (an unfinished run there is resumed from its checkpoints).
        scale: "quick" or "full" defaults (ignored when ``cfg`` is given).
        seed: seeds subsampling, initialisation, training and sampling.
        data: see :func:`load_angles`.
        progress: show progress bars.
        force: allow overwriting a finished run.
        command: the command line, for provenance.
        cfg: explicit settings instead of ``config(scale)``.
    """
    started = time.time()
    cfg = cfg or config(scale)
    angles, info = load_angles(data)
    n_total = len(angles)
    if cfg.n_frames is not None and cfg.n_frames < n_total:
        angles = angles[np.sort(np.random.default_rng(seed).choice(n_total, cfg.n_frames, replace=False))]
    out = prepare_out_dir(out_dir, force)
    floors = noise_floors(angles, cfg, seed + 1)
    pops_real = basin_populations(angles)
    loc, std = (angles.mean(0), angles.std(0)) if cfg.standardise else (None, None)
    specs = {
        "realnvp": realnvp_spec(cfg.realnvp, loc, std),
        "circular_spline": {"kind": "circular_spline", "config": dataclasses.asdict(cfg.spline), "loc": None,
                            "scale": None},
    }
    train_cfgs = {"realnvp": cfg.train_realnvp, "circular_spline": cfg.train_spline}
    models, gens = [], {}
    for i, (name, spec) in enumerate(specs.items()):
        train_cfg = dataclasses.replace(train_cfgs[name], seed=seed + i)
        flow, fit_result = train_model(name, spec, angles, train_cfg, out, progress)
        with torch.no_grad():
            gen = flow.sample(cfg.n_gen or len(angles), torch.Generator().manual_seed(seed + 100 + i)).x
        gens[name] = gen.double().numpy()
        save_npz(out / "samples" / f"{name}.npz", phi_psi=gens[name].astype(np.float32))
        row = {"model": name, "n_params": n_parameters(flow), "val_nll": fit_result.best_val,
               "best_epoch": fit_result.best_epoch, "train_seconds": fit_result.train_seconds,
               "populations_real": pops_real, "alphaL_real": pops_real["alphaL"]}
        models.append(row | metrics(angles, gens[name], cfg, floors, seed + 200 + i))
    from boltzflow import plots

    fig = plots.ramachandran(wrap_np(angles), {k: wrap_np(v) for k, v in gens.items()})
    plots.save(fig, out / "figures" / "fig3_ramachandran.png")
    results = {
        "models": models,
        "data": {"n_frames": len(angles), "n_frames_total": n_total, "populations": pops_real, **info},
        "paper": {"w2_deg": PAPER_W2_DEG, "n_params_realnvp": 2316},
        "config": {"scale": scale, "seed": seed, **dataclasses.asdict(cfg)},
        "provenance": provenance(command, started),
    }
    save_text(out / "table.md", table_markdown(results))
    save_json(out / "results.json", results)
    return results


def table_markdown(results: dict[str, Any]) -> str:
    """Our numbers beside the paper's 9.21° (W2 ± sd over draws, [noise floor])."""
    sizes = [_suffix(n) for n in results["config"]["w2_sizes"]]
    head = ["model", "params"]
    for n in results["config"]["w2_sizes"]:
        head += [f"W2 Euclid. n={n} (°) [floor]", f"W2 Euclid. wrapped n={n} (°)",
                 f"W2 torus n={n} (°) [floor]"]
    head += ["hist KL", "hist TV", "val NLL", "αL gen / data", "outside box", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in results["models"]:
        cells = [m["model"], str(m["n_params"])]
        for s in sizes:
            for tag in ("w2_deg", "w2_deg_wrapped", "w2_torus_deg"):
                floor = "" if tag == "w2_deg_wrapped" else f" [{fmt(m[tag + '_floor' + s])}]"
                cells.append(f"{fmt(m[tag + s])} ± {fmt(m[tag + '_sd' + s])}{floor}")
        cells += [fmt(m["hist_kl"]), fmt(m["hist_tv"]), fmt(m["val_nll"]),
                  f"{m['alphaL_gen']:.4f} / {m['alphaL_real']:.4f}", f"{m['fraction_outside_box']:.4f}",
                  fmt(m["train_seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    paper = ["paper 001 (RealNVP)", "2316"] + ["–"] * (len(head) - 2)
    if list(results["config"]["w2_sizes"])[:1] == [1000]:
        paper[2] = f"{PAPER_W2_DEG}"
    lines.append("| " + " | ".join(paper) + " |")
    d = results["data"]
    foot = (f"\n{d['n_frames']} reference frames (of {d['n_frames_total']}). W2: mean ± sd over independent "
            "subsample draws; [floor] = the same W2 between two disjoint reference subsets; 'wrapped': "
            "model samples wrapped into [-180°, 180°) first. Histograms: "
            f"{results['models'][0]['hist_bins']}² bins on [-180°, 180°)², KL(data ‖ model).\n")
    return "# Alanine dipeptide (φ, ψ), paper 001 §6.2\n\n" + "\n".join(lines) + "\n" + foot
