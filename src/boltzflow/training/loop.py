"""One short training loop fed by a batch source, with reporters and safe, resumable checkpoints.

:func:`train` runs one stage: for each epoch it takes the batches of a source
(:mod:`boltzflow.training.sources`: a dataset, the flow's own samples, a replay buffer), calls
``loss(flow, batch, ctx)`` (or ``loss(flow, batch)``, :func:`~boltzflow.training.losses.call_loss`), and takes an
Adam step unless the loss or the gradient is not finite. After each epoch it scores the source's validation
batches, keeps the best weights if the source asks for it, tells the reporters and writes a checkpoint.

Randomness comes from generators the loop owns, seeded from ``cfg.seed``: one for permutations and splits, one
(on the flow's device) for flow samples, handed to losses as ``ctx.generator``. Losses written before the
context existed may still draw from torch's global generator; for them the loop forks the global CPU generator
on entry (``torch.random.fork_rng``), starts it from ``cfg.seed``, checkpoints it and gives the caller's state
back on exit. So the loop leaves no global RNG state or default dtype behind, and a killed run resumes bit for
bit on CPU. Both streams start where torch's global generator stood after ``torch.manual_seed(cfg.seed)``, the
state the loop used before it owned its generators, so older runs are reproduced exactly.

:func:`fit` is the data-tensor front end: a :class:`~boltzflow.training.sources.DatasetSource` with
``cfg.batch_size`` and ``cfg.val_fraction``, best epoch by validation loss, a progress bar and, beside the
checkpoint, ``metrics.jsonl``.

Under torchrun (:mod:`boltzflow.training.distributed`) the same loop trains data-parallel: each rank takes its part
of every global batch, gradients are averaged over the ranks after backward, every rank takes the same step, the
sample generators get per-rank seeds and rank 0 alone writes checkpoints and logs. One process runs as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow
from boltzflow.training import distributed
from boltzflow.training.checkpoint import read_checkpoint, restore_training_state, save_training_state
from boltzflow.training.config import TrainConfig
from boltzflow.training.reporters import MetricsLog, ProgressBar, Reporter, StageInfo
from boltzflow.training.sources import DatasetSource, Generators, Source
from boltzflow.training.stage_run import LossFn, StageRun, lr_factor


class FitResult(NamedTuple):
    """Outcome of :func:`train` and :func:`fit`.

    Attributes:
        history: per-epoch dicts (epoch, train_loss, val_loss, lr, steps, skipped_steps, seconds).
        best_epoch: epoch whose weights the flow holds at return.
        best_val: validation loss of those weights (training loss where the source has no validation data).
        skipped_steps: optimiser steps skipped because the loss or gradient was not finite.
        seconds: wall time of this call (excluding earlier, resumed runs).
    """

    history: list[dict[str, float]]
    best_epoch: int
    best_val: float
    skipped_steps: int
    seconds: float

    @property
    def train_seconds(self) -> float:
        """Training time summed over every epoch, across resumed runs."""
        return float(sum(h["seconds"] for h in self.history))


def fit(
    flow: Flow,
    loss_fn: LossFn,
    data: Tensor,
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train ``flow`` on ``data`` by minimising ``loss_fn``; :func:`train` with a dataset source.

    At return the flow holds the weights with the lowest validation loss (with ``val_fraction`` 0: the lowest
    epoch-mean training loss). With a ``checkpoint``, every step's metrics go to ``metrics.jsonl`` in its folder
    (stage ``desc``).

    Args:
        flow: model to train (modified in place).
        loss_fn: ``(flow, batch (b, D)[, ctx]) -> scalar``, e.g. :func:`boltzflow.training.losses.nll`.
        data: training data, shape (n, D), in the flow's dtype.
        cfg: optimisation settings (``batch_size`` and ``val_fraction`` shape the dataset source).
        checkpoint: path of the resumable checkpoint, or None.
        extra: JSON-serialisable entries stored in the checkpoint (flow spec, system, data provenance, ...).
        progress: show a progress bar.
        desc: stage name (progress-bar label, ``ctx.stage``, metrics-log stage).
    """
    source = DatasetSource(data, cfg.batch_size, cfg.val_fraction, keep_best=True)
    reporters: list[Reporter] = [ProgressBar(desc, disable=not progress)]
    if checkpoint is not None:
        reporters.append(MetricsLog(Path(checkpoint).parent / "metrics.jsonl"))
    return train(flow, loss_fn, source, cfg, checkpoint=checkpoint, extra=extra, reporters=reporters, stage=desc)


def train(
    flow: Flow,
    loss_fn: LossFn,
    source: Source,
    cfg: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    extra: dict[str, Any] | None = None,
    reporters: Sequence[Reporter] = (),
    stage: str = "train",
) -> FitResult:
    """Run one training stage of ``cfg.epochs`` epochs over ``source``'s batches (resumable).

    If ``checkpoint`` exists it must come from the same setup (training settings except ``epochs``, flow
    architecture, source fingerprint) and training resumes after its last completed epoch; otherwise one is
    written every ``cfg.checkpoint_every`` epochs and after the last.

    Args:
        flow: model to train (modified in place); its parameters' device is where samples are drawn.
        loss_fn: ``(flow, batch, ctx) -> scalar`` or ``(flow, batch) -> scalar``.
        source: where the batches come from.
        cfg: optimisation settings (``batch_size``/``val_fraction`` are the source's business here).
        checkpoint: path of the resumable checkpoint, or None.
        extra: JSON-serialisable entries stored in the checkpoint (``flow_spec`` makes it loadable).
        reporters: progress bar, metrics log, ...
        stage: name passed to the loss (``ctx.stage``) and the reporters.

    Raises:
        BoltzflowError: every step of an epoch was skipped, no epoch had a finite loss to keep, or the
            checkpoint belongs to another setup.
    """
    extra = dict(extra or {})
    path = None if checkpoint is None else Path(checkpoint)
    params = list(flow.parameters())
    if not params:
        raise ValueError("the flow has no parameters to train")
    device = params[0].device
    ranks = distributed.active()
    own_seed = cfg.seed
    if ranks is not None:  # data-parallel: rank 0's weights and checkpoint path, this rank's share of the batches
        distributed.broadcast_module(flow)
        source.shard(ranks.rank, ranks.world_size)
        path = None if path is None else Path(distributed.broadcast_object(str(path)))
        reporters = reporters if ranks.is_main else ()
        own_seed = distributed.rank_seed(cfg.seed, ranks.rank)
    gens = Generators(torch.Generator().manual_seed(cfg.seed),
                      torch.Generator(device=device).manual_seed(own_seed))
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(torch.Generator().manual_seed(own_seed).get_state())  # for context-free losses
        source.start(gens)
        state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best_val": math.inf, "best_epoch": -1,
                                 "skipped": 0, "best_model": None}
        resume = path is not None and path.exists()
        if ranks is not None:
            resume = distributed.broadcast_object(resume)
        if resume:
            state = restore_training_state(path, flow, opt, gens, source, cfg, extra.get("flow_spec"))
            if ranks is not None:
                distributed.restore_states(read_checkpoint(path)["rng"], _rank_generators(gens), ranks.rank, path)
        run = StageRun(flow, loss_fn, source, cfg, opt, gens, stage, list(reporters), ranks)
        for r in run.reporters:
            r.start(StageInfo(stage, state["epoch"], state["step"], cfg.epochs))
        try:
            for epoch in range(state["epoch"], cfg.epochs):
                run.epoch(epoch, state)
                if path is not None and (state["epoch"] % cfg.checkpoint_every == 0 or state["epoch"] == cfg.epochs):
                    others = None if ranks is None else distributed.gather_states(_rank_generators(gens))
                    if ranks is None or ranks.is_main:
                        save_training_state(path, flow, opt, gens, source, cfg, stage, state, extra, others)
        finally:
            for r in run.reporters:
                r.close()
    if not math.isfinite(state["best_val"]):
        raise BoltzflowError(
            f"stage {stage!r}: no epoch reached a finite {'validation ' if source.keep_best else ''}loss "
            f"(best {state['best_val']} at epoch {state['best_epoch']}); lower the learning rate (lr={cfg.lr:g})"
        )
    if state["best_model"] is not None:
        flow.load_state_dict(state["best_model"])
    return FitResult(state["history"], state["best_epoch"], state["best_val"], state["skipped"],
                     time.perf_counter() - t0)


def _rank_generators(gens: Generators) -> dict[str, torch.Generator | None]:
    """The streams that differ between ranks (None: the forked global generator)."""
    return {"samples": gens.samples, "global": None}


__all__ = ["FitResult", "LossFn", "fit", "lr_factor", "train"]
