"""Merge the shards that `boltzflow sample --shard K/N` (or sample under torchrun) wrote into one folder.

    boltzflow sample MODEL -n 100000 --shard 0/4 --out shards/   # ... and 1/4, 2/4, 3/4, anywhere
    boltzflow merge shards/ --out merged.npz --json summary.json

Every shard must be there (shard-KKKK-of-NNNN.npz for K = 0 ... N-1, one N), drawn from the same checkpoint with
the same --seed and -n. The log weights are combined by logsumexp over per-shard sums (boltzflow.eval.shards), so
the printed ESS, ESS fraction, log Z estimate and the reweighted means (± delta-method standard error) of the
system's real-valued observables equal those of one file holding every sample. --out writes that file: the
shards' x, log_prob, energy, log_w (and xyz) concatenated in shard order. Nothing is written when a check fails.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from boltzflow.errors import BoltzflowError
from boltzflow.runtime import add_device_argument

HELP = "merge sample shards: ESS, log Z and reweighted observables by logsumexp; optionally one concatenated npz"
PER_SAMPLE = ("x", "log_prob", "energy", "log_w", "xyz")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="folder holding shard-KKKK-of-NNNN.npz files")
    p.add_argument("--out", help="write the concatenated samples to this .npz (its folder must exist)")
    p.add_argument("--json", dest="json_out", help="write the summary as JSON here (its folder must exist)")
    add_device_argument(p, "none")


def read_shards(folder: str | Path) -> list[dict[str, Any]]:
    """The shards of ``folder`` in order, checked to be complete and of one sampling run.

    Raises:
        BoltzflowError: no shards, a missing or foreign shard, or shards of different runs.
    """
    from boltzflow.eval.shards import SHARD_FILE
    from boltzflow.io import read_npz

    root = Path(folder)
    if not root.is_dir():
        raise BoltzflowError(f"{root} is not a folder of shards (shard-KKKK-of-NNNN.npz)")
    found = {(int(m[1]), int(m[2])): p for p in sorted(root.iterdir()) if (m := SHARD_FILE.match(p.name))}
    if not found:
        raise BoltzflowError(f"{root} holds no shard-KKKK-of-NNNN.npz files")
    counts = sorted({n for _, n in found})
    if len(counts) != 1:
        raise BoltzflowError(f"{root} mixes shards of runs split {counts} ways; keep one run per folder")
    n = counts[0]
    missing = [k for k in range(n) if (k, n) not in found]
    if missing:
        raise BoltzflowError(f"{root}: shard(s) {missing} of {n} are missing")
    shards = [read_npz(found[k, n], "shard") for k in range(n)]
    for k, s in enumerate(shards):
        if "log_w" not in s or "shard" not in s:
            raise BoltzflowError(f"{found[k, n]} holds no log weights or shard index; write it with "
                                 "boltzflow sample --shard on a checkpoint whose system has an energy")
    for key in ("base_seed", "n_total", "checkpoint", "system"):
        values = {str(s[key]) for s in shards if key in s}
        if len(values) > 1:
            raise BoltzflowError(f"{root}: the shards differ in {key} ({sorted(values)}); they are not one run")
    return shards


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from boltzflow.eval.shards import merge_moments, merge_weight_stats, moment_stats, weight_stats
    from boltzflow.io import check_output_file, save_json, save_npz

    for path in (args.out, args.json_out):
        if path:
            check_output_file(path)
    shards = read_shards(args.folder)
    log_ws = [torch.as_tensor(s["log_w"], dtype=torch.float64) for s in shards]
    weights = merge_weight_stats([weight_stats(lw) for lw in log_ws])
    summary: dict[str, Any] = {"folder": str(args.folder), "shards": len(shards), "n": weights.n,
                               "n_dropped": weights.n_dropped, "ess": weights.ess,
                               "ess_fraction": weights.ess_fraction, "log_z": weights.log_z,
                               "log_z_stderr": weights.log_z_stderr, "observables": {}}
    system = _system(shards[0])
    if system is not None:
        for name, obs in system.observables().items():
            values = [obs.fn(torch.as_tensor(s["x"]).unflatten(-1, system.event_shape)) for s in shards]
            if not values[0].dtype.is_floating_point:
                continue  # labels (basins, modes): a mean of indices means nothing
            est = merge_moments([moment_stats(v, lw) for v, lw in zip(values, log_ws, strict=True)])
            summary["observables"][name] = {"unit": obs.unit, "mean": est.mean.tolist(),
                                            "stderr": est.stderr.tolist()}
    print(json.dumps(summary, indent=2))
    if args.out:
        keys = [k for k in PER_SAMPLE if all(k in s for s in shards)]
        save_npz(args.out, **{k: np.concatenate([s[k] for s in shards]) for k in keys})
    if args.json_out:
        save_json(args.json_out, summary)
    return 0


def _system(shard: dict[str, Any]) -> Any:
    """The shard's system (from the spec the sample command stored), or None."""
    from boltzflow.systems.registry import get_system

    spec = str(shard.get("system", ""))
    if not spec:
        return None
    try:
        return get_system(json.loads(spec))
    except (ValueError, json.JSONDecodeError) as err:
        raise BoltzflowError(f"shard system {spec!r}: {err}") from None
