"""Train a flow on samples by maximum likelihood, from a JSON config.

The config names the system, the data file (npz with an array `x` of shape (n, D)), the flow architecture and the
optimisation settings. Print a template with `boltzflow train --template two-particle > config.json`, edit it,
then run `boltzflow train config.json --out DIR`. Any key can be overridden on the command line:
`--set train.epochs=50 --set flow.config.hidden=[64,64]`.

DIR receives checkpoint.pt (resumable: re-run the same command after a kill), config.json (the resolved config)
and history.json (per-epoch losses). Sample the result with `boltzflow sample DIR/checkpoint.pt`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from boltzflow.errors import BoltzflowError

HELP = "train a flow on samples (NLL) from a JSON config"


def template(system: str) -> dict[str, Any]:
    """A complete, editable config for ``system``."""
    from boltzflow.flows.realnvp import RealNVPConfig
    from boltzflow.flows.spec import realnvp_spec
    from boltzflow.training.config import TrainConfig

    if system != "two-particle":
        raise BoltzflowError(f"no template for {system!r}; available: two-particle")
    return {
        "system": {"name": "two-particle", "lam": 0.7, "beta": 5.0, "softcore_eps": 0.0},
        "data": "samples.npz",
        "flow": realnvp_spec(RealNVPConfig(dim=4, n_layers=8, hidden=[256, 256])),
        "train": dataclasses.asdict(TrainConfig()),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="JSON config file (see --template)")
    p.add_argument("--out", help="output folder for checkpoint.pt, config.json, history.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. train.epochs=50 (repeatable)")
    p.add_argument("--template", metavar="SYSTEM", help="print a config template for SYSTEM and exit")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def load_config(path: str, overrides: list[str]) -> dict[str, Any]:
    from boltzflow.training.config import apply_overrides

    p = Path(path)
    if not p.is_file():
        raise BoltzflowError(f"config file not found: {p}")
    try:
        config = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise BoltzflowError(f"config {p} is not valid JSON: {err}") from None
    missing = {"system", "data", "flow", "train"} - set(config)
    if missing:
        raise BoltzflowError(f"config {p} lacks sections {sorted(missing)}; see boltzflow train --template")
    return apply_overrides(config, overrides)


def load_samples(path: str | Path, dim: int | None = None) -> Any:
    """Array ``x`` of an npz file, checked for shape and finiteness."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise BoltzflowError(f"data file not found: {p}")
    try:
        with np.load(p) as f:
            if "x" not in f:
                raise BoltzflowError(f"{p} has no array 'x' (found {sorted(f.files)})")
            x = np.asarray(f["x"], dtype=np.float64)
    except (OSError, ValueError) as err:
        raise BoltzflowError(f"cannot read {p} as npz: {err}") from None
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise BoltzflowError(f"{p}: x must have shape (n, {dim or 'D'}), got {x.shape}")
    if not np.isfinite(x).all():
        raise BoltzflowError(f"{p}: x contains {int((~np.isfinite(x)).sum())} NaN/inf values")
    return x


def run(args: argparse.Namespace) -> int:
    if args.template:
        print(json.dumps(template(args.template), indent=2))
        return 0
    if not args.config or not args.out:
        raise BoltzflowError("give a config file and --out DIR (or --template SYSTEM)")
    import torch

    from boltzflow.flows.spec import build_flow
    from boltzflow.io import save_json
    from boltzflow.systems.registry import make_system
    from boltzflow.training.config import TrainConfig, from_dict
    from boltzflow.training.loop import fit
    from boltzflow.training.losses import nll

    config = load_config(args.config, args.overrides)
    make_system(config["system"])  # fail early on a bad system spec
    cfg = from_dict(TrainConfig, config["train"])
    torch.manual_seed(cfg.seed)
    flow = build_flow(config["flow"])
    data_path = Path(config["data"])
    if not data_path.is_absolute():
        data_path = Path(args.config).parent / data_path
    x = load_samples(data_path, flow.dim)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"flow_spec": config["flow"], "system": config["system"], "config": config}
    dtype = next(flow.parameters()).dtype
    result = fit(flow, nll, torch.as_tensor(x, dtype=dtype), cfg, out / "checkpoint.pt", extra=extra,
                 progress=not args.no_progress)
    save_json(out / "config.json", {**config, "command": " ".join(["boltzflow", *sys.argv[1:]])})
    save_json(out / "history.json", {"history": result.history, "best_epoch": result.best_epoch,
                                     "best_val": result.best_val, "skipped_steps": result.skipped_steps})
    print(f"best validation NLL {result.best_val:.4f} at epoch {result.best_epoch}; wrote {out}/checkpoint.pt")
    return 0
