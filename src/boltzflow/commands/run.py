"""Run a recipe file: a copy of a shipped recipe that you edited, or the output of ``--print-config``.

    boltzflow reproduce alanine-bg --quick --print-config > my.toml   # edit my.toml
    boltzflow run my.toml --out runs/mine [--set stages.1.epochs=10] [--scale quick]

The file is checked strictly before anything is written: a malformed file, an unknown key or a wrongly typed
value is one line naming the key and the file. The run folder gets the same outputs as ``reproduce``.

Data-parallel on N processes (gloo on the CPU, NCCL with --device cuda; rank 0 writes, per-rank seeds):

    torchrun --nproc-per-node 2 -m boltzflow run my.toml --out runs/mine
"""

from __future__ import annotations

import argparse

from boltzflow.commands.reproduce import add_recipe_arguments, run_recipe

DISTRIBUTED = True  # torchrun --nproc-per-node N -m boltzflow run FILE: data-parallel training
HELP = "run a recipe TOML file (e.g. an edited copy of `reproduce NAME --print-config`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="the recipe .toml file")
    add_recipe_arguments(p, scales=False)


def run(args: argparse.Namespace) -> int:
    return run_recipe(args, args.recipe if "/" in args.recipe else f"./{args.recipe}")
