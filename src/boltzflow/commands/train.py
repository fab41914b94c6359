"""Train a flow on samples by maximum likelihood, from a JSON config.

The config names the system, the data file (npz with an array `x` of shape (n, D), or `xyz` of shape
(n, n_atoms, 3) in nm for molecules), the flow architecture and the optimisation settings. Print a template with
`boltzflow train --template two-particle > config.json`, edit it, then run `boltzflow train config.json --out DIR`.
Any key can be overridden on the command line: `--set train.epochs=50 --set flow.config.hidden=[64,64]`.

DIR receives checkpoint.safetensors (resumable: re-run the same command after a kill; resuming with other data,
another architecture or other settings is refused), metrics.jsonl (every step's loss, gradient norm and
learning rate, one JSON object per line), config.json (the resolved config) and history.json (per-epoch
losses). Sample the result with `boltzflow sample DIR/checkpoint.safetensors`. Everything is checked before DIR
is created: a rejected config leaves nothing behind.

--device cuda trains on the GPU. Data-parallel on N processes (gloo, or NCCL with --device cuda; train.batch_size is
the global batch, rank 0 writes DIR): `torchrun --nproc-per-node N -m boltzflow train config.json --out DIR`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from boltzflow.errors import BoltzflowError
from boltzflow.runtime import add_device_argument

HELP = "train a flow on samples (NLL) from a JSON config"
DISTRIBUTED = True  # torchrun --nproc-per-node N -m boltzflow train ...: data-parallel
CHECKPOINT = "checkpoint.safetensors"


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
    p.add_argument("--out", help=f"output folder for {CHECKPOINT}, metrics.jsonl, config.json, history.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. train.epochs=50 (repeatable)")
    p.add_argument("--template", metavar="SYSTEM", help="print a config template for SYSTEM and exit")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_device_argument(p, "torch", "training")


def load_config(path: str, overrides: list[str]) -> dict[str, Any]:
    """The config file with ``--set`` overrides applied (one-line errors naming the file or key)."""
    from boltzflow.io import check_input_file
    from boltzflow.training.config import apply_overrides

    p = check_input_file(path, "config file")
    try:
        config = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BoltzflowError(f"config {p} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise BoltzflowError(f"config {p} must be a JSON object; see boltzflow train --template")
    missing = {"system", "data", "flow", "train"} - set(config)
    if missing:
        raise BoltzflowError(f"config {p} lacks sections {sorted(missing)}; see boltzflow train --template")
    if not isinstance(config["data"], str) or not all(isinstance(config[k], dict) for k in ("system", "flow",
                                                                                             "train")):
        raise BoltzflowError(f"config {p}: data must be a file name and system, flow and train JSON objects")
    return apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    if args.template:
        print(json.dumps(template(args.template), indent=2))
        return 0
    if not args.config or not args.out:
        raise BoltzflowError("give a config file and --out DIR (or --template SYSTEM)")
    import torch

    from boltzflow.io import check_output_dir, read_configurations
    from boltzflow.runtime import resolve_device
    from boltzflow.training import distributed

    check_output_dir(args.out)
    device = resolve_device(distributed.local_device(args.device))
    config = load_config(args.config, args.overrides)
    system, cfg, flow = _build(config, args.config)
    data_path = Path(config["data"])
    if not data_path.is_absolute():
        data_path = Path(args.config).parent / data_path
    x = read_configurations(data_path, system.dim, system.event_shape)
    main = distributed.init_from_env(str(device)).is_main
    with distributed.rank_output(args.out) as out:  # rank 0 writes --out, other ranks a scratch folder
        _train(args, config, cfg, flow.to(device), torch.as_tensor(x, dtype=next(flow.parameters()).dtype,
                                                                   device=device), out, main)
    return 0


def _train(args: argparse.Namespace, config: dict[str, Any], cfg: Any, flow: Any, x: Any, out: Path,
           main: bool) -> None:
    from boltzflow.io import save_json
    from boltzflow.training.loop import fit
    from boltzflow.training.losses import nll

    out.mkdir(parents=True, exist_ok=True)  # every check passed: only now does the run folder appear
    extra = {"flow_spec": config["flow"], "system": config["system"], "config": config}
    result = fit(flow, nll, x, cfg, out / CHECKPOINT, extra=extra, progress=main and not args.no_progress,
                 desc="nll")
    save_json(out / "config.json", {**config, "command": " ".join(["boltzflow", *sys.argv[1:]])})
    save_json(out / "history.json", {"history": result.history, "best_epoch": result.best_epoch,
                                     "best_val": result.best_val, "skipped_steps": result.skipped_steps})
    if main:
        print(f"best validation NLL {result.best_val:.4f} at epoch {result.best_epoch}; wrote {out / CHECKPOINT}")


def _build(config: dict[str, Any], path: str) -> tuple[Any, Any, Any]:
    """The system, training config and freshly initialised flow of a config (seeded, no global RNG change)."""
    import torch

    from boltzflow.flows.spec import build_flow
    from boltzflow.systems.registry import get_system
    from boltzflow.training.config import TrainConfig, from_dict

    system = get_system(config["system"])
    try:
        cfg = from_dict(TrainConfig, config["train"])
    except (TypeError, ValueError) as err:
        raise BoltzflowError(f"config {path}, section train: {' '.join(str(err).split())}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the initial weights follow train.seed; the caller's generator is restored
        try:
            flow = build_flow(config["flow"])
        except (ValueError, TypeError, KeyError, RuntimeError) as err:
            raise BoltzflowError(f"config {path}: cannot build the flow ({' '.join(str(err).split())})") from None
    if not any(p.requires_grad for p in flow.parameters()):
        raise BoltzflowError(f"config {path}: the flow has no trainable parameters (check flow.config, e.g. n_layers)")
    with torch.no_grad():
        x_dim = flow.sample(1, torch.Generator().manual_seed(0)).x.shape[-1]
    if x_dim != system.dim:
        raise BoltzflowError(f"config {path}: the flow makes {x_dim}-D samples but system "
                             f"{system.name} has dimension {system.dim}")
    return system, cfg, flow
