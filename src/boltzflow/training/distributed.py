"""Data-parallel training over processes with ``torch.distributed``: torchrun's environment, per-rank seeds,
gradient averaging, rank-0 writing and a clean exit.

    torchrun --nproc-per-node 2 -m boltzflow run recipe.toml --out runs/ddp

:func:`init_from_env` joins the process group that torchrun describes in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): gloo on the CPU, NCCL on CUDA, each rank on
``cuda:LOCAL_RANK``. Without torchrun it does nothing and everything runs as before, bit for bit.

The training loop (:func:`boltzflow.training.loop.train`) asks :func:`active` whether it runs on several ranks.
If so:

* every rank starts from rank 0's weights (:func:`broadcast_module`); the shuffle generator has the same seed on
  every rank (all ranks walk the same permutation, as ``DistributedSampler`` does with its shared seed) and the
  sample generators get per-rank seeds (:func:`rank_seed`; rank 0 keeps the run's seed);
* the source serves each rank its part of every global batch (``Source.shard``): rows ``r::N`` of a dataset
  batch, ``batch_size / N`` flow samples;
* after the local backward pass :func:`average_gradients` sums, in one all-reduce, the row-weighted loss, the
  row counts and the row-weighted gradients, so every rank holds the gradient of the global batch mean. With
  equal shares this is DDP's average; for a last, uneven batch it is still the global mean. Every rank then
  takes the same decision (skip a non-finite step, clip, step), so the weights never drift apart;
* rank 0 alone writes checkpoints and the metrics log; a checkpoint holds every rank's generator states
  (:func:`gather_states`), and on resume every rank reads rank 0's file.

Why not ``torch.nn.parallel.DistributedDataParallel``: its gradient hooks are armed by the wrapper's
``forward()``, while our losses call ``flow.log_prob`` and ``flow.sample``; and DDP all-reduces inside
``backward()``, so a rank that skips a step with a non-finite loss would leave the others waiting. Averaging by
hand after backward is one flat all-reduce per step (the small flows here fit in one bucket) and keeps the
skip decision collective.

Never hanging: collectives time out after ``BOLTZFLOW_DIST_TIMEOUT`` seconds (default 600), a failing rank
exits non-zero (torchrun then stops the others) and :func:`cleanup` runs at exit without a barrier.

Limits: the replay buffer is not split (it refuses); samples a loss draws itself (the mixed loss's ``kl_batch``)
are drawn on every rank, so their global count is ``N * kl_batch``; the extra per-step metrics a loss reports
(``ctx.metrics``) are rank 0's own; a recipe's evaluation runs on every rank (the others write into a scratch
folder), so only training is faster; and a wall-clock deadline (alanine-cartesian ``deadline_minutes``) is judged
by each rank alone and must not be used under torchrun.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError

ENV_TIMEOUT = "BOLTZFLOW_DIST_TIMEOUT"


class Ranks(NamedTuple):
    """This process's place among the training processes.

    Attributes:
        rank: global rank, 0 ... world_size - 1.
        world_size: number of processes.
        local_rank: rank on this machine (the CUDA device index under torchrun).
    """

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one that writes."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BoltzflowError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def env_ranks() -> Ranks:
    """Ranks from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process without it."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise BoltzflowError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process group")
    return Ranks(rank, world, _env_int("LOCAL_RANK", rank))


def active() -> Ranks | None:
    """The ranks when a process group of more than one process is initialised, else None (one process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    world = torch.distributed.get_world_size()
    if world == 1:
        return None
    return Ranks(torch.distributed.get_rank(), world, _env_int("LOCAL_RANK", torch.distributed.get_rank()))


def is_main() -> bool:
    """True unless this is a non-zero rank of an active process group."""
    ranks = active()
    return ranks is None or ranks.is_main


def local_device(device: str | None) -> str | None:
    """``--device`` for this rank: ``cuda`` without an index becomes ``cuda:LOCAL_RANK`` under torchrun."""
    if device == "cuda" and env_ranks().world_size > 1:
        return f"cuda:{env_ranks().local_rank}"
    return device


def init_from_env(device: str | None = None) -> Ranks:
    """Join the process group torchrun describes (nothing to do for one process).

    Args:
        device: the run's ``--device``; a CUDA device selects NCCL (and this rank's GPU), anything else gloo.

    Raises:
        BoltzflowError: a malformed torchrun environment.
    """
    ranks = env_ranks()
    if ranks.world_size == 1 or torch.distributed.is_initialized():
        return ranks
    cuda = device is not None and str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(ranks.local_rank)
    timeout = datetime.timedelta(seconds=_env_int(ENV_TIMEOUT, 600))
    torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    atexit.register(cleanup)
    return ranks


def cleanup() -> None:
    """Leave the process group (no barrier: a peer that died must not keep this one waiting)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        with contextlib.suppress(Exception):
            torch.distributed.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own random streams: ``seed`` itself on rank 0 (so a one-process run is
    unchanged), else a 63-bit seed derived from ``(seed, rank)`` by NumPy's ``SeedSequence``."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0] >> 1)


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank, in place."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(t.data, src=0)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(params: Iterable[Tensor], loss: Tensor | None, rows: int) -> tuple[float, int]:
    """Replace each rank's gradients by the row-weighted mean over all ranks, in one all-reduce.

    Call after ``loss.backward()`` (or, with no rows on this rank, without a loss). A parameter keeps
    ``grad = None`` only when it has no gradient on any rank.

    Args:
        params: the model's parameters (on one device).
        loss: this rank's mean loss over its ``rows`` rows (None when ``rows`` is 0).
        rows: rows of this rank's batch.

    Returns:
        ``(mean loss over the global batch, global rows)``; the loss is nan when any rank's loss is not finite.
    """
    params = list(params)
    ref = params[0]
    local = ref.new_zeros(2 + len(params) + sum(p.numel() for p in params))
    if loss is not None and rows:
        local[0] = loss.detach().to(local.dtype) * rows
    local[1] = rows
    offset = 2 + len(params)
    for i, p in enumerate(params):
        if p.grad is not None:
            local[2 + i] = 1.0
            local[offset : offset + p.numel()] = p.grad.reshape(-1).to(local.dtype) * rows
        offset += p.numel()
    torch.distributed.all_reduce(local)
    total = int(local[1].item())
    offset = 2 + len(params)
    for i, p in enumerate(params):
        if local[2 + i] > 0:
            p.grad = (local[offset : offset + p.numel()] / max(total, 1)).reshape(p.shape).to(p.dtype)
        offset += p.numel()
    return float(local[0] / max(total, 1)), total


def sum_over_ranks(values: list[float], like: Tensor) -> list[float]:
    """Elementwise sums of ``values`` over all ranks (one all-reduce on ``like``'s device, float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=like.device)
    torch.distributed.all_reduce(t)
    return [float(v) for v in t]


def gather_states(generators: dict[str, torch.Generator | None]) -> dict[str, Tensor]:
    """Every rank's generator states, as ``{"NAME@RANK": uint8 state}`` for ranks >= 1 (a collective).

    Args:
        generators: name -> generator (None: torch's global CPU generator).
    """
    mine = {k: (torch.get_rng_state() if g is None else g.get_state()).cpu() for k, g in generators.items()}
    everyone: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, mine)
    return {f"{k}@{r}": v for r, states in enumerate(everyone) if r > 0 for k, v in states.items()}


def restore_states(rng: dict[str, Tensor], generators: dict[str, torch.Generator | None], rank: int,
                   path: Path) -> None:
    """Set this rank's generators from a checkpoint's ``rng`` group (rank 0's states are the plain names).

    Raises:
        BoltzflowError: the checkpoint holds no states for this rank.
    """
    if rank == 0:
        return
    for name, gen in generators.items():
        key = f"{name}@{rank}"
        if key not in rng:
            raise BoltzflowError(f"checkpoint {path} holds no generator state of rank {rank}; resume it with the "
                                 "number of processes that wrote it")
        if gen is None:
            torch.set_rng_state(rng[key])
        else:
            gen.set_state(rng[key])


@contextlib.contextmanager
def rank_output(out: str | Path) -> Iterator[Path]:
    """``out`` on rank 0 (or for one process); a scratch folder, removed afterwards, on the other ranks, so
    rank 0 alone writes the run's files while every rank runs the same code."""
    if is_main() and env_ranks().is_main:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix=f"boltzflow-rank{env_ranks().rank}-") as tmp:
        yield Path(tmp) / "run"
