"""The pieces of the ``cmt`` runner around the training: the flow, the reference samples, and the report.

* :func:`build_flow_for`: the one initial flow every method starts from. RealNVP on the flat coordinates of a model
  system, with the system's fixed de-standardisation (:func:`~boltzflow.experiments.baselines.prior_affine`, no
  samples); for molecules the internal-coordinate spline flow whose statistics are taken from the PDB structure
  and the energy alone, so no MD frame enters training: ``flow.prior = "scan"`` scans each internal coordinate
  with the others held (:func:`boltzflow.systems.scan_prior.scan_statistics`), ``"pdb"`` centres bonds and angles
  on the structure with the recipe's spreads and makes every torsion uniform (TA-BG's prior).
* :func:`reference_samples`: exact samples (model systems) or evenly spaced frames of a trajectory reference
  (molecules), for EUBO, NLL and Ramachandran TV only.
* :func:`training_samples`: what the data-trained baseline md-nll fits, never an evaluation sample: the frames of
  the trajectory reference that :func:`reference_split` did not pick for evaluation (the two sets interleave in
  time, so neighbouring frames are correlated: a held-out NLL is somewhat optimistic), or ``md_nll.n_train`` fresh
  exact samples from a generator seeded apart from the evaluation's.
* :func:`method_summary` and :func:`write_report`: one row per method in the format of paper 002 Table 1 (method,
  target evaluations, EUBO, ESS mean ± sd over draws, Ramachandran TV) plus log Z error, mode coverage and the
  largest per-mode weight error (GMM-40), energy distance against its floor (model systems with an exact sampler)
  and the αL population and ΔF with 95 % CI against the umbrella reference (alanine); the ESS-vs-evaluations and
  learned-schedule figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.eval.modes import mode_coverage
from boltzflow.experiments.baselines import prior_affine
from boltzflow.experiments.cmt_config import CMTEvaluation, CMTFlow, Config
from boltzflow.experiments.runner import seeded
from boltzflow.flows.flow import Flow
from boltzflow.flows.realnvp import RealNVPConfig, n_parameters
from boltzflow.flows.spec import build_flow, realnvp_spec, vector_spec
from boltzflow.flows.spline_coupling import SplineFlowConfig
from boltzflow.io import save_text
from boltzflow.plots import save
from boltzflow.plots_cmt import ess_vs_evaluations, learned_schedule

LABELS = {"cmt": "CMT", "reverse-kl": "reverse KL", "ta-bg": "TA-BG", "md-nll": "MD NLL"}
EXACT_EVAL_SEED, EXACT_TRAIN_SEED = 3_000_000, 4_000_000  # offsets to --seed of the exact samplers' generators


def build_flow_for(system: Any, f: CMTFlow, seed: int) -> tuple[Flow, dict[str, Any]]:
    """The seeded initial flow (float32) and its JSON spec (module docstring)."""
    if f.kind == "realnvp":
        loc, scale = prior_affine(system)
        spec = realnvp_spec(RealNVPConfig(dim=system.dim, n_layers=f.n_layers, hidden=list(f.hidden)), loc, scale)
        return seeded(lambda: build_flow(spec).float(), seed), spec
    if f.kind == "spline":
        loc, scale = prior_affine(system)
        cfg = SplineFlowConfig(dim=system.dim, n_layers=f.n_layers, hidden=list(f.hidden), bins=f.bins)
        spec = vector_spec("spline", cfg, loc, scale)
        return seeded(lambda: build_flow(spec).float(), seed), spec
    from boltzflow.flows.ic_flow import ICStats, ic_spline_flow, ic_spline_spec
    from boltzflow.flows.internal import InternalCoordinates
    from boltzflow.systems.scan_prior import scan_statistics

    if system.zmatrix() is None:
        raise ValueError(f"flow.kind = ic_spline needs a molecule; {system.name} has no Z-matrix")
    ic = InternalCoordinates(system.zmatrix())
    x_ref = torch.as_tensor(system.positions(), dtype=torch.float64).flatten()
    extra: dict[str, Any] = {"statistics": "PDB structure (data-free)"}
    if f.prior == "scan":
        wide = [a for _, phi, psi in system.backbone_dihedrals() for a in (phi, psi)] if f.wide_backbone else []
        scan = scan_statistics(ic.double(), system.flat_energy(), x_ref, f.scan_temperature_factor, f.wide_spread,
                               wide)
        stats = scan.stats
        extra = {"statistics": "energy scans of the PDB structure (data-free)", "scan": scan.summary()}
    else:
        q0 = ic.inverse(x_ref[None])[0][0]
        scale = torch.ones_like(q0)
        scale[ic.bond_idx], scale[ic.angle_idx] = f.bond_std, f.angle_std
        stats = ICStats(q0, scale)
    spec = ic_spline_spec(ic.zmatrix, stats, f.n_layers, f.bins, f.hidden, molecule=system.name,
                          x_layout=f"flattened {tuple(system.event_shape)} positions, nm", **extra)
    return seeded(lambda: ic_spline_flow(ic.zmatrix, stats, f.n_layers, f.bins, f.hidden).float(), seed), spec


def reference_split(n_frames: int, n_reference: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the evaluation frames (``n_reference`` evenly spaced, or all) and of the rest, in order."""
    picked = np.unique(np.linspace(0, n_frames - 1, min(n_reference, n_frames)).round().astype(int))
    return picked, np.setdiff1d(np.arange(n_frames), picked)


def _trajectory(system: Any, ev: CMTEvaluation) -> torch.Tensor:
    refs = system.references()
    if ev.reference not in refs:
        raise ValueError(f"evaluation.reference {ev.reference!r}: {system.name} has {', '.join(refs)}")
    return torch.as_tensor(np.asarray(refs[ev.reference].load(), dtype=np.float64))


def reference_samples(system: Any, ev: CMTEvaluation, seed: int) -> torch.Tensor | None:
    """Reference configurations, flattened (m, dim), float64, or None when the system has no such reference."""
    if ev.reference == "exact":
        if not system.has_exact_sampler:
            return None
        x = system.sample_exact(ev.n_reference, torch.Generator().manual_seed(seed + EXACT_EVAL_SEED))
    else:
        x = _trajectory(system, ev)
        x = x[reference_split(len(x), ev.n_reference)[0]]
    return x.reshape(len(x), system.dim).double()


def training_samples(system: Any, cfg: Config, seed: int) -> tuple[torch.Tensor, str]:
    """md-nll's training samples, flattened (n, dim), float64, and a description (module docstring).

    Raises:
        ValueError: no exact sampler for reference "exact", or no frame left after the evaluation's.
    """
    ev = cfg.evaluation
    if ev.reference == "exact":
        if not system.has_exact_sampler:
            raise ValueError(f"md-nll: {system.name} has no exact sampler; set evaluation.reference to a trajectory")
        n = cfg.md_nll.n_train
        x = system.sample_exact(n, torch.Generator().manual_seed(seed + EXACT_TRAIN_SEED))
        return x.reshape(n, system.dim).double(), f"{n} exact samples, generator seed {seed + EXACT_TRAIN_SEED}"
    x = _trajectory(system, ev)
    picked, rest = reference_split(len(x), ev.n_reference)
    if len(rest) == 0:
        raise ValueError(f"md-nll has no training frames: evaluation.n_reference = {ev.n_reference} takes all "
                         f"{len(x)} frames of reference {ev.reference!r}; lower it")
    desc = (f"{len(rest)} of {len(x)} frames of reference {ev.reference!r}, those not among the {len(picked)} "
            "evenly spaced evaluation frames")
    return x[rest].reshape(len(rest), system.dim).double(), desc


def _mode_errors(system: Any, draws: list[Any]) -> dict[str, Any]:
    """Per draw: modes covered and max relative weight error |w_k / ref_k - 1| (reweighted), for GMM-40."""
    ref = system.mode_reference()
    covered, rel, rel40 = [], [], []
    for d in draws:
        cov = mode_coverage(system.mode_of(d.x.reshape(len(d.x), *system.event_shape)), ref, d.log_w)
        covered.append(cov.n_covered)
        rel.append(float((cov.weights / cov.reference - 1).abs().max()))
        rel40.append(float((cov.weights * len(ref) - 1).abs().max()))
    return {"n_modes": len(ref), "covered": covered, "max_rel_error_vs_cell": rel, "max_rel_error_vs_uniform": rel40}


def method_summary(system: Any, name: str, trained: dict[str, Any], metrics: dict[str, Any], draws: list[Any],
                   cfg: Config) -> dict[str, Any]:
    """The numbers of one method for results.json and the table."""
    out = {"method": name, "evals": trained["evals"], "n_params": n_parameters(trained["flow"]),
           "timing": trained["timing"], "history": trained["history"], "evaluation": metrics}
    if "training_data" in trained:
        out["training_data"] = trained["training_data"]
    if "scan" in trained["spec"].get("info", {}):
        out["prior_scan"] = trained["spec"]["info"]["scan"]
    if hasattr(system, "mode_reference"):
        out["modes_per_draw"] = _mode_errors(system, draws)
    if "populations" in metrics and "alphaL" in metrics["populations"]:
        refs = system.references()
        umb = dict(refs[cfg.evaluation.umbrella].load()) if cfg.evaluation.umbrella in refs else {}
        out["alpha_l"] = {"population": metrics["populations"]["alphaL"], "delta_f_kt": metrics["delta_f_kt"]["alphaL"],
                          "umbrella": cfg.evaluation.umbrella if umb else None,
                          "umbrella_population": umb.get("alpha_l_population"),
                          "umbrella_population_err": umb.get("alpha_l_population_err")}
    return out


def _pm(v: dict[str, Any], scale: float = 1.0, fmt: str = ".2f") -> str:
    return f"{scale * v['mean']:{fmt}} ± {scale * v['sd']:{fmt}}"


def _row(system: Any, s: dict[str, Any]) -> list[str]:
    ev = s["evaluation"]
    eubo = f"{ev['eubo']:.3f}" if "eubo" in ev else "–"
    row = [LABELS[s["method"]], f"{s['evals']:.3g}", eubo, _pm(ev["ess_fraction"], 100),
           _pm(ev["ess_fraction_clipped"], 100)]
    if "ramachandran_tv" in ev:
        row.append(f"{ev['ramachandran_tv']:.3e}")
    if "log_z" in ev:
        row.append(f"{ev['log_z']['error']:+.3f} ± {ev['log_z']['estimate']['sd']:.3f}")
    if "modes_per_draw" in s:
        m = s["modes_per_draw"]
        row += [f"{min(m['covered'])}–{max(m['covered'])} of {m['n_modes']}",
                f"{100 * max(m['max_rel_error_vs_cell']):.1f} % ({100 * max(m['max_rel_error_vs_uniform']):.1f} %)"]
    ed = ev.get("model_system", {}).get("energy_distance")
    if ed:
        row.append(f"{ed['energy_distance']:.3g} / {ed['energy_distance_floor']:.3g}")
    if "alpha_l" in s:
        a = s["alpha_l"]
        p, f = a["population"], a["delta_f_kt"]
        ref = a["umbrella_population"]
        row += [f"{100 * p['mean']:.2f} [{100 * p['lo']:.2f}, {100 * p['hi']:.2f}]",
                f"{f['mean']:.2f} [{f['lo']:.2f}, {f['hi']:.2f}]",
                "–" if ref is None else f"{100 * ref:.2f} ± {100 * (a['umbrella_population_err'] or 0):.2f}"]
    return row


def table(system: Any, summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown table, one row per method (module docstring)."""
    first = next(iter(summaries.values()))
    ev = first["evaluation"]
    head = ["method", "target evals", "EUBO (nats)", "ESS % (mean ± sd over draws)", "ESS % clipped 1e-4"]
    head += ["Ram TV"] if "ramachandran_tv" in ev else []
    head += [f"log Z error (exact {ev['log_z']['exact']:.3f})"] if "log_z" in ev else []
    head += ["modes covered (per draw)", "max mode-weight error vs cell (vs 1/40)"] if "modes_per_draw" in first else []
    head += ["energy distance / floor (reweighted)"] if ev.get("model_system", {}).get("energy_distance") else []
    head += ["αL % [95 % CI]", "ΔF αL (kT) [95 % CI]", "αL % umbrella"] if "alpha_l" in first else []
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(_row(system, s)) + " |" for s in summaries.values()]
    n = ev["n_draws"]
    notes = [f"{LABELS[k]}: 0 training energy evaluations; trained on {s['training_data']['source']}."
             for k, s in summaries.items() if "training_data" in s]
    scans = {s["prior_scan"]["n_evaluations"] for s in summaries.values() if "prior_scan" in s}
    notes += [f"Initial flow (every method's) from energy scans of the PDB structure: {count} energy evaluations, "
              "spent once, not in 'target evals'." for count in sorted(scans)]
    return "\n".join(lines) + f"\n\n{system.name}; {n} draws of {ev['n_per_draw']} flow samples per method.\n" + \
        "".join(f"{note}\n" for note in notes)


def write_report(out: Path, system: Any, cfg: Config, summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """table.md and the figures under ``out``; returns the results dict (without config and provenance)."""
    curves = {}
    for name, s in summaries.items():  # md-nll spends no evaluation: no point on this axis (its curve: history)
        pts = [(r["evals"], r["eval_ess_fraction"]) for r in s["history"] if "eval_ess_fraction" in r and r["evals"]]
        if not pts:
            continue
        curves[LABELS[name]] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    if curves:
        save(ess_vs_evaluations(curves, title=f"{system.name}: ESS of {cfg.evaluation.curve_samples} fresh samples"),
             out / "figures" / "ess_vs_evaluations.png")
    if "cmt" in summaries:
        save(learned_schedule(summaries["cmt"]["history"], system.temperature_kelvin, title=f"{system.name}: CMT"),
             out / "figures" / "learned_schedule.png")
    text = table(system, summaries)
    save_text(out / "table.md", text)
    best = {n: s["evaluation"]["ess_fraction"]["mean"] for n, s in summaries.items()}
    return {"system": system.name, "budget": cfg.budget, "table": text, "ess_fraction": best,
            "methods": summaries, "finite": all(math.isfinite(v) for v in best.values())}
