"""Reproduce an experiment of the papers with one command.

Each run writes DIR/results.json, markdown tables, DIR/figures/*.png and DIR/samples/*.npz, and keeps
resumable checkpoints under DIR/checkpoints/ (re-running the same command after a kill continues from them).

experiments:
  two-particle        paper 001 §6.1: Table 1 and Figures 1-2 (four RealNVP flows, singular vs soft-core data)
  alanine-dihedrals   paper 001 §6.2: Figure 3, RealNVP vs a periodic spline flow on (phi, psi)
  alanine-cartesian   paper 001 §6.3: Table 2 and Figure 4 (66-D RealNVP, collision penalty, remedies)
  two-particle-bg     Boltzmann-generator mode on the two-particle system: reweighted mean r vs quadrature
  alanine-bg          Boltzmann generator for alanine dipeptide in internal coordinates (NLL + reverse KL, ESS)

--quick is a small run for demos and smoke tests (minutes); --full uses the paper's sizes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from boltzflow.errors import BoltzflowError

HELP = "reproduce a paper experiment (results.json, tables, figures, samples)"

EXPERIMENTS = {
    "two-particle": "boltzflow.experiments.two_particle",
    "alanine-dihedrals": "boltzflow.experiments.alanine_dihedrals",
    "alanine-cartesian": "boltzflow.experiments.alanine_cartesian",
    "two-particle-bg": "boltzflow.experiments.two_particle_bg",
    "alanine-bg": "boltzflow.experiments.alanine_bg",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", choices=sorted(EXPERIMENTS), help="which experiment to run")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="scale", action="store_const", const="quick",
                      help="small, fast run (the default; what `make demo` runs)")
    size.add_argument("--full", dest="scale", action="store_const", const="full", help="the paper's sizes")
    p.set_defaults(scale="quick")
    p.add_argument("--out", required=True, help="output folder (created; an unfinished run there is resumed)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="allow writing into a folder that holds a finished run")
    p.add_argument("--case", default=None,
                   help="two-particle only: make the data and train the flow of one row (e.g. eps0.1), so rows can "
                        "run as parallel processes; then run again without --case to evaluate all rows")
    p.add_argument("--epochs", type=int, default=None,
                   help="alanine-cartesian only: train for this many epochs instead of the scale's (the paper: 200); "
                        "the table and results.json state the number")
    p.add_argument("--models", default=None,
                   help="alanine-cartesian only: comma-separated subset of nll,penalty,anneal,smooth,penalty_sum to "
                        "train and score (default: all; nll_reject comes with nll)")
    p.add_argument("--device", default=None,
                   help="alanine-cartesian only: cpu (default), cuda or cuda:N; training, sampling and AMBER energies "
                        "run there, checkpoints stay loadable on the CPU")
    p.add_argument("--deadline-minutes", type=float, default=None,
                   help="alanine-cartesian only: start no training epoch later than this many minutes after the "
                        "start; each model is scored at its last completed epoch and the table says which (0: train "
                        "nothing new, score the checkpoints)")
    p.add_argument("--train-only", action="store_true",
                   help="alanine-cartesian only: train and checkpoint the --models, score nothing (run models as "
                        "parallel processes into one --out, then once more without --train-only to score)")
    p.add_argument("--alpha-l-seed-runs", type=int, default=None,
                   help="alanine-bg only: short MD runs from the training frames in alphaL whose frames join the "
                        "training data (default: the scale's, 40 for --full; 0 turns the seeding off)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:

    try:
        module = importlib.import_module(EXPERIMENTS[args.experiment])
    except ModuleNotFoundError as err:
        raise BoltzflowError(f"experiment {args.experiment} is not available in this build ({err.name})") from None
    extra = {"only_case": args.case} if args.case else {}
    if args.case and args.experiment != "two-particle":
        raise BoltzflowError("--case is only available for two-particle")
    for name in ("epochs", "models", "device", "deadline_minutes"):
        if getattr(args, name) is not None and args.experiment != "alanine-cartesian":
            raise BoltzflowError(f"--{name.replace('_', '-')} is only available for alanine-cartesian")
    if args.train_only and args.experiment != "alanine-cartesian":
        raise BoltzflowError("--train-only is only available for alanine-cartesian")
    if args.deadline_minutes is not None:
        if not args.deadline_minutes >= 0:
            raise BoltzflowError(f"--deadline-minutes must be >= 0, got {args.deadline_minutes}")
        extra["deadline_minutes"] = args.deadline_minutes
    if args.device is not None:
        from boltzflow.experiments.cartesian_training import resolve_device

        extra["device"] = resolve_device(args.device)
    if args.train_only:
        extra["train_only"] = True
    if args.alpha_l_seed_runs is not None:
        if args.experiment != "alanine-bg":
            raise BoltzflowError("--alpha-l-seed-runs is only available for alanine-bg")
        if args.alpha_l_seed_runs < 0:
            raise BoltzflowError(f"--alpha-l-seed-runs must be >= 0, got {args.alpha_l_seed_runs}")
        extra["alpha_l_seed_runs"] = args.alpha_l_seed_runs
    if args.epochs is not None:
        if args.epochs < 1:
            raise BoltzflowError(f"--epochs must be a positive integer, got {args.epochs}")
        extra["epochs"] = args.epochs
    if args.models is not None:
        extra["models"] = tuple(m.strip() for m in args.models.split(",") if m.strip())
        if not extra["models"]:
            raise BoltzflowError("--models needs at least one of nll,penalty,anneal,smooth,penalty_sum")
    got = module.run(args.out, args.scale, seed=args.seed, progress=not args.no_progress, force=args.force,
                     command=["boltzflow", *sys.argv[1:]], **extra)
    if args.case:
        print(f"trained case {args.case} in {args.out}")
    elif args.train_only:
        reached = [f"{m}: {0 if i is None else i['epochs_trained']}" for m, i in got["trained"].items()]
        print(f"epochs trained ({', '.join(reached)}) in {args.out}/checkpoints")
    else:
        print(f"wrote {args.out}/results.json")
    return 0
