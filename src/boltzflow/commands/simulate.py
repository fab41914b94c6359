"""Run resumable Langevin MD with OpenMM and store frames, energies and forces.

SYSTEM is any registered molecule (see `boltzflow systems`: alanine-dipeptide, peptide:SEQ, ...), which brings its
PDB, force field and temperature; --pdb takes any all-atom PDB instead.

Examples:
  boltzflow simulate alanine-dipeptide --replicas 6 --ns 10 --out runs/ala
  boltzflow simulate --pdb mol.pdb --forcefield amber14-all.xml implicit/obc2.xml --ns 1 --out runs/mol
  boltzflow simulate --potential flow.safetensors --ns 0.005 --timestep-fs 1 --friction 0 --out runs/flow-nve

--potential FLOW.safetensors runs the dynamics in torch on a trained flow's potential U = kT (-log q(x))
(paper 004 §6.5; see boltzflow.samplers.flow_potential), for the molecule of the checkpoint (or SYSTEM): each
replica starts from its own flow sample, gets Maxwell-Boltzmann velocities, runs --equilibrate-ps of Langevin
(at --friction, or 10/ps when --friction is 0) and then --ns at --friction, where 0 means NVE velocity Verlet.
No constraints (the flow models every bond); not resumable (an existing run needs --force). Output: the same
DIR/topology.pdb, DIR/replica-NN.xtc and DIR/replica-NN/chunk-00000.npz (xyz nm, energy_kj and kinetic_kj
kJ/mol, time_ps) and DIR/provenance.json.

Output (DIR = --out): DIR/topology.pdb, DIR/replica-NN.xtc (one trajectory per replica, readable by mdtraj
and VMD together with topology.pdb), DIR/replica-NN/chunk-NNNNN.npz (positions nm, potential energies kJ/mol,
forces kJ/mol/nm, times ps, an OpenMM checkpoint) and DIR/provenance.json (command, seeds, versions, settings,
wall time).

Rerunning the same command after an interruption continues every replica from its last complete chunk, giving
the same frames an uninterrupted run would have given. A different configuration for an existing DIR is
refused; a finished run is left as it is unless --force is given (which deletes it and starts again). A run
that diverges (non-finite positions or energy, e.g. from too large a --timestep-fs) stops with one line naming the
frame and its time; the chunks before it are kept.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from boltzflow.commands.md_options import int_at_least, non_negative_float, positive_float, writable_dir
from boltzflow.errors import BoltzflowError
from boltzflow.runtime import add_device_argument

HELP = "run OpenMM Langevin MD (resumable) and store trajectories, energies and forces"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "system", nargs="?", help="a registered molecule, e.g. alanine-dipeptide (see `boltzflow systems`); "
        "or give --pdb"
    )
    p.add_argument("--pdb", metavar="FILE", help="starting structure of any small molecule (instead of SYSTEM)")
    p.add_argument("--potential", metavar="FLOW", help="a trained flow checkpoint (.safetensors) whose -log q is "
                   "the potential (torch dynamics instead of OpenMM; see above)")
    p.add_argument(
        "--forcefield",
        nargs="+",
        metavar="XML",
        help="OpenMM force-field files for --pdb (default: amber99sbildn.xml amber99_obc.xml)",
    )
    p.add_argument(
        "--solvent",
        choices=("obc", "vacuum"),
        default=None,
        help="OBC implicit solvent or vacuum: the system's variant, or the force field of --pdb "
        "(default: the system's own; obc for --pdb)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (created, or resumed if it exists)")
    p.add_argument("--replicas", type=int_at_least(1), default=1,
                   help="independent replicas, same start (default: 1)")
    p.add_argument("--ns", type=positive_float, default=1.0, help="production length per replica, ns (default: 1)")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="temperature, kelvin (default: the system's, 300 for --pdb)")
    p.add_argument("--friction", type=non_negative_float, default=1.0, help="Langevin friction, 1/ps (default: 1)")
    p.add_argument("--timestep-fs", type=positive_float, default=2.0, help="time step, fs (default: 2)")
    p.add_argument("--save-every-ps", type=positive_float, default=1.0,
                   help="time between stored frames, ps (default: 1)")
    p.add_argument(
        "--equilibrate-ps",
        type=non_negative_float,
        default=100.0,
        help="MD after energy minimisation that is discarded before the first frame, ps (default: 100)",
    )
    p.add_argument(
        "--chunk-ps",
        type=positive_float,
        default=100.0,
        help="simulated time per chunk file (resume unit), ps (default: 100)",
    )
    p.add_argument(
        "--constraints",
        choices=("HBonds", "none"),
        default="HBonds",
        help="bond constraints (default: HBonds)",
    )
    p.add_argument(
        "--platform",
        choices=("Reference", "CPU", "auto"),
        default="Reference",
        help="OpenMM platform; auto times both and picks the faster (default: Reference, ~30x faster "
        "than CPU for small molecules)",
    )
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="base seed; replica seeds are derived from it (default: 0)")
    p.add_argument("--force", action="store_true", help="delete an existing run in DIR and start again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_argument(p, "openmm")


def run(args: argparse.Namespace) -> int:
    from boltzflow.samplers.md import MDConfig, simulate

    if args.potential is not None:
        from boltzflow.commands.simulate_flow import run_flow_potential

        return run_flow_potential(args)
    out = writable_dir(args.out, "--out")
    molecule, temperature = _molecule(args)
    config = MDConfig(
        pdb_path=str(molecule.pdb_path),
        forcefield=tuple(molecule.forcefield),
        temperature_kelvin=args.temperature or temperature,
        friction_per_ps=args.friction,
        timestep_fs=args.timestep_fs,
        save_every_ps=args.save_every_ps,
        ns=args.ns,
        equilibrate_ps=args.equilibrate_ps,
        replicas=args.replicas,
        seed=args.seed,
        platform=args.platform,
        constraints=args.constraints,
        chunk_ps=args.chunk_ps,
    )
    config.validate()
    command = shlex.join(["boltzflow", *sys.argv[1:]]) if "simulate" in sys.argv else "boltzflow simulate (via main())"
    result = simulate(
        config, out, command=command, progress=not args.no_progress, force=args.force, molecule=molecule
    )
    done = f"{result.out_dir}: {config.replicas} x {result.frames_per_replica} frames"
    if result.new_frames == 0:
        print(f"{done}; already complete, nothing to do (--force starts again)")
    else:
        rate = f"{result.wall_time_s:.1f} s ({result.ns_per_day:.0f} ns/day)"
        print(f"{done}; computed {result.new_frames} new frames in {rate}")
    return 0


def _molecule(args: argparse.Namespace) -> tuple[Any, float]:
    """The OpenMM molecule to simulate (constraints as asked) and its default temperature, kelvin."""
    from boltzflow.energies.openmm_system import SOLVENTS, build_molecule

    if (args.system is None) == (args.pdb is None):
        raise BoltzflowError("give either a SYSTEM (e.g. alanine-dipeptide) or --pdb FILE, not both or neither")
    if args.pdb is not None:
        if args.forcefield and args.solvent:
            raise BoltzflowError("give --forcefield or --solvent for --pdb, not both")
        forcefield = tuple(args.forcefield or SOLVENTS[args.solvent or "obc"])
        return build_molecule(args.pdb, forcefield, args.constraints), 300.0
    if args.forcefield:
        raise BoltzflowError("--forcefield goes with --pdb; named systems choose theirs (see --solvent)")
    system = md_system(args.system, args.solvent)
    return system.molecule(args.constraints), float(system.temperature_kelvin)


def md_system(name: str, solvent: str | None) -> Any:
    """A registered molecule system by name (with ``solvent`` when given).

    Raises:
        ValueError: unknown name, or a system that takes no solvent.
        BoltzflowError: the system is not a molecule (it has no OpenMM ``molecule()``).
    """
    from boltzflow.systems.registry import get_system

    system = get_system(name if solvent is None else {"name": name, "solvent": solvent})
    if not callable(getattr(system, "molecule", None)) or system.temperature_kelvin is None:
        raise BoltzflowError(f"system {name!r} is not a molecule; MD runs OpenMM on molecules such as "
                             "alanine-dipeptide (or give --pdb)")
    return system
