"""List the registered systems: dimension, temperature, coordinates, references (with provenance) and exact log Z.

Examples:
  boltzflow systems                  # one block per system
  boltzflow systems gmm40 lj13       # only these
  boltzflow systems --json           # the same as a JSON list (one summary object per system)

Every system comes from the registry (``boltzflow.systems.registry``): a parametrised family such as
``peptide:SEQ`` is shown through its registered examples, and any member can be named on the command line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from boltzflow.runtime import add_device_argument

HELP = "list the registered systems with dimension, temperature, references and exact log Z"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="systems to show (default: every registered one)")
    p.add_argument("--json", action="store_true", help="print a JSON list of the systems' summaries")
    add_device_argument(p, "none")


def _temperature(s: dict[str, Any]) -> str:
    t = s.get("temperature_kelvin")
    return "reduced units" if t is None else f"{t:g} K"


def _block(s: dict[str, Any]) -> str:
    log_z = "unknown" if s.get("log_z") is None else f"{s['log_z']:.10g}"
    shape = " x ".join(map(str, s["event_shape"]))
    lines = [
        f"{s['name']}: {s.get('description', '')}",
        f"  dimension    {s['dim']} ({shape}), {_temperature(s)}, {s['coordinates']} coordinates",
        f"  exact log Z  {log_z}; exact sampler: {'yes' if s.get('exact_sampler') else 'no'}",
    ]
    if s.get("com_free_dim"):
        lines[1] += f"; centre of mass removed: {s['com_free_dim']} degrees of freedom"
    refs = s.get("references") or {}
    lines.append("  references   " + ("none" if not refs else ""))
    lines[-1] = lines[-1].rstrip()
    lines += [f"    {name}: {text}" for name, text in refs.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from boltzflow.systems.registry import get_system, system_names

    names = args.names or system_names()
    summaries = [get_system(name).summary() for name in names]
    if args.json:
        print(json.dumps(summaries, indent=2, default=str))
    else:
        print("\n\n".join(_block(s) for s in summaries))
    return 0
