"""One short fit loop: minibatch Adam with validation, best-checkpoint selection and resumable checkpoints."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow
from boltzflow.training.checkpoint import read_checkpoint, save_checkpoint
from boltzflow.training.config import TrainConfig

LossFn = Callable[[Flow, Tensor], Tensor]


class FitResult(NamedTuple):
    """Outcome of :func:`fit`.

    Attributes:
        history: per-epoch dicts (epoch, train_loss, val_loss, lr, skipped_steps, seconds).
        best_epoch: epoch whose weights the flow holds at return.
        best_val: validation loss of those weights.
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


def split_data(x: Tensor, val_fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random train/validation split of the rows of ``x``."""
    perm = torch.randperm(len(x), generator=generator)
    n_val = int(round(val_fraction * len(x)))
    return x[perm[n_val:]], x[perm[:n_val]]


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Learning-rate multiplier at the start of ``epoch`` (0-based)."""
    if cfg.lr_schedule == "constant":
        return 1.0
    if cfg.lr_schedule == "step":
        return 0.5 ** (4 * epoch // max(cfg.epochs, 1))
    progress = epoch / max(cfg.epochs - 1, 1)
    f = cfg.lr_final_fraction
    return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * progress))


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
    """Train ``flow`` on ``data`` by minimising ``loss_fn(flow, batch)``.

    Deterministic for a given ``cfg.seed`` (CPU). If ``checkpoint`` exists it must come from the same setup and
    training resumes after its last completed epoch (config, optimiser and RNG states restored); otherwise a new
    one is written every ``cfg.checkpoint_every`` epochs. At return the flow holds the weights with the lowest
    validation loss (with ``val_fraction`` 0: the lowest epoch-mean training loss).

    Args:
        flow: model to train (modified in place).
        loss_fn: ``(flow, batch (b, D)) -> scalar``, e.g. :func:`boltzflow.training.losses.nll`.
        data: training data, shape (n, D), in the flow's dtype.
        cfg: optimisation settings.
        checkpoint: path of the resumable checkpoint, or None.
        extra: stored in the checkpoint as is (flow spec, system, data provenance, ...).
        progress: show a progress bar.
        desc: progress-bar label.
    """
    extra = dict(extra or {})
    if not torch.isfinite(data).all():
        raise BoltzflowError("training data contain NaN or inf values; clean the data first")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    train, val = split_data(data, cfg.val_fraction, gen)
    if len(train) == 0:
        raise BoltzflowError(f"no training data left after the validation split of {len(data)} points")
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "history": [], "best_val": math.inf, "best_epoch": -1, "best_model": None, "skipped": 0}
    if checkpoint is not None and Path(checkpoint).exists():
        state = _resume(checkpoint, flow, opt, gen, cfg, extra.get("flow_spec"))
    t0 = time.perf_counter()
    bar = tqdm(range(state["epoch"], cfg.epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, epoch)
        t_epoch = time.perf_counter()
        train_loss, skipped = _train_epoch(flow, loss_fn, train, cfg, opt, gen)
        val_loss = _evaluate(flow, loss_fn, val, cfg.batch_size) if len(val) else train_loss
        state["skipped"] += skipped
        state["history"].append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": opt.param_groups[0]["lr"],
             "skipped_steps": skipped, "seconds": time.perf_counter() - t_epoch}
        )
        if math.isfinite(val_loss) and val_loss < state["best_val"]:
            state.update(best_val=val_loss, best_epoch=epoch, best_model=copy.deepcopy(flow.state_dict()))
        state["epoch"] = epoch + 1
        bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if checkpoint is not None and (state["epoch"] % cfg.checkpoint_every == 0 or state["epoch"] == cfg.epochs):
            _save(checkpoint, flow, opt, gen, cfg, state, extra)
    bar.close()
    if state["best_model"] is not None:
        flow.load_state_dict(state["best_model"])
    return FitResult(state["history"], state["best_epoch"], state["best_val"], state["skipped"],
                     time.perf_counter() - t0)


def _train_epoch(
    flow: Flow, loss_fn: LossFn, train: Tensor, cfg: TrainConfig, opt: torch.optim.Optimizer, gen: torch.Generator
) -> tuple[float, int]:
    flow.train()
    perm = torch.randperm(len(train), generator=gen)
    total, count, skipped = 0.0, 0, 0
    for start in range(0, len(train), cfg.batch_size):
        batch = train[perm[start : start + cfg.batch_size]]
        loss = loss_fn(flow, batch)
        if not torch.isfinite(loss):
            skipped += 1  # guard: a non-finite loss never reaches the weights
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(flow.parameters(), max_norm)
        if not torch.isfinite(grad_norm):
            opt.zero_grad(set_to_none=True)
            skipped += 1
            continue
        opt.step()
        total += float(loss.detach()) * len(batch)
        count += len(batch)
    return (total / count if count else math.nan), skipped


@torch.no_grad()
def _evaluate(flow: Flow, loss_fn: LossFn, data: Tensor, batch_size: int) -> float:
    flow.eval()
    total = 0.0
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size]
        total += float(loss_fn(flow, batch)) * len(batch)
    return total / len(data)


def _save(path: str | Path, flow: Flow, opt: torch.optim.Optimizer, gen: torch.Generator, cfg: TrainConfig,
          state: dict[str, Any], extra: dict[str, Any]) -> None:
    payload = {
        **extra,
        "train_config": asdict(cfg),
        "model": flow.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {"generator": gen.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state()},
        **{k: state[k] for k in ("epoch", "history", "best_val", "best_epoch", "best_model", "skipped")},
    }
    save_checkpoint(path, payload)


def _resume(path: str | Path, flow: Flow, opt: torch.optim.Optimizer, gen: torch.Generator,
            cfg: TrainConfig, flow_spec: dict[str, Any] | None) -> dict[str, Any]:
    ckpt = read_checkpoint(path)
    saved = ckpt.get("train_config")
    if saved is None or "optimizer" not in ckpt:
        raise BoltzflowError(f"{path} holds no training state to resume from")
    if flow_spec is not None and ckpt.get("flow_spec") != flow_spec:
        raise BoltzflowError(f"checkpoint {path} holds a different flow architecture; use a new output folder")
    differs = {k for k, v in asdict(cfg).items() if saved.get(k) != v and k != "epochs"}
    if differs:
        raise BoltzflowError(
            f"checkpoint {path} was written with different training settings ({sorted(differs)}); "
            "use a new output folder or the same settings"
        )
    try:
        flow.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise BoltzflowError(f"checkpoint {path} does not match this model: {err}") from None
    gen.set_state(ckpt["rng"]["generator"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    np.random.set_state(ckpt["rng"]["numpy"])
    return {k: ckpt[k] for k in ("epoch", "history", "best_val", "best_epoch", "best_model", "skipped")}
