"""Device benchmark: the torch AMBER force field and two flows on one device (a GPU, or the CPU), in one command.

Measures, on ``--device`` (default: cuda if torch sees one, else cpu):

* **AMBER energy + forces** of alanine dipeptide (AMBER99SB-ILDN + OBC, NoCutoff, no constraints) with the
  batched torch ``AmberEnergy`` (forces by autograd), float32 and float64, batches of 10³ ... 10⁶ perturbed
  configurations. Batches above 131,072 frames are evaluated in chunks of that size (memory: about 0.1 MB of
  saved activations per float64 frame); the table says which. A correctness line compares the device's energies
  and forces with OpenMM Reference on the same frames, so a fast wrong kernel cannot pass unnoticed.
* **OpenMM**, one configuration per call (``Context.setPositions`` + ``getState``), on every platform that
  loads: CUDA (the ``openmm-cuda-12`` plugin, when installed), OpenCL, CPU (all cores) and Reference.
* **RealNVP at the paper's §6.3 size** (66-D, 12 coupling layers, s and t nets 66->512->512->66, 7.9 M
  parameters): training steps/s of ``training.loop.fit`` at batch 256 for the NLL loss and the eq. (17)
  penalised loss (a generated batch of 256 per step), and samples/s with log q; with the projected time of the
  paper's 200 epochs (211 steps each on the shipped 60 ns set).
* **IC spline flow** on alanine dipeptide (``flows.ic_flow.ic_spline_flow``, the alanine-bg full size: 4 blocks,
  8 bins, 128-128 conditioners): NLL training steps/s at batch 256 and samples/s.

Times are wall-clock with the device synchronised, median of the repeats after a warm-up call. The markdown
section goes between ``<!-- bench:device -->`` markers of ``--out`` (other sections are kept), the numbers also
to ``--json``. ``--smoke`` runs tiny sizes (for CI on the CPU; numbers not for quoting).

Run: ``python benchmarks/device.py --device cuda --out docs/benchmarks.md --json bench_device.json``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHUNK = 2**17
SIZES = {
    "full": {"batches": (10**3, 10**4, 10**5, 10**6), "chunk": CHUNK, "openmm_frames": 2000, "fit_batches": 40,
             "sample_batches": (10**4, 10**5), "realnvp": (12, [512, 512]), "ic": (4, 8, [128, 128]), "repeats": 3,
             "n_data": 20_000, "batch_size": 256},
    "smoke": {"batches": (10, 100), "chunk": 64, "openmm_frames": 10, "fit_batches": 2, "sample_batches": (100,),
              "realnvp": (2, [16]), "ic": (1, 4, [16]), "repeats": 2, "n_data": 300, "batch_size": 16},
}
PAPER_STEPS_PER_EPOCH = 211  # ceil(54,000 training frames / 256)
PAPER_EPOCHS = 200


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up call, device synchronised."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def molecule():
    from boltzflow.energies.openmm_system import alanine_dipeptide

    return alanine_dipeptide("obc", constraints="none")


def frames(x0: np.ndarray, n: int, device: torch.device, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """``n`` copies of ``x0`` (22, 3) nm with N(0, 0.01 nm) noise per coordinate, made on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    base = torch.as_tensor(x0, dtype=dtype, device=device)
    return base + 0.01 * torch.randn((n, *x0.shape), generator=gen, device=device, dtype=dtype)


def bench_energy(mol, device: torch.device, size: dict) -> list[dict[str, Any]]:
    """Energy + force evaluations/s of the torch force field per dtype and batch."""
    from boltzflow.energies.amber import AmberEnergy

    energy = AmberEnergy.from_system(mol.system).double().to(device)
    rows = []
    for dtype in (torch.float32, torch.float64):
        for n in size["batches"]:
            x = frames(mol.positions, n, device, dtype)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t = median_seconds(lambda x=x: energy.energy_and_force(x, chunk_size=size["chunk"]), device,
                               1 if n >= 10**6 else size["repeats"])
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            rows.append({"dtype": str(dtype).removeprefix("torch."), "batch": n, "evals_per_s": n / t,
                         "seconds": t, "chunked": n > size["chunk"], "peak_gib": peak})
            del x
    return rows


def check_energy(mol, device: torch.device) -> dict[str, float]:
    """Largest relative deviation of the device's energies/forces from OpenMM Reference on 20 frames."""
    from boltzflow.energies.amber import AmberEnergy
    from boltzflow.energies.openmm_bridge import OpenMMEnergy

    x = frames(mol.positions, 20, torch.device("cpu"), torch.float64, seed=7)
    with OpenMMEnergy(mol.system, platform="Reference") as bridge:
        e_ref, f_ref = bridge.evaluate(x.numpy())
    energy = AmberEnergy.from_system(mol.system).double().to(device)
    out = {}
    for dtype in (torch.float32, torch.float64):
        e, f = energy.energy_and_force(x.to(device=device, dtype=dtype))
        e, f = e.double().cpu().numpy(), f.double().cpu().numpy()
        name = str(dtype).removeprefix("torch.")
        out[f"{name}_energy"] = float(np.max(np.abs(e - e_ref)) / np.max(np.abs(e_ref)))
        out[f"{name}_force"] = float(np.max(np.abs(f - f_ref)) / np.max(np.abs(f_ref)))
    return out


def bench_openmm(mol, size: dict) -> list[dict[str, Any]]:
    """Evaluations/s of OpenMM (one Context call per configuration) on every platform that loads."""
    import openmm

    from boltzflow.energies.openmm_bridge import OpenMMEnergy

    x = frames(mol.positions, size["openmm_frames"], torch.device("cpu"), torch.float64, seed=1).numpy()
    rows = []
    for name, props in (("CUDA", None), ("OpenCL", None), ("CPU", {"Threads": str(os.cpu_count())}),
                        ("Reference", None)):
        try:
            openmm.Platform.getPlatformByName(name)
        except Exception:
            rows.append({"platform": name, "evals_per_s": None, "note": "not available in this OpenMM build"})
            continue
        try:
            with OpenMMEnergy(mol.system, platform=name, platform_properties=props) as bridge:
                bridge.evaluate(x[:2])
                t = median_seconds(lambda b=bridge: b.evaluate(x), torch.device("cpu"), size["repeats"])
            rows.append({"platform": name, "evals_per_s": len(x) / t, "note": props and f"{props}"})
        except Exception as err:  # a platform that lists itself but cannot start here (no driver, ...)
            rows.append({"platform": name, "evals_per_s": None, "note": f"failed: {type(err).__name__}: {err}"[:160]})
    return rows


def fit_steps(flow, loss, data: torch.Tensor, size: dict) -> tuple[float, int]:
    """Optimiser steps/s of ``training.loop.fit`` over ``fit_batches`` batches (one epoch, no validation), and
    the steps it skipped (non-finite loss: no backward, so a skipped step would flatter the rate)."""
    from boltzflow.training.config import TrainConfig
    from boltzflow.training.loop import fit

    bs = size["batch_size"]
    cfg = TrainConfig(epochs=1, batch_size=bs, lr=5e-4, val_fraction=0.0)
    fit(flow, loss, data[: 2 * bs], cfg, progress=False)  # warm-up: CUDA context, cuBLAS handles, allocator
    part = data[: size["fit_batches"] * bs]
    sync(data.device)
    start = time.perf_counter()
    result = fit(flow, loss, part, cfg, progress=False)
    sync(data.device)
    return size["fit_batches"] / (time.perf_counter() - start), result.skipped_steps


def sampling_rates(flow, device: torch.device, size: dict) -> dict[str, float]:
    """Samples/s (x and log q, no gradients) per sampling batch."""
    gen = torch.Generator(device=device).manual_seed(0)
    rates = {}
    with torch.no_grad():
        for n in size["sample_batches"]:
            rates[str(n)] = n / median_seconds(lambda n=n: flow.sample(n, gen), device, size["repeats"])
    return rates


def alanine_data(n: int) -> np.ndarray:
    """``n`` aligned MD frames of the shipped 60 ns set, flattened (n, 66), nm."""
    from boltzflow.samplers.dataset import load_alanine_dataset
    from boltzflow.systems import alanine_cartesian as ac

    xyz = np.asarray(load_alanine_dataset().xyz[:n], dtype=np.float64)
    return ac.align_to_mean(xyz).xyz.reshape(n, -1)


def bench_realnvp(x: np.ndarray, device: torch.device, size: dict) -> dict[str, Any]:
    """RealNVP (paper §6.3 size unless smoke): NLL and eq. (17) steps/s, samples/s, projected 200 epochs."""
    from boltzflow.experiments import cartesian_training as T
    from boltzflow.experiments.alanine_cartesian import CartesianScale
    from boltzflow.flows.realnvp import RealNVPConfig, n_parameters
    from boltzflow.flows.spec import build_flow, realnvp_spec
    from boltzflow.systems import alanine_cartesian as ac

    st = ac.fit_standardizer(x)
    layers, hidden = size["realnvp"]
    spec = realnvp_spec(RealNVPConfig(dim=66, n_layers=layers, hidden=hidden), st.loc, st.scale)
    data = torch.as_tensor(x, dtype=torch.float32, device=device)
    out: dict[str, Any] = {}
    for name in ("nll", "penalty"):
        torch.manual_seed(0)
        flow = build_flow(spec).float().to(device)
        loss = T.make_loss(name, ac.nonbonded_pairs(), CartesianScale(), size["fit_batches"])
        out[f"{name}_steps_per_s"], out[f"{name}_skipped_steps"] = fit_steps(flow, loss, data, size)
        out[f"{name}_minutes_200_epochs"] = PAPER_EPOCHS * PAPER_STEPS_PER_EPOCH / out[f"{name}_steps_per_s"] / 60
    out["n_params"] = n_parameters(flow)
    out["samples_per_s"] = sampling_rates(flow.eval(), device, size)
    return out


def bench_ic(mol, x: np.ndarray, device: torch.device, size: dict) -> dict[str, Any]:
    """IC spline flow on alanine dipeptide (constrained X-H bonds resampled as alanine-bg does): NLL steps/s and
    samples/s."""
    from boltzflow.experiments.bg_data import to_internal, unconstrain_bonds
    from boltzflow.flows.ic_flow import ic_spline_flow, ic_statistics, sibling_torsions
    from boltzflow.flows.internal import InternalCoordinates
    from boltzflow.flows.realnvp import n_parameters
    from boltzflow.flows.zmatrix import build_zmatrix
    from boltzflow.training.losses import nll

    ic = InternalCoordinates(sibling_torsions(build_zmatrix(mol.topology)))
    q, _ = unconstrain_bonds(to_internal(ic, x.reshape(-1, 22, 3)), ic, mol.system, np.random.default_rng(0), 300.0)
    periodic = torch.zeros(ic.dim, dtype=torch.bool)
    periodic[ic.periodic_idx] = True
    layers, bins, hidden = size["ic"]
    torch.manual_seed(0)
    flow = ic_spline_flow(ic.zmatrix, ic_statistics(q, periodic), layers, bins, hidden).float().to(device)
    data = ic.forward(q)[0].to(device=device, dtype=torch.float32)
    out: dict[str, Any] = {"n_params": n_parameters(flow)}
    out["nll_steps_per_s"], out["nll_skipped_steps"] = fit_steps(flow, nll, data, size)
    out["samples_per_s"] = sampling_rates(flow.eval(), device, size)
    return out


def environment(device: torch.device) -> dict[str, Any]:
    """Device name, versions and machine of this run."""
    import importlib.metadata as md

    from boltzflow.experiments.common import cpu_model

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "not installed"

    env = {"device": str(device), "device_name": cpu_model(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "numpy": np.__version__, "openmm": version("openmm"),
           "cpu": f"{cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
           "load_average": [round(v, 2) for v in os.getloadavg()]}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return env


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"


def markdown(r: dict[str, Any]) -> str:
    """The ``device`` section of docs/benchmarks.md from the results dict."""
    env, size = r["environment"], SIZES[r["size"]]
    gpu = f", {env['gpu_memory_gib']} GiB" if "gpu_memory_gib" in env else ""
    lines = [
        f"## Device benchmark: {env['device_name']} ({env['device']})",
        "",
        f"{env['device_name']}{gpu}; host {env['cpu']}; Python {env['python']}, torch {env['torch']} "
        f"(CUDA {env['cuda']}), NumPy {env['numpy']}, OpenMM {env['openmm']}. Wall time of the benchmark: "
        f"{r['wall_seconds']:.0f} s." + (" **Smoke run (tiny sizes): numbers not for quoting.**" if r["size"] ==
                                         "smoke" else ""),
        "",
        "### AMBER energy + forces, alanine dipeptide (evaluations/s)",
        "",
        "| backend | " + " | ".join(f"batch {b:,}" for b in size["batches"]) + " |",
        "| --- | " + " | ".join("---:" for _ in size["batches"]) + " |",
    ]
    for dtype in ("float32", "float64"):
        rows = [e for e in r["energy"] if e["dtype"] == dtype]
        lines.append(f"| torch `AmberEnergy` {dtype} | " + " | ".join(fmt(e["evals_per_s"]) for e in rows) + " |")
    for o in r["openmm"]:
        if o["evals_per_s"] is not None:
            lines.append(f"| OpenMM {o['platform']} (one call per frame) | "
                         + " | ".join(fmt(o["evals_per_s"]) for _ in size["batches"]) + " |")
    missing = [f"{o['platform']} ({o['note']})" for o in r["openmm"] if o["evals_per_s"] is None]
    chunked = [e for e in r["energy"] if e["chunked"]]
    peak = [f"{e['dtype']} {e['batch']:,}: {e['peak_gib']:.1f} GiB" for e in r["energy"] if e["peak_gib"]]
    lines += [
        "",
        f"OpenMM's rate does not depend on the batch (repeated per column); platforms not measured: "
        f"{', '.join(missing) or 'none'}. "
        + (f"Batches above {size['chunk']:,} frames ran in chunks of {size['chunk']:,}. " if chunked else "")
        + (f"Peak device memory: {'; '.join(peak)}. " if peak else "")
        + "Largest relative deviation from OpenMM Reference on 20 frames (energy / force): "
        + ", ".join(f"{d} {r['check'][d + '_energy']:.1e} / {r['check'][d + '_force']:.1e}"
                    for d in ("float32", "float64")) + ".",
        "",
    ]
    return "\n".join(lines + flow_lines(r)) + "\n"


def flow_lines(r: dict[str, Any]) -> list[str]:
    rn, ic = r["realnvp"], r["ic"]
    batches = list(rn["samples_per_s"])
    return [
        "### Flows, float32 (training steps/s of `training.loop.fit`, batch "
        f"{SIZES[r['size']]['batch_size']}; samples/s with log q)",
        "",
        "| flow | parameters | NLL steps/s | eq. (17) steps/s | "
        + " | ".join(f"samples/s, batch {int(b):,}" for b in batches) + " |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in batches) + " |",
        f"| RealNVP 66-D | {rn['n_params']:,} | {fmt(rn['nll_steps_per_s'])} | {fmt(rn['penalty_steps_per_s'])} | "
        + " | ".join(fmt(rn["samples_per_s"][b]) for b in batches) + " |",
        f"| IC spline flow | {ic['n_params']:,} | {fmt(ic['nll_steps_per_s'])} | — | "
        + " | ".join(fmt(ic["samples_per_s"].get(b)) for b in batches) + " |",
        "",
        f"At these rates the paper's {PAPER_EPOCHS} epochs of Table 2 ({PAPER_STEPS_PER_EPOCH} steps each, one "
        f"model per process) take {rn['nll_minutes_200_epochs']:.1f} min for the NLL model and "
        f"{rn['penalty_minutes_200_epochs']:.1f} min for an eq. (17) model, validation not counted. Skipped "
        f"(non-finite) steps while timing: RealNVP {rn['nll_skipped_steps']} + {rn['penalty_skipped_steps']}, "
        f"IC {ic['nll_skipped_steps']}.",
    ]


def write_section(path: Path, body: str) -> None:
    """Put ``body`` between the ``bench:device`` markers of ``path`` (appended if absent; file made if missing)."""
    from boltzflow.io import save_text

    block = f"<!-- bench:device -->\n{body.rstrip()}\n<!-- /bench:device -->\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"<!-- bench:device -->\n.*?<!-- /bench:device -->\n", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n" + block
    save_text(path, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI smoke test; numbers not for quoting)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown file to update")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    args = parser.parse_args(argv)
    from boltzflow.errors import BoltzflowError
    from boltzflow.experiments.cartesian_training import resolve_device

    try:
        device = resolve_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except BoltzflowError as err:
        parser.exit(1, f"device.py: error: {err}\n")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    command = shlex.join(["python", "benchmarks/device.py", *(sys.argv[1:] if argv is None else argv)])
    r = run(device, "smoke" if args.smoke else "full")
    r["command"] = command
    body = markdown(r) + f"\n_measured {r['date']} with `{command}`_\n"
    write_section(args.out, body)
    if args.json:
        from boltzflow.io import save_json

        save_json(args.json, r)
    print(body)
    return 0


def run(device: torch.device, size_name: str) -> dict[str, Any]:
    """Every measurement on ``device`` at size ``size_name`` ("full" or "smoke"), as one dict."""
    started = time.perf_counter()
    size = SIZES[size_name]
    mol = molecule()
    log = lambda msg: print(f"[device bench {time.perf_counter() - started:5.0f} s] {msg}", file=sys.stderr,  # noqa: E731
                            flush=True)
    r: dict[str, Any] = {"size": size_name, "environment": environment(device),
                         "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}
    log(f"device {r['environment']['device_name']}; AMBER energies")
    r["check"] = check_energy(mol, device)
    r["energy"] = bench_energy(mol, device, size)
    log("OpenMM")
    r["openmm"] = bench_openmm(mol, size)
    x = alanine_data(size["n_data"])
    log("RealNVP")
    r["realnvp"] = bench_realnvp(x, device, size)
    log("IC spline flow")
    r["ic"] = bench_ic(mol, x, device, size)
    r["wall_seconds"] = time.perf_counter() - started
    log("done")
    return r


if __name__ == "__main__":
    sys.exit(main())
