"""``boltzflow simulate --potential FLOW``: torch dynamics on a trained flow's potential (see ``simulate``'s help).

Every check runs before anything is written; a bad input is one line naming the option.
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from boltzflow.commands.md_options import writable_dir
from boltzflow.errors import BoltzflowError

EQUILIBRATE_FRICTION_NVE = 10.0  # 1/ps, Langevin before NVE production (paper 004 §6.5)


def _steps(args: argparse.Namespace) -> tuple[int, int, int]:
    """(equilibration steps, production steps, save interval in steps) from the ps/ns options."""
    dt_ps = args.timestep_fs / 1000.0
    n_eq = int(round(args.equilibrate_ps / dt_ps))
    n_prod = int(round(args.ns * 1000.0 / dt_ps))
    every = int(round(args.save_every_ps / dt_ps))
    if every < 1 or n_prod < every:
        raise BoltzflowError(f"--save-every-ps {args.save_every_ps} must be at least one --timestep-fs "
                             f"({args.timestep_fs} fs) and at most the production length (--ns {args.ns})")
    return n_eq, n_prod, every


def _check(args: argparse.Namespace) -> Path:
    if args.pdb is not None or args.forcefield:
        raise BoltzflowError("--potential takes its molecule from the flow checkpoint (or SYSTEM); drop --pdb and "
                             "--forcefield")
    out = writable_dir(args.out, "--out")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise BoltzflowError(f"--out {out} is not empty; flow-potential runs are not resumable, give a new folder "
                             "or --force to replace it")
    return out


def _system(args: argparse.Namespace, ckpt: dict[str, Any]) -> Any:
    from boltzflow.commands.simulate import md_system

    name = args.system
    if name is None:
        saved = ckpt.get("system")
        name = saved.get("name") if isinstance(saved, dict) else saved
    if not name:
        raise BoltzflowError(f"checkpoint {args.potential} names no system; give SYSTEM (e.g. alanine-dipeptide)")
    return md_system(name, args.solvent)


def run_flow_potential(args: argparse.Namespace) -> int:
    """Load, check, run every replica, write the run folder; returns the exit code."""
    import torch

    from boltzflow.io import save_json, save_npz
    from boltzflow.samplers.dynamics import equilibrated_run
    from boltzflow.samplers.flow_potential import BOLTZMANN_KJ_PER_MOL_K, FlowPotential
    from boltzflow.samplers.md_files import write_topology, write_xtc
    from boltzflow.training.checkpoint import load_flow, resolve_checkpoint

    out = _check(args)
    n_eq, n_prod, every = _steps(args)
    flow, ckpt = load_flow(args.potential)
    system = _system(args, ckpt)
    flow = flow.double().eval()
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        x0 = flow.sample(args.replicas, gen).x
    if x0.shape[1] != system.dim:
        raise BoltzflowError(f"--potential {args.potential}: the flow makes {x0.shape[1]}-D configurations but "
                             f"{system.name} has {system.dim} coordinates")
    molecule = system.molecule("none")
    masses = torch.tensor([molecule.system.getParticleMass(i)._value for i in range(molecule.system.getNumParticles())],
                          dtype=torch.float64)
    temperature = args.temperature or float(system.temperature_kelvin)
    potential = FlowPotential(flow, system.event_shape, float(system.temperature_kelvin))
    started = time.perf_counter()
    traj = equilibrated_run(potential, x0.unflatten(-1, tuple(system.event_shape)), masses,
                            BOLTZMANN_KJ_PER_MOL_K * temperature, args.timestep_fs / 1000.0, n_eq, n_prod, every,
                            friction=args.friction, equilibrate_friction=args.friction or EQUILIBRATE_FRICTION_NVE,
                            generator=gen)
    wall = time.perf_counter() - started
    if args.force and out.is_dir():  # only what such a run writes
        for old in [*out.glob("replica-*"), out / "topology.pdb", out / "provenance.json"]:
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_topology(out / "topology.pdb", molecule)
    for r in range(args.replicas):
        save_npz(out / f"replica-{r:02d}" / "chunk-00000.npz", xyz=traj.x[:, r].float().numpy(),
                 energy_kj=traj.potential[:, r].numpy(), kinetic_kj=traj.kinetic[:, r].numpy(),
                 time_ps=traj.time.numpy())
        write_xtc(out, r, molecule)
    path = resolve_checkpoint(args.potential)
    save_json(out / "provenance.json", {
        "format": "boltzflow-flow-md-1",
        "command": shlex.join(["boltzflow", *sys.argv[1:]]) if "simulate" in sys.argv else "boltzflow simulate",
        "potential": str(path), "potential_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "system": system.name, "temperature_kelvin": temperature, "flow_temperature_kelvin": system.temperature_kelvin,
        "timestep_fs": args.timestep_fs, "friction_per_ps": args.friction, "equilibrate_ps": args.equilibrate_ps,
        "equilibrate_friction_per_ps": args.friction or EQUILIBRATE_FRICTION_NVE, "ns": args.ns,
        "save_every_ps": args.save_every_ps, "replicas": args.replicas, "seed": args.seed,
        "integrator": "velocity Verlet (NVE)" if args.friction == 0 else "BAOAB Langevin",
        "frames": int(traj.x.shape[0]), "wall_time_s": wall,
        "total_energy_sd_kj": np.asarray(traj.total.std(0)).tolist(),
    })
    print(f"{out}: {args.replicas} x {traj.x.shape[0]} frames on the flow potential in {wall:.1f} s")
    return 0
