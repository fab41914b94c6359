"""Paper 001 §6.3: alanine dipeptide in Cartesian coordinates (66 numbers), Table 2 and Figure 4, plus remedies.

Trained models (same RealNVP and optimiser): ``nll`` (NLL only), ``penalty`` (eq. (17), λ = 5, ε = 0.17 nm, the
hinge averaged over the 174 pairs), ``penalty_sum`` (the same hinge summed over the pairs: the other reading of
eq. (17)), ``anneal`` (eq. (17) with λ falling linearly to 0 halfway through training) and ``smooth`` (softplus
hinge of width 0.01 nm, small λ). ``nll_reject`` post-processes the NLL model: samples with r_min below a
threshold the data never reach are dropped and new ones drawn. Every row is scored on the same number of
configurations; the ``data`` row uses that many random MD frames.

Training, sampling and AMBER energies run on ``device`` (cpu, cuda, cuda:N); W2 runs on the CPU. With a
deadline, training stops at the first epoch boundary after it and the table says how many epochs each model
reached; ``train_only`` trains and writes checkpoints without scoring, so the models of one run can be trained
as parallel processes and scored afterwards by one more call (``deadline_minutes=0`` scores what they reached).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.experiments import cartesian_training as T
from boltzflow.experiments.cartesian_config import CartesianScale, Config
from boltzflow.experiments.cartesian_report import score, table2_markdown
from boltzflow.experiments.common import provenance
from boltzflow.experiments.runner import prepare_out_dir
from boltzflow.flows.realnvp import n_parameters
from boltzflow.io import atomic_path, save_json, save_npz, save_text
from boltzflow.systems import alanine_cartesian as ac
from boltzflow.systems.registry import get_system

TRAINED = T.TRAINED
ANY_DEVICE = True  # --device cuda: training, sampling and AMBER energies run there
__all__ = ["CartesianScale", "Config", "TRAINED", "run", "table2_markdown"]


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | torch.device | None = None,
        recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the models, score them and the data, write results.json, table2.md, recipe.toml, figures and samples.

    Args:
        out: output folder (an unfinished run there is resumed from DIR/checkpoints/).
        config: the recipe.
        seed: seeds the subsets, the models and the sampling.
        progress: show progress bars.
        force: allow writing into a folder holding a finished run.
        command: the command line, for provenance.
        device: "cpu" (default), "cuda" or "cuda:N": where training, sampling and energies run.
        recipe: ``{name, scale, source, toml}`` of the recipe.

    Returns:
        the results; with ``config.train_only`` ``{"trained": {model: info}, "message": ...}``.
    """
    started = time.time()
    deadline = None
    if config.deadline_minutes is not None:
        deadline = time.monotonic() + 60.0 * config.deadline_minutes
    dev = T.resolve_device(device)
    system = get_system(config.system)
    sc = config.sizes(system.dim)
    dataset = config.data.path
    torch_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        if config.train_only:
            got = _train_only(out, sc, seed, progress, force, dataset, dev, deadline)
            reached = [f"{m}: {0 if i is None else i['epochs_trained']}" for m, i in got["trained"].items()]
            return {**got, "message": f"epochs trained ({', '.join(reached)}) in {out}/checkpoints"}
        label = (recipe or {}).get("scale") or "custom"
        runtime = {"device": str(dev), "device_name": T.device_name(dev), "deadline_minutes": config.deadline_minutes}
        return _run(out, label, sc, seed, progress, force, command, dataset, started, dev, deadline, runtime, recipe,
                    system)
    finally:
        torch.set_default_dtype(torch_dtype)


def _check_models(sc: CartesianScale) -> None:
    unknown = set(sc.models) - set(TRAINED)
    if unknown:
        raise BoltzflowError(f"unknown models {sorted(unknown)}; choose from {TRAINED}")


def _prepare(dataset, sc: CartesianScale, seed: int):
    """Frames, aligned frames, flattened frames, standardiser and source of the run."""
    frames, source = _load_frames(dataset, sc.n_frames, seed)
    aligned = ac.align_to_mean(frames)
    x = aligned.xyz.reshape(len(frames), -1)
    return frames, aligned, x, ac.fit_standardizer(x), source


def _train_only(out, sc, seed, progress, force, dataset, dev, deadline) -> dict[str, Any]:
    _check_models(sc)
    _, _, x, st, _ = _prepare(dataset, sc, seed)
    out = prepare_out_dir(out, force)
    pairs = ac.nonbonded_pairs()
    trained = {}
    for name in sc.models:
        got = T.train_model(out, name, x, st, pairs, sc, seed + TRAINED.index(name), progress, dev, deadline)
        trained[name] = None if got is None else got[1]
    return {"trained": trained}


def _run(out, scale_name, sc, seed, progress, force, command, dataset, started, dev, deadline, runtime, recipe, system):
    _check_models(sc)
    frames, aligned, x, st, source = _prepare(dataset, sc, seed)
    out = prepare_out_dir(out, force)
    pairs = ac.nonbonded_pairs()
    pca = ac.fit_pca(ac.standardize(x, st), 2)
    ref_proj = ac.pca_project(ac.standardize(x, st), pca)
    rng = np.random.default_rng(seed)
    data_idx = rng.choice(len(x), size=min(sc.n_gen, len(x)), replace=False)
    ctx = {"pairs": pairs, "st": st, "pca": pca, "ref_proj": ref_proj, "energy": system.energy(), "sc": sc,
           "seed": seed, "device": dev, "system": system, "reference_xyz": aligned.xyz[data_idx]}
    data_row = score("data", aligned.xyz[data_idx], ctx, data_max=None)
    data_row.update(pca_w2=0.0, pca_w2_sd=0.0, n_params=None)
    data_max = data_row["energy_max"]
    rows, samples, not_trained = [data_row], {"data": aligned.xyz[data_idx]}, []
    for name in sc.models:
        k = TRAINED.index(name)  # a model's seed does not depend on which others run
        got = T.train_model(out, name, x, st, pairs, sc, seed + k, progress, dev, deadline)
        if got is None:
            not_trained.append(name)
            continue
        flow, fit_info = got
        xyz = T.sample(flow, sc.n_gen, seed + 100 + k)
        samples[name] = xyz
        rows.append({**score(name, xyz, ctx, data_max), "n_params": n_parameters(flow), **fit_info})
        if name == "nll":
            xyz_r, acc = T.sample_rejected(flow, sc.n_gen, pairs, sc.reject_r_min_nm, seed + 200, xyz)
            samples["nll_reject"] = xyz_r
            data_below = float((data_row["r_min_values"] < sc.reject_r_min_nm).mean())
            rows.append(
                {
                    **score("nll_reject", xyz_r, ctx, data_max),
                    "n_params": n_parameters(flow),
                    "acceptance": acc,
                    "reject_r_min_nm": sc.reject_r_min_nm,
                    "data_frac_below": data_below,
                    **{k: fit_info[k] for k in ("epochs_trained", "stopped_at_deadline")},
                }
            )
    xtc = [_save_samples(out, name, xyz) for name, xyz in samples.items() if name != "data"]
    _figures(out, rows, sc)
    for row in rows:
        row.pop("r_min_values"), row.pop("pca_proj")
        row.update({k: None for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)})
    results = {
        "models": rows,
        "not_trained": not_trained,
        "data": {
            "source": source,
            "n_frames": len(frames),
            "alignment": "iterative Kabsch to the mean structure (5 rounds from the shipped PDB)",
            "n_pairs": len(pairs),
            "reference_nm": aligned.reference,
            "pca_explained_variance": pca.explained_variance,
            "pca_space": "standardised coordinates",
        },
        "config": {"recipe": (recipe or {}).get("name"), "scale": scale_name, "seed": seed, **dataclasses.asdict(sc),
                   **runtime},
        "samples_xtc": all(xtc),
        "provenance": provenance(command, started),
    }
    save_text(out / "table2.md", table2_markdown(results))
    if (recipe or {}).get("toml"):
        save_text(out / "recipe.toml", recipe["toml"])
    save_json(out / "results.json", results)
    return results


def _load_frames(dataset: str | Path | None, n_frames: int | None, seed: int) -> tuple[np.ndarray, str]:
    from boltzflow.samplers import dataset as ds

    try:
        if dataset is None:
            data, source = ds.load_alanine_dataset(), str(ds.alanine_dataset_path())
        else:
            path = Path(dataset)
            data = ds.load_simulation(path) if path.is_dir() else ds.load_dataset(path)
            source = str(path)
    except FileNotFoundError as err:
        raise BoltzflowError(f"{err}; pass dataset=<simulate run folder or .npz>") from None
    xyz = np.asarray(data.xyz, dtype=np.float64)
    if xyz.shape[1:] != (ac.N_ATOMS, 3):
        raise BoltzflowError(f"dataset frames have shape {xyz.shape[1:]}, expected ({ac.N_ATOMS}, 3) alanine dipeptide")
    if n_frames is not None and n_frames < len(xyz):
        xyz = xyz[np.sort(np.random.default_rng(seed).choice(len(xyz), n_frames, replace=False))]
    return xyz, source


def _save_samples(out: Path, name: str, xyz: np.ndarray) -> bool:
    """Write samples/<name>.npz and, where mdtraj is installed, samples/<name>.xtc; True if the xtc was written."""
    from boltzflow.energies.openmm_system import alanine_dipeptide_pdb

    xyz32 = xyz.astype(np.float32)
    save_npz(out / "samples" / f"{name}.npz", xyz=xyz32)
    try:
        import mdtraj
    except ImportError:  # e.g. on a GPU machine that carries only what training needs
        return False
    top = mdtraj.load_topology(str(alanine_dipeptide_pdb()))
    with atomic_path(out / "samples" / f"{name}.xtc") as tmp:
        mdtraj.Trajectory(xyz32[np.isfinite(xyz32).all(axis=(1, 2))], top).save_xtc(
            str(tmp), force_overwrite=True
        )
    return True


def _figures(out: Path, rows: list[dict[str, Any]], sc: CartesianScale) -> None:
    from boltzflow import plots

    fig = plots.min_r_histograms({r["model"]: r["r_min_values"] for r in rows}, sc.eps_nm)
    plots.save(fig, out / "figures" / "fig4_min_r.png")
    plots.save(
        plots.pca_panels({r["model"]: r["pca_proj"] for r in rows}),
        out / "figures" / "fig4_pca.png",
    )
