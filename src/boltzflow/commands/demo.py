"""The headline in one command: equilibrium alanine-dipeptide samples from the shipped Boltzmann generator.

Stages (each prints a line; the long ones show a progress bar):

1. load the shipped model ``alanine-dipeptide-bg`` and the references of ``alanine-dipeptide``: the 60,000-frame
   OBC MD dataset and the umbrella-sampling/MBAR F(φ);
2. draw ``--draws`` independent sets of ``-n`` samples with their AMBER energies and importance weights, by the
   same code as ``boltzflow sample`` (draw k uses seed ``--seed + k``; draw 0 is saved as ``samples.npz``, the
   same arrays as ``boltzflow sample alanine-dipeptide-bg -n N --seed S`` writes), timing the first draw;
3. evaluate them with :func:`boltzflow.eval.evaluate.evaluate`: ESS as mean ± sd over the draws, reweighted basin
   populations, the NLL of the MD test split (the last 10 % of every replica, the frames that
   ``reproduce alanine-bg``, which made the shipped model, holds out) and the Ramachandran TV against it;
4. draw the reweighted F(φ) (±1 sd over the draws) beside the umbrella reference and the MD frames, and the
   (φ, ψ) free-energy map of the reweighted samples beside the MD one.

Writes ``OUT/samples.npz``, ``OUT/results.json``, ``OUT/figures/free_energy_phi.png`` and
``OUT/figures/ramachandran.png`` (atomically, after every stage succeeded) and ends with a summary naming them.
Every number printed is computed in this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from boltzflow.runtime import add_device_argument

HELP = "sample the shipped alanine-dipeptide BG, report its ESS and plot F(phi) and Ramachandran vs reference"
MODEL = "alanine-dipeptide-bg"
TEST_FRACTION = 0.1  # the last 10 % of every MD replica: the test split `reproduce alanine-bg` holds out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo/alanine-bg", help="output folder (default runs/demo/alanine-bg)")
    p.add_argument("-n", type=int, default=10_000, help="samples per draw (default 10000)")
    p.add_argument("--draws", type=int, default=4, help="independent draws for ESS mean ± sd (default 4, >= 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first draw, >= 0 (default 0)")
    p.add_argument("--batch-size", type=int, default=2500, help="samples per forward pass (default 2500)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_argument(p, "torch", "sampling, the AMBER energies and log q of the MD frames")


_START = [0.0]


def _stage(text: str) -> None:
    """A stage line, prefixed by the seconds since the command started."""
    print(f"[{time.perf_counter() - _START[0]:5.1f} s] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    from boltzflow.commands.sample import check_counts
    from boltzflow.io import check_output_dir

    check_counts(n=(args.n, 1), draws=(args.draws, 2), seed=(args.seed, 0), batch_size=(args.batch_size, 1))
    out = check_output_dir(args.out)
    for name in ("samples.npz", "results.json", "figures/free_energy_phi.png", "figures/ramachandran.png"):
        check_output_dir((out / name).parent)
        if (out / name).is_dir():
            raise ValueError(f"--out {out}: {out / name} is a folder; move it away")
    t0 = _START[0] = time.perf_counter()
    _stage(f"[1/4] loading the shipped model {MODEL} and the alanine-dipeptide references (MD frames, umbrella)")
    flow, system, (md_xyz, test), umbrella = _load()
    _stage(f"[2/4] sampling {args.draws} draws x {args.n:,} samples with AMBER energies and importance weights")
    draws, arrays0, seconds = _sample(flow, system, args)
    _stage(f"      {args.n:,} equilibrium samples in {seconds:.1f} s (draw 1; `boltzflow sample {MODEL} "
           f"-n {args.n} --seed {args.seed}` does the same)")
    _stage(f"[3/4] evaluating: ESS over {args.draws} draws, basin populations, NLL and Ramachandran TV vs "
           "held-out MD frames")
    results = _evaluate(flow, system, draws, md_xyz, test, umbrella, args)
    _stage("[4/4] figures: reweighted F(phi) vs umbrella + MD, (phi, psi) free energy vs MD")
    figures = _figures(draws, md_xyz, umbrella, system.temperature_kelvin)
    _write(out, arrays0, results, figures)
    _stage(f"wrote {out}")
    results["wall_time_s"] = time.perf_counter() - t0
    _summary(out, results, figures)
    return 0


def _load() -> tuple[Any, Any, Any, dict]:
    import numpy as np

    from boltzflow.commands.sample import load_system
    from boltzflow.training.checkpoint import load_flow

    flow, ckpt = load_flow(MODEL)
    system = load_system(ckpt, MODEL)
    from boltzflow.samplers.dataset import load_alanine_dataset

    data = load_alanine_dataset()  # = system.references()["md"], with the replica of every frame
    md_xyz = np.asarray(data.xyz, dtype=np.float64)
    test = np.concatenate([idx[len(idx) - round(TEST_FRACTION * len(idx)):]
                           for idx in (np.flatnonzero(data.replica == r) for r in np.unique(data.replica))])
    return flow, system, (md_xyz, test), system.references()["umbrella"].load()


def _sample(flow: Any, system: Any, args: argparse.Namespace) -> tuple[list, dict, float]:
    import torch
    from tqdm.auto import tqdm

    from boltzflow.commands.sample import draw_samples
    from boltzflow.eval.evaluate import Draw

    draws, first, seconds = [], {}, 0.0
    with tqdm(total=args.draws * args.n, unit="sample", disable=args.no_progress, file=sys.stdout) as bar:
        for k in range(args.draws):
            start = time.perf_counter()
            arrays = draw_samples(flow, system, args.n, args.batch_size,
                                  torch.Generator(_device(args)).manual_seed(args.seed + k), MODEL,
                                  on_batch=bar.update, device=_device(args))
            if k == 0:
                first, seconds = arrays, time.perf_counter() - start
            draws.append(Draw(torch.as_tensor(arrays["x"]).unflatten(-1, system.event_shape),
                              torch.as_tensor(arrays["log_w"]), torch.as_tensor(arrays["energy"])))
    return draws, first, seconds


def _evaluate(flow: Any, system: Any, draws: list, md_xyz: Any, test: Any, umbrella: dict,
              args: argparse.Namespace) -> dict:
    """ESS, populations, NLL/EUBO and Ramachandran TV on the MD test split, αL of MD and of the umbrella run."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from boltzflow.eval.evaluate import evaluate
    from boltzflow.systems.alanine import BASINS, basin_labels, phi_psi

    ref = torch.as_tensor(md_xyz[test])
    with tqdm(total=3, unit="step", disable=args.no_progress, file=sys.stdout) as bar:
        bar.set_postfix_str("log q of MD frames")
        with torch.no_grad():
            dtype = next(flow.parameters()).dtype
            log_q_ref = torch.cat([flow.to(_device(args)).log_prob(c.flatten(-2).to(_device(args), dtype)).double()
                                   .cpu() for c in ref.split(args.batch_size)])
        bar.update()
        bar.set_postfix_str("ESS, populations, TV, energies")
        ev = evaluate(system, draws, reference_x=ref, log_q_reference=log_q_ref,
                      states=(lambda x: basin_labels(phi_psi(x)), BASINS))
        ev.pop("energy_histogram", None)
        bar.update()
        bar.set_postfix_str("MD basin populations")
        md_alpha_l = float(np.mean(basin_labels(phi_psi(md_xyz)) == BASINS.index("alphaL")))
        bar.update()
    return {"model": MODEL, "n_per_draw": args.n, "seeds": [args.seed + k for k in range(args.draws)],
            "n_reference": len(ref), "evaluation": ev, "alpha_l_md": md_alpha_l,
            "alpha_l_umbrella": umbrella.get("alpha_l_population"),
            "alpha_l_umbrella_err": umbrella.get("alpha_l_population_err")}


def _device(args: argparse.Namespace) -> Any:
    from boltzflow.runtime import resolve_device

    return resolve_device(args.device)


def _figures(draws: list, md_xyz: Any, umbrella: dict, temperature_kelvin: float) -> dict[str, Any]:
    import numpy as np
    import torch

    from boltzflow import plots
    from boltzflow.systems.alanine import phi_psi

    angles = [np.degrees(phi_psi(d.x).numpy()) for d in draws]
    weights = [torch.softmax(torch.nan_to_num(d.log_w, nan=-np.inf), 0).numpy() for d in draws]
    ang_md = np.degrees(phi_psi(md_xyz).numpy())
    reference = None
    if "phi_deg" in umbrella and "free_energy_kt" in umbrella:
        reference = ("umbrella sampling + MBAR", umbrella["phi_deg"], umbrella["free_energy_kt"],
                     umbrella.get("free_energy_err_kt"))
    curves = [("BG, reweighted", [a[:, 0] for a in angles], weights), ("MD, 60 ns", ang_md[:, 0], None)]
    f_phi = plots.free_energy_phi(curves, reference, temperature_kelvin=temperature_kelvin)
    pooled = (np.concatenate(angles), np.concatenate(weights) / len(weights))
    rama = plots.free_energy_phi_psi([("MD reference, 60 ns", ang_md, None),
                                      (f"BG, reweighted ({len(draws)} draws pooled)", *pooled)],
                                     temperature_kelvin=temperature_kelvin)
    return {"free_energy_phi.png": f_phi, "ramachandran.png": rama}


def _write(out: Path, arrays0: dict, results: dict, figures: dict) -> None:
    from boltzflow import plots
    from boltzflow.io import save_json, save_npz

    save_npz(out / "samples.npz", **arrays0)
    for name, fig in figures.items():
        plots.save(fig, out / "figures" / name)
    save_json(out / "results.json", json.loads(json.dumps(results, default=float)))


def _summary(out: Path, r: dict, figures: dict) -> None:
    ev = r["evaluation"]
    ess, pop = ev["ess_fraction"], ev["populations"]["alphaL"]
    lines = [
        f"ESS: {100 * ess['mean']:.1f} ± {100 * ess['sd']:.1f} % of samples (mean ± sd over {ev['n_draws']} draws "
        f"of {r['n_per_draw']:,})",
        f"alphaL population: BG reweighted {100 * pop['mean']:.2f} % (95 % CI {100 * pop['lo']:.2f}-"
        f"{100 * pop['hi']:.2f}), MD {100 * r['alpha_l_md']:.2f} %"
        + (f", umbrella {100 * r['alpha_l_umbrella']:.2f} ± {100 * r['alpha_l_umbrella_err']:.2f} %"
           if r.get("alpha_l_umbrella") is not None else ""),
        f"Ramachandran TV vs held-out MD (unweighted samples): {ev['ramachandran_tv']:.3f}; "
        f"NLL of {r['n_reference']:,} held-out MD frames: {ev['nll_reference']:.2f} nats",
        f"samples (draw 1): {out / 'samples.npz'}  (score it: boltzflow evaluate {MODEL} --data "
        f"{out / 'samples.npz'})",
        f"F(phi), BG vs umbrella and MD: {out / 'figures' / 'free_energy_phi.png'}",
        f"Ramachandran F(phi, psi), BG vs MD: {out / 'figures' / 'ramachandran.png'}",
        f"all numbers: {out / 'results.json'}; wall time {r['wall_time_s']:.0f} s",
    ]
    print("summary\n" + "\n".join("  " + ln for ln in lines), flush=True)
