"""Reproduce an experiment of the papers with one command, from its recipe (``boltzflow/recipes/NAME.toml``).

Each run writes DIR/results.json, markdown tables, DIR/figures/*.png, DIR/samples/*.npz and the resolved
recipe DIR/recipe.toml, and keeps resumable checkpoints under DIR/checkpoints/ (re-running the same command
after a kill continues from them).

recipes:
  two-particle        paper 001 §6.1: Table 1 and Figures 1-2 (four RealNVP flows, singular vs soft-core data)
  alanine-dihedrals   paper 001 §6.2: Figure 3, RealNVP vs a periodic spline flow on (phi, psi)
  alanine-cartesian   paper 001 §6.3: Table 2 and Figure 4 (Cartesian RealNVP, collision penalty, remedies)
  two-particle-bg     Boltzmann-generator mode on the two-particle system: reweighted mean r vs quadrature
  alanine-bg          Boltzmann generator for alanine dipeptide in internal coordinates (NLL + reverse KL, ESS)
  smooth-flows        paper 004: smooth vs spline flows, force matching (Table 1), flows as NVE potentials

--quick is a small run for demos (minutes); --full uses the paper's sizes. Any field of the recipe can be
changed with --set KEY=VALUE (e.g. --set stages.0.epochs=5, --set only_case=eps0.1 for one two-particle row,
--set 'models=["nll"]' --set train_only=true --set deadline_minutes=9 for alanine-cartesian); --print-config
shows the resolved recipe, which `boltzflow run FILE` runs unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from boltzflow.errors import BoltzflowError
from boltzflow.runtime import add_device_argument

DISTRIBUTED = True  # torchrun --nproc-per-node N -m boltzflow reproduce NAME: data-parallel training

HELP = "reproduce a paper experiment from its recipe (results.json, tables, figures, samples)"


def add_recipe_arguments(p: argparse.ArgumentParser, scales: bool) -> None:
    """The options ``reproduce`` and ``run`` share."""
    if scales:
        size = p.add_mutually_exclusive_group()
        size.add_argument("--quick", dest="scale", action="store_const", const="quick",
                          help="small, fast run (the default; what `make demo` runs)")
        size.add_argument("--full", dest="scale", action="store_const", const="full", help="the paper's sizes")
        size.add_argument("--scale", dest="scale", help="a preset of the recipe by name (e.g. smoke)")
        p.set_defaults(scale="quick")
    else:
        p.add_argument("--scale", default="full", help="a preset of the file's [scale.NAME] tables (default: none)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the recipe (repeatable), e.g. stages.0.epochs=5 or flow.hidden=[64,64]")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe as TOML and exit")
    p.add_argument("--out", help="output folder (created; an unfinished run there is resumed)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="allow writing into a folder that holds a finished run")
    add_device_argument(p, "torch", "recipes whose runner computes there (alanine-cartesian: training, sampling "
                                    "and AMBER energies; checkpoints stay loadable on the CPU); under torchrun, "
                                    "cuda means cuda:LOCAL_RANK")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from boltzflow.recipes import recipe_names

    p.add_argument("experiment", choices=recipe_names(), help="which shipped recipe to run")
    add_recipe_arguments(p, scales=True)


def run_recipe(args: argparse.Namespace, name_or_path: str) -> int:
    """Resolve the recipe, check ``--out`` and ``--device`` before anything is written, run it."""
    from boltzflow.experiments.runner import check_out_dir
    from boltzflow.recipes import dump_recipe, load_recipe, runner_module

    if args.seed < 0:
        raise BoltzflowError(f"--seed must be >= 0, got {args.seed}")
    recipe = load_recipe(name_or_path, args.scale, args.overrides)
    text = dump_recipe(recipe)
    if args.print_config:
        sys.stdout.write(text)
        return 0
    if not args.out:
        raise BoltzflowError("--out is required (the run's folder); or pass --print-config")
    check_out_dir(args.out, args.force)
    module = runner_module(recipe.runner, recipe.source)
    if args.device is not None and not getattr(module, "ANY_DEVICE", False):
        from boltzflow.experiments.runner import check_device

        check_device(args.device, recipe.runner)
    from boltzflow.training import distributed

    device = distributed.local_device(args.device)
    main = distributed.init_from_env(device).is_main
    meta = {"name": recipe.name, "scale": recipe.scale, "source": recipe.source, "toml": text}
    # every rank runs the recipe; rank 0 writes into --out, the others into a scratch folder, silently
    with distributed.rank_output(args.out) as out, open(os.devnull, "w") as null, \
            contextlib.redirect_stdout(sys.stdout if main else null):
        got = module.run(out, recipe.config, seed=args.seed, progress=main and not args.no_progress,
                         force=args.force, command=["boltzflow", *sys.argv[1:]], device=device, recipe=meta)
    if main:
        print(got.get("message") or f"wrote {Path(args.out) / 'results.json'}")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_recipe(args, args.experiment)
