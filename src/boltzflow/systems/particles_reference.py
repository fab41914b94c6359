"""Long-MCMC reference samples for DW4 and LJ13, with their diagnostics and provenance.

Run (checkpointed every 2000 steps and resumed bit-identically; seeds can run as separate processes with
``--seeds 0`` and ``--seeds 1`` and be combined by a final run over both)::

    python -m boltzflow.systems.particles_reference dw4 --out runs/systems-ref
    python -m boltzflow.systems.particles_reference lj13 --out runs/systems-ref

then copy ``runs/systems-ref/{dw4,lj13}-mcmc.{npz,json}`` to ``src/boltzflow/data/systems/`` (docs/systems.md has
the settings and the results of the shipped runs).

Method: batched Gaussian random-walk Metropolis (:mod:`boltzflow.samplers.metropolis`) on all n·d coordinates.
The energies are translation invariant, so the chain's projection onto the zero centre-of-mass subspace is itself
a Metropolis chain with an isotropic Gaussian proposal there; samples are stored with the centre of mass removed.
Per seed: ``n_chains`` chains from random starts, ``burn_in`` steps with Robbins–Monro step-size adaptation
(discarded), then ``n_per_chain × thin`` production steps at the frozen step size, keeping every ``thin``-th state.
The energy and the mean pair distance of every chain are recorded every ``record_every`` production steps.

Diagnostics written to the provenance JSON:

* acceptance rate and step size;
* integrated autocorrelation times (steps) of u and of the mean pair distance, from the chain-averaged
  autocovariance (FFT, Sokal's window c = 5), the autocorrelation at the thinning lag, and the effective size of
  the kept sample, N / (1 + 2 Σ_k ρ(k · thin)) (positive terms only);
* the mean energy per seed and of the first and second half of production (with standard errors);
* two sampler-independent identities of the Boltzmann distribution on the kept samples: the virial
  E[x · ∇u] = (n − 1)·d and the configurational temperature E[|∇u|²] / E[Δu] = 1;
* noise floors: distance and energy W2 between the two seeds, and between two random disjoint halves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzflow.energies.particles import pair_distances, remove_com
from boltzflow.eval.autocorrelation import autocorrelation, integrated_time, thinned_time
from boltzflow.io import read_safetensors, save_safetensors
from boltzflow.samplers.metropolis import MetropolisState, init, step
from boltzflow.systems.particles import ParticleSystem


@dataclass
class McmcSettings:
    """Settings of one reference run (per seed).

    Attributes:
        n_chains: parallel chains.
        burn_in: adaptation steps per chain, discarded.
        n_per_chain: samples kept per chain.
        thin: production steps between kept samples.
        record_every: production steps between recorded energies (for the autocorrelation).
        step_size: initial proposal standard deviation per coordinate.
        target_acceptance: acceptance the burn-in adaptation aims for.
        init_spacing: lattice spacing of the random starting configurations.
    """

    n_chains: int
    burn_in: int
    n_per_chain: int
    thin: int
    record_every: int = 10
    step_size: float = 0.1
    target_acceptance: float = 0.4
    init_spacing: float = 1.5


DEFAULTS = {
    "dw4": McmcSettings(n_chains=1000, burn_in=40_000, n_per_chain=10, thin=4_000, init_spacing=3.0),
    "lj13": McmcSettings(n_chains=500, burn_in=20_000, n_per_chain=20, thin=2_000, init_spacing=1.1),
}


def initial_positions(n_chains: int, n: int, d: int, spacing: float, generator: torch.Generator) -> Tensor:
    """Random starts: particles on random sites of a cubic lattice (no overlaps), shape (n_chains, n·d)."""
    side = math.ceil(n ** (1 / d)) + 1
    grid = torch.stack(torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * d, indexing="ij"), -1)
    sites = grid.reshape(-1, d) * spacing
    pick = torch.stack([torch.randperm(len(sites), generator=generator)[:n] for _ in range(n_chains)])
    x = sites[pick] + 0.05 * spacing * torch.randn(n_chains, n, d, generator=generator, dtype=torch.float64)
    return remove_com(x).flatten(1)


def _fresh_run(system: ParticleSystem, s: McmcSettings, seed: int) -> dict[str, Any]:
    """The starting checkpoint of one seed: random lattice starts and the initial log step size."""
    n, d = system.event_shape
    gen = torch.Generator().manual_seed(seed)
    x0 = initial_positions(s.n_chains, n, d, s.init_spacing, gen)
    return {"k": 0, "x": x0, "log_step": math.log(s.step_size), "gen": gen.get_state(), "kept": [], "trace_u": [],
            "trace_d": [], "accepted": 0, "wall": 0.0}


_LISTS = ("kept", "trace_u", "trace_d")  # lists of tensors in a run checkpoint
_SCALARS = ("k", "log_step", "accepted", "wall")


def save_run_checkpoint(path: Path, ck: dict[str, Any]) -> None:
    """Write one seed's run state (no pickle): tensors ``x``, ``gen`` and the lists ``kept``/``trace_*`` as
    ``name/i``; the scalars and list lengths as JSON."""
    tensors = {"x": ck["x"], "gen": ck["gen"]}
    for name in _LISTS:
        tensors.update({f"{name}/{i}": t for i, t in enumerate(ck[name])})
    meta = {k: ck[k] for k in _SCALARS} | {f"n_{name}": len(ck[name]) for name in _LISTS}
    save_safetensors(path, tensors, meta)


def load_run_checkpoint(path: Path) -> dict[str, Any]:
    """Read what :func:`save_run_checkpoint` wrote."""
    tensors, meta = read_safetensors(path, "MCMC checkpoint")
    ck = {k: meta[k] for k in _SCALARS} | {"x": tensors["x"], "gen": tensors["gen"]}
    for name in _LISTS:
        ck[name] = [tensors[f"{name}/{i}"] for i in range(int(meta[f"n_{name}"]))]
    return ck


def _record(ck: dict[str, Any], state: MetropolisState, p: int, s: McmcSettings, shape: tuple[int, int]) -> None:
    """Production bookkeeping after production step ``p`` (1-based): traces and kept samples."""
    x = state.x.unflatten(-1, shape)
    if p % s.record_every == 0:
        ck["trace_u"].append(state.energy.clone())
        ck["trace_d"].append(pair_distances(x).mean(-1))
    if p % s.thin == 0:
        ck["kept"].append(remove_com(x))


def run_seed(system: ParticleSystem, s: McmcSettings, seed: int, progress: bool, checkpoint: Path,
             every: int = 2000) -> dict[str, Any]:
    """One independent run, checkpointed every ``every`` steps to ``checkpoint`` (resumed from it if present).

    Burn-in adapts log σ by the Robbins–Monro rule of :func:`~boltzflow.samplers.metropolis.sample_metropolis`,
    log σ += (ā − target) / (k + 10)^0.6; production runs at the frozen σ.
    """
    n, d = system.event_shape
    energy = system.energy().double()
    fn = lambda x: energy(x.unflatten(-1, (n, d)))  # noqa: E731
    ck = load_run_checkpoint(checkpoint) if checkpoint.exists() else _fresh_run(system, s, seed)
    gen = torch.Generator()
    gen.set_state(ck["gen"])
    state = init(ck["x"], fn)
    total, t0, k0 = s.burn_in + s.n_per_chain * s.thin, time.time(), ck["k"]
    for k in tqdm(range(k0, total), initial=k0, total=total, disable=not progress, desc=f"{system.name} {seed}"):
        state, info = step(state, fn, math.exp(ck["log_step"]), gen)
        ck["accepted"] += int(info.accepted.sum()) if k >= s.burn_in else 0
        if k < s.burn_in:
            ck["log_step"] += (float(info.accept_prob.mean()) - s.target_acceptance) / (k + 10) ** 0.6
        else:
            _record(ck, state, k - s.burn_in + 1, s, (n, d))
        if (k + 1) % every == 0 and k + 1 < total:
            ck.update(k=k + 1, x=state.x, gen=gen.get_state(), wall=ck["wall"] + time.time() - t0)
            save_run_checkpoint(checkpoint, ck)
            t0 = time.time()
    x = torch.stack(ck["kept"], 1).reshape(-1, n, d)  # chain-major: chain c's samples are rows c*n_per_chain...
    return {"x": x.numpy(), "u": fn(x.flatten(1)).numpy(), "trace_u": torch.stack(ck["trace_u"]).numpy(),
            "trace_d": torch.stack(ck["trace_d"]).numpy(),
            "acceptance": ck["accepted"] / (s.n_per_chain * s.thin * s.n_chains),
            "step_size": math.exp(ck["log_step"]), "wall": ck["wall"] + time.time() - t0}


def diagnostics(run: dict[str, Any], s: McmcSettings) -> dict[str, Any]:
    """Autocorrelation times (steps), ρ at the thinning lag, ESS of the kept samples, first- vs second-half means."""
    out: dict[str, Any] = {"acceptance": run["acceptance"], "step_size": run["step_size"]}
    se = lambda v: float(v.std(ddof=1) / math.sqrt(len(v)))  # noqa: E731  (chains are independent)
    lag = s.thin // s.record_every
    for name, trace in (("energy", run["trace_u"]), ("mean_distance", run["trace_d"])):
        rho = autocorrelation(trace)
        half = len(trace) // 2
        first, second = trace[:half].mean(0), trace[half:].mean(0)  # per-chain means
        out.update({
            f"tau_int_{name}": integrated_time(rho) * s.record_every,
            f"rho_{name}_at_thin": float(rho[lag]) if lag < len(rho) else None,
            f"ess_kept_{name}": s.n_chains * s.n_per_chain / thinned_time(rho, lag),
            f"{name}_first_half": float(first.mean()), f"{name}_first_half_se": se(first),
            f"{name}_second_half": float(second.mean()), f"{name}_second_half_se": se(second),
        })
    out["ess_all_steps_energy"] = s.n_chains * s.n_per_chain * s.thin / out["tau_int_energy"]
    out["mean_energy"] = float(run["u"].mean())
    out["mean_energy_se"] = se(run["u"].reshape(s.n_chains, -1).mean(1))
    return out


def equilibrium_checks(system: ParticleSystem, x: np.ndarray, group: int = 1) -> dict[str, float]:
    """Two identities of the Boltzmann distribution at kT = 1, as sampler-independent checks of ``x``.

    * virial: E[Σ_i x_i · ∇_i u] = (n − 1)·d for centred x (integration by parts on the zero-COM subspace);
    * configurational temperature: E[|∇u|²] / E[Δu] = 1.

    Args:
        system: the particle system.
        x: centred samples, shape (N, n, d), ordered so that consecutive blocks of ``group`` rows come from one
            chain (standard errors treat the blocks as independent; ``group=1`` for independent samples).
        group: samples per chain.
    """
    t = torch.as_tensor(x, dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(system.energy().double()(t).sum(), t, create_graph=True)
    lap = torch.zeros(len(t), dtype=torch.float64)
    for i in range(t.shape[1]):
        for k in range(t.shape[2]):
            (h,) = torch.autograd.grad(grad[:, i, k].sum(), t, retain_graph=True)
            lap += h[:, i, k].detach()
    block = lambda v: v.detach().numpy().reshape(-1, group).mean(1)  # noqa: E731  (one mean per chain)
    virial, g2, lap = block((t * grad).sum((1, 2))), block((grad**2).sum((1, 2))), block(lap)
    m = len(virial)
    ratio = g2.mean() / lap.mean()
    ratio_se = (g2 - ratio * lap).std(ddof=1) / (math.sqrt(m) * lap.mean())  # delta method for a ratio of means
    return {"virial": float(virial.mean()), "virial_se": float(virial.std(ddof=1) / math.sqrt(m)),
            "virial_expected": float(system.com_free_dim),
            "configurational_temperature": float(ratio), "configurational_temperature_se": float(ratio_se)}


def _seed_run(system: ParticleSystem, s: McmcSettings, seed: int, out: Path, progress: bool) -> dict[str, Any]:
    """One seed's finished run from ``out/.NAME-seedS.npz``, or run it (resuming its checkpoint) and save it."""
    from boltzflow.io import load_npz, save_npz

    part = out / f".{system.name}-seed{seed}.npz"
    if part.exists():
        run = load_npz(part)
        return {**run, **{k: float(run[k]) for k in ("acceptance", "step_size", "wall")}}
    checkpoint = out / f".{system.name}-seed{seed}.ckpt.safetensors"
    run = run_seed(system, s, seed, progress, checkpoint)
    save_npz(part, **run)
    checkpoint.unlink(missing_ok=True)
    return run


def make_reference(name: str, out: Path, seeds: tuple[int, ...] = (0, 1), progress: bool = True,
                   settings: McmcSettings | None = None, command: str = "") -> dict[str, Any]:
    """Run every seed (resuming from ``out``), write ``{name}-mcmc.npz`` and ``.json`` (``command`` goes in it)."""
    from boltzflow.eval.particles import particle_w2
    from boltzflow.io import save_json, save_npz
    from boltzflow.systems.registry import get_system

    system = get_system(name)
    s = settings or DEFAULTS[name]
    start = time.time()
    runs = [_seed_run(system, s, seed, out, progress) for seed in seeds]
    diag = [{"seed": seed, "wall_seconds": r["wall"], **diagnostics(r, s)} for seed, r in zip(seeds, runs, strict=True)]
    x = np.concatenate([r["x"] for r in runs]).astype(np.float32)
    seed_of = np.concatenate([np.full(len(r["x"]), sd, dtype=np.int16) for r, sd in zip(runs, seeds, strict=True)])
    # "model" = seed 0 vs the last seed, "floor" = two disjoint random halves of seed 0 (same size)
    half = len(runs[0]["x"]) // 2
    floors = particle_w2(runs[0]["x"], runs[-1]["x"], system.energy().double(), n=half) if len(runs) > 1 else None
    prov = {
        "system": name, "command": command,
        "method": "batched random-walk Metropolis, centre of mass removed", "settings": asdict(s),
        "seeds": list(seeds), "n_samples": int(len(x)), "dtype": "float32",
        "acceptance": float(np.mean([g["acceptance"] for g in diag])),
        "tau_int_energy": float(np.mean([g["tau_int_energy"] for g in diag])),
        "per_seed": diag, "noise_floors": floors, "equilibrium_checks": equilibrium_checks(system, x, s.n_per_chain),
        "wall_seconds": float(sum(r["wall"] for r in runs)), "analysis_seconds": time.time() - start,
        "load_average_1_5_15": list(os.getloadavg()), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    save_npz(out / f"{name}-mcmc.npz", x=x, seed=seed_of)
    save_json(out / f"{name}-mcmc.json", prov)
    return prov


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m boltzflow.systems.particles_reference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("system", choices=sorted(DEFAULTS))
    p.add_argument("--out", required=True, type=Path, help="folder of the npz + json (and per-seed parts)")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (default: 0,1)")
    for field in ("n_chains", "burn_in", "n_per_chain", "thin", "record_every"):
        p.add_argument(f"--{field.replace('_', '-')}", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = DEFAULTS[args.system]
    overrides = {f: getattr(args, f) for f in ("n_chains", "burn_in", "n_per_chain", "thin", "record_every")}
    s = McmcSettings(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})
    seeds = tuple(int(v) for v in args.seeds.split(","))
    command = "python -m boltzflow.systems.particles_reference " + shlex.join(sys.argv[1:] if argv is None else argv)
    prov = make_reference(args.system, args.out, seeds, not args.no_progress, s, command)
    print(json.dumps({k: prov[k] for k in ("n_samples", "acceptance", "tau_int_energy", "wall_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
