"""Metrics and the table of the dihedral reproduction (paper 001 §6.2): W2 with floors, histograms, basins.

W2 in degrees with its noise floor (two disjoint reference subsets of the same size), with the Euclidean cost on
raw angles and the torus cost, KL(ref ‖ gen) and TV of (φ, ψ) histograms, basin populations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.eval.evaluate import Draw, evaluate
from boltzflow.eval.histograms import histogram_divergence
from boltzflow.eval.wasserstein import w2_noise_floor, w2_subsampled
from boltzflow.experiments.common import fmt
from boltzflow.systems.alanine import BASINS, basin_labels, basin_populations
from boltzflow.systems.base import Observable

PAPER_W2_DEG = 9.21  # paper 001 §6.2, Euclidean W2 on 1,000-point subsamples (RealNVP)
DEG = 180.0 / math.pi
W2_TAGS = [f"{base}{part}" for base in ("w2_deg", "w2_torus_deg", "w2_deg_wrapped")
           for part in ("", "_sd", "_floor", "_floor_sd", "_ratio")]


def wrap_np(a: np.ndarray) -> np.ndarray:
    """Angles (radians) into [-π, π)."""
    return np.mod(a + np.pi, 2 * np.pi) - np.pi


class AngleMarginal:
    """The (φ, ψ) marginal as :func:`~boltzflow.eval.evaluate.evaluate` sees a system: configurations are angle
    pairs, shape (n, 2), radians. It has no energy (the flows learn the MD marginal), so samples carry no weights."""

    log_z = None

    def observables(self) -> dict[str, Observable]:
        wrap = lambda x: torch.remainder(x + math.pi, 2 * math.pi) - math.pi  # noqa: E731
        return {"phi_psi": Observable("phi_psi", "rad", lambda x: wrap(x)[:, None, :])}


def plain_evaluation(ref: np.ndarray, gen: np.ndarray, n_draws: int = 4) -> dict[str, Any]:
    """The standard metric set of generated angles without weights: Ramachandran TV (100 × 100 bins) against
    ``ref`` (n, 2) rad and basin populations with bootstrap CI and their sd over ``n_draws`` parts of ``gen``."""
    g = torch.as_tensor(wrap_np(gen), dtype=torch.float64)
    draws = [Draw(part, None) for part in g.tensor_split(n_draws)]
    return evaluate(AngleMarginal(), draws, reference_x=torch.as_tensor(ref, dtype=torch.float64),
                    states=(lambda x: basin_labels(x.numpy()), list(BASINS)))


def metrics(ref: np.ndarray, gen: np.ndarray, cfg: Any, floors: dict[str, Any],
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


def noise_floors(ref: np.ndarray, cfg: Any, seed: int) -> dict[str, Any]:
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


def table_markdown(results: dict[str, Any]) -> str:
    """Our numbers beside the paper's 9.21° (W2 ± sd over draws, [noise floor])."""
    ev = results["config"]["evaluation"]
    sizes = [_suffix(n) for n in ev["w2_sizes"]]
    head = ["model", "params"]
    for n in ev["w2_sizes"]:
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
    if list(ev["w2_sizes"])[:1] == [1000]:
        paper[2] = f"{PAPER_W2_DEG}"
    lines.append("| " + " | ".join(paper) + " |")
    d = results["data"]
    foot = (f"\n{d['n_frames']} reference frames (of {d['n_frames_total']}). W2: mean ± sd over independent "
            "subsample draws; [floor] = the same W2 between two disjoint reference subsets; 'wrapped': "
            "model samples wrapped into [-180°, 180°) first. Histograms: "
            f"{results['models'][0]['hist_bins']}² bins on [-180°, 180°)², KL(data ‖ model).\n")
    return "# Alanine dipeptide (φ, ψ), paper 001 §6.2\n\n" + "\n".join(lines) + "\n" + foot
