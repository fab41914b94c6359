"""Draw samples from a trained flow checkpoint, or from a shipped model by name.

`boltzflow sample alanine-dipeptide-bg -n 10000 --out s.npz` samples the shipped alanine dipeptide Boltzmann
generator from any folder; `boltzflow sample RUN/checkpoint.safetensors ...` samples a run of your own.

Writes an npz with `x` (configurations in the system's coordinates, shape (n, D)), `log_prob` (log q(x) of the
flow) and, where the checkpoint's system has an energy, `energy` (reduced, kT) and `log_w` (log importance
weights -u(x) - log q(x), unnormalised). For molecules it also writes `xyz` (shape (n, n_atoms, 3), nm, atom
order of the system's PDB) and the energy is the torch AMBER energy of those unconstrained coordinates. For flows
that remove the rigid-body motion (internal coordinates, aligned Cartesians) log q is the density of the reduced
coordinates, so log_w carries a constant offset; it cancels in self-normalised weights and ESS. Every option and
the output path are checked before sampling, and the file is written only when sampling succeeded.

Sharded sampling: `--shard K/N` (or, under `torchrun --nproc-per-node N -m boltzflow sample ...`, shard RANK of
WORLD_SIZE) makes --out a folder and writes `OUT/shard-KKKK-of-NNNN.npz`, the same arrays for shard K's share of
the -n samples (the first n % N shards take one more), drawn with a seed derived from (--seed, K) (shard 0 keeps
--seed), plus `shard` [K, N], `seed` and `n_total`. `boltzflow merge OUT` combines the shards' log weights by
logsumexp. The flow, the latent generator and the system's torch energy run on --device, batch by batch.
"""

from __future__ import annotations

import argparse
from typing import Any

from boltzflow.runtime import add_device_argument

HELP = "draw samples (x, log_prob, energy, log_w) from a checkpoint or a shipped model, whole or in shards"
DISTRIBUTED = True  # under torchrun every rank writes its own shard


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint file written by train or reproduce, or a shipped model's name "
                                      "(alanine-dipeptide-bg)")
    p.add_argument("-n", type=int, default=10_000, help="number of samples (default 10000)")
    p.add_argument("--out", required=True, help="output .npz file (its folder must exist)")
    p.add_argument("--seed", type=int, default=0, help="random seed >= 0 (default 0)")
    p.add_argument("--batch-size", type=int, default=65_536, help="samples per forward pass (default 65536)")
    p.add_argument("--weights", choices=["best", "last"], default="best",
                   help="best-validation (default) or last weights")
    p.add_argument("--shard", metavar="K/N", help="write shard K of N (0 <= K < N) into the folder --out; "
                                                  "torchrun ranks pick theirs")
    add_device_argument(p, "torch", "the flow and the system's torch energy")


def check_counts(**counts: tuple[int, int]) -> None:
    """Raise a one-line error naming the option when a count is below its minimum (``name=(value, minimum)``)."""
    from boltzflow.errors import BoltzflowError

    for name, (value, minimum) in counts.items():
        if value < minimum:
            option = ("-" if len(name) == 1 else "--") + name.replace("_", "-")
            raise BoltzflowError(f"{option} must be an integer >= {minimum}, got {value}")


def load_system(ckpt: dict[str, Any], path: str) -> Any:
    """The checkpoint's system, or None when it names none."""
    from boltzflow.errors import BoltzflowError
    from boltzflow.systems.registry import get_system

    if not ckpt.get("system"):
        return None
    try:
        return get_system(ckpt["system"])
    except ValueError as err:
        raise BoltzflowError(f"checkpoint {path}: {err}") from None


def run(args: argparse.Namespace) -> int:
    import torch

    from boltzflow.io import check_output_dir, check_output_file, save_npz
    from boltzflow.runtime import resolve_device
    from boltzflow.training.checkpoint import load_flow

    check_counts(n=(args.n, 1), batch_size=(args.batch_size, 1), seed=(args.seed, 0))
    shard = _shard(args)
    if shard is None:
        check_output_file(args.out)
    else:
        check_output_dir(args.out)
    device = resolve_device(_rank_device(args.device))
    flow, ckpt = load_flow(args.checkpoint, args.weights)
    system = load_system(ckpt, args.checkpoint)
    if shard is None:
        arrays = draw_samples(flow, system, args.n, args.batch_size, torch.Generator(device).manual_seed(args.seed),
                              args.checkpoint, device=device)
        save_npz(args.out, **arrays)
        print(f"wrote {args.n} samples to {args.out}")
        return 0
    return _write_shard(args, flow, system, ckpt, shard, device)


def _shard(args: argparse.Namespace) -> tuple[int, int] | None:
    """(K, N) from --shard or torchrun's RANK/WORLD_SIZE; None for one unsharded file."""
    from boltzflow.errors import BoltzflowError
    from boltzflow.eval.shards import parse_shard
    from boltzflow.training.distributed import env_ranks

    ranks = env_ranks()
    if args.shard is not None and ranks.world_size > 1:
        raise BoltzflowError("--shard and torchrun both choose the shard; give one of them")
    if args.shard is not None:
        return parse_shard(args.shard)
    return (ranks.rank, ranks.world_size) if ranks.world_size > 1 else None


def _rank_device(device: str | None) -> str | None:
    from boltzflow.training.distributed import local_device

    return local_device(device)


def _write_shard(args: argparse.Namespace, flow: Any, system: Any, ckpt: dict, shard: tuple[int, int],
                 device: Any) -> int:
    """Draw shard K's share of the samples with its derived seed and write OUT/shard-KKKK-of-NNNN.npz."""
    import json
    from pathlib import Path

    import numpy as np
    import torch

    from boltzflow.errors import BoltzflowError
    from boltzflow.eval.shards import shard_name, shard_sizes
    from boltzflow.io import save_npz
    from boltzflow.training.distributed import rank_seed

    k, n_shards = shard
    n = shard_sizes(args.n, n_shards)[k]
    if n == 0:
        raise BoltzflowError(f"-n {args.n} leaves shard {k} of {n_shards} empty; draw at least {n_shards} samples")
    seed = rank_seed(args.seed, k)
    arrays = draw_samples(flow, system, n, args.batch_size, torch.Generator(device).manual_seed(seed),
                          args.checkpoint, device=device)
    system_spec = json.dumps(ckpt.get("system")) if ckpt.get("system") else ""
    meta = {"shard": np.array([k, n_shards]), "seed": np.array(seed), "base_seed": np.array(args.seed),
            "n_total": np.array(args.n), "checkpoint": np.array(str(args.checkpoint)), "system": np.array(system_spec)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # every rank may create it; only now, after sampling succeeded
    save_npz(out / shard_name(k, n_shards), **arrays, **meta)
    print(f"wrote shard {k} of {n_shards} ({n} samples, seed {seed}) to {out / shard_name(k, n_shards)}")
    return 0


def draw_samples(flow: Any, system: Any, n: int, batch_size: int, gen: Any, name: str = "checkpoint",
                 on_batch: Any = None, device: Any = None) -> dict[str, Any]:
    """``n`` flow samples as written by ``boltzflow sample``: x (n, D), log_prob (n,) and, with a system's
    energy, energy (n,) kT and log_w (n,); xyz (n, n_atoms, 3) nm float32 for molecules.

    Args:
        flow: the flow (eval mode).
        system: the checkpoint's system, or None.
        n: number of samples; batch_size: samples per forward pass; gen: a ``torch.Generator`` on ``device``.
        name: the checkpoint's name for error messages.
        on_batch: called with the batch size after each batch (a progress bar's ``update``), or None.
        device: where the flow and the torch energy run, batch by batch (None: where the flow is); the arrays
            come back to the CPU.
    """
    import numpy as np
    import torch

    from boltzflow.errors import BoltzflowError

    energy = system.energy() if system is not None else None
    if device is not None:
        flow = flow.to(device)
        energy = energy.to(device) if energy is not None else None
    xs, lps, us = [], [], []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            s = flow.sample(min(batch_size, n - start), gen)
            x = s.x.double()
            xs.append(x.cpu())
            lps.append(s.log_prob.double().cpu())
            if not torch.isfinite(xs[-1]).all():
                raise BoltzflowError("the flow produced non-finite samples; the checkpoint may be broken")
            if system is not None and xs[-1].shape[1] != system.dim:
                raise BoltzflowError(f"checkpoint {name}: the flow makes {xs[-1].shape[1]}-D samples but its "
                                     f"system {system.name} has dimension {system.dim}")
            if energy is not None:
                us.append(energy.energy(x.unflatten(-1, system.event_shape)).double().cpu())
            if on_batch is not None:
                on_batch(len(xs[-1]))
    arrays = {"x": torch.cat(xs).numpy(), "log_prob": torch.cat(lps).numpy()}
    if energy is not None:
        arrays["energy"] = torch.cat(us).numpy()
        arrays["log_w"] = -arrays["energy"] - arrays["log_prob"]
    if system is not None and len(system.event_shape) == 2:
        arrays["xyz"] = arrays["x"].reshape(n, *system.event_shape).astype(np.float32)
    return arrays
