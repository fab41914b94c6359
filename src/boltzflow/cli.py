"""``boltzflow`` command-line entry point.

Each subcommand lives in ``boltzflow/commands/<name>.py`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Adding a command is one module plus one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from boltzflow.errors import BoltzflowError

COMMANDS: dict[str, str] = {
    "train": "boltzflow.commands.train",
    "sample": "boltzflow.commands.sample",
    "merge": "boltzflow.commands.merge",
    "evaluate": "boltzflow.commands.evaluate",
    "reproduce": "boltzflow.commands.reproduce",
    "run": "boltzflow.commands.run",
    "simulate": "boltzflow.commands.simulate",
    "energy": "boltzflow.commands.energy",
    "umbrella": "boltzflow.commands.umbrella",
    "systems": "boltzflow.commands.systems",
    "demo": "boltzflow.commands.demo",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="boltzflow", description="Boltzmann generators: train, sample and evaluate flows.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # command not built yet
                continue
            raise
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        if not any("--threads" in a.option_strings for a in p._actions):
            p.add_argument("--threads", type=int, default=None,
                           help="torch CPU threads (default: half the cores, at most the idle ones, >= 1)")
        p.set_defaults(_run=module.run, _distributed=getattr(module, "DISTRIBUTED", False))
    return parser


def _version() -> str:
    from boltzflow import __version__

    return f"boltzflow {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        from boltzflow.runtime import configure_threads

        configure_threads(getattr(args, "threads", None))
        _check_launch(args)
        return int(args._run(args) or 0)
    except (BoltzflowError, FileNotFoundError, ValueError) as err:
        print(f"boltzflow {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"boltzflow {args.command}: interrupted (checkpoints, if any, are kept)", file=sys.stderr)
        return 130


def _check_launch(args: argparse.Namespace) -> None:
    """Under torchrun (WORLD_SIZE > 1) only commands that split their work over ranks may run."""
    import os

    world = os.environ.get("WORLD_SIZE", "1")
    if world != "1" and not args._distributed:
        raise BoltzflowError(f"{args.command} does not split its work over processes (WORLD_SIZE={world}); run it "
                             "as one process (torchrun works with run, reproduce, train and sample)")


if __name__ == "__main__":
    sys.exit(main())
