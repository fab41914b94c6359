"""One epoch of a training stage: the optimiser steps over a source's batches, the validation score, the best
weights, the reporters (the parts of :func:`boltzflow.training.loop.train` that repeat every epoch).

A step is skipped, its gradient dropped, when the loss or the gradient is not finite; an epoch whose steps were
all skipped fails in one line. Under torchrun the gradients are averaged over the ranks after backward
(:func:`boltzflow.training.distributed.average_gradients`), so every rank takes the same step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow
from boltzflow.training import distributed
from boltzflow.training.config import TrainConfig
from boltzflow.training.losses import StepContext, call_loss
from boltzflow.training.reporters import Reporter
from boltzflow.training.sources import Generators, Source, batch_length

LossFn = Callable[..., Tensor]


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Learning-rate multiplier at the start of ``epoch`` (0-based)."""
    if cfg.lr_schedule == "constant":
        return 1.0
    if cfg.lr_schedule == "step":
        return 0.5 ** (4 * epoch // max(cfg.epochs, 1))
    progress = epoch / max(cfg.epochs - 1, 1)
    f = cfg.lr_final_fraction
    return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * progress))


class StageRun:
    """The pieces of one stage, and one epoch of it."""

    def __init__(self, flow: Flow, loss_fn: LossFn, source: Source, cfg: TrainConfig, opt: torch.optim.Optimizer,
                 gens: Generators, stage: str, reporters: list[Reporter],
                 ranks: distributed.Ranks | None = None) -> None:
        self.flow, self.loss_fn, self.source, self.cfg, self.opt = flow, loss_fn, source, cfg, opt
        self.gens, self.stage, self.reporters, self.ranks = gens, stage, reporters, ranks
        self.rows = 0  # rows of the last step's (global) batch

    def epoch(self, epoch: int, state: dict[str, Any]) -> None:
        """Train one epoch, score it, keep the best weights, report; updates ``state`` in place."""
        lr = self.cfg.lr * lr_factor(self.cfg, epoch)
        for group in self.opt.param_groups:
            group["lr"] = lr
        t = time.perf_counter()
        total, count, steps, skipped = 0.0, 0, 0, 0
        self.flow.train()
        for batch in self.source.batches(self.flow, self.gens):
            record = self.step(batch, StepContext(state["step"], epoch, self.stage, self.gens.samples, {}), lr)
            state["step"] += 1
            steps += 1
            if record["skipped"]:
                skipped += 1
            else:
                total += record["loss"] * self.rows
                count += self.rows
        if steps and skipped == steps:
            raise BoltzflowError(
                f"stage {self.stage!r}: all {steps} steps of epoch {epoch} were skipped (non-finite loss or "
                f"gradient); lower the learning rate (lr={self.cfg.lr:g}) or check the data and the energy"
            )
        train_loss = total / count if count else math.nan
        val_batches = self.source.validation_batches()
        val_loss = self.validate(val_batches, epoch, state["step"]) if val_batches else train_loss
        state["skipped"] += skipped
        summary = {"stage": self.stage, "epoch": epoch, "step": state["step"], "train_loss": train_loss,
                   "val_loss": val_loss, "lr": lr, "steps": steps, "skipped_steps": skipped,
                   "seconds": time.perf_counter() - t}
        state["history"].append({k: v for k, v in summary.items() if k not in ("stage", "step")})
        if not self.source.keep_best:
            state.update(best_val=val_loss, best_epoch=epoch)
        elif math.isfinite(val_loss) and val_loss < state["best_val"]:
            state.update(best_val=val_loss, best_epoch=epoch, best_model=copy.deepcopy(self.flow.state_dict()))
        state["epoch"] = epoch + 1
        for r in self.reporters:
            r.epoch(summary)

    def step(self, batch: Any, ctx: StepContext, lr: float) -> dict[str, Any]:
        """One optimiser step (skipped, with the gradient dropped, when the loss or its gradient is not finite)."""
        if self.ranks is None:
            loss = call_loss(self.loss_fn, self.flow, batch, ctx)
            value, finite, self.rows = float(loss.detach()), bool(torch.isfinite(loss)), batch_length(batch)
            if finite:  # guard: a non-finite loss never reaches the weights
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
        else:
            value, finite = self.distributed_backward(batch, ctx)
        record = {"stage": ctx.stage, "epoch": ctx.epoch, "step": ctx.step, "loss": value, "lr": lr,
                  "grad_norm": math.nan, "skipped": True, **ctx.metrics}
        if finite:
            max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(self.flow.parameters(), max_norm)
            record["grad_norm"] = float(grad_norm)
            if torch.isfinite(grad_norm):
                self.opt.step()
                record["skipped"] = False
            else:
                self.opt.zero_grad(set_to_none=True)
        for r in self.reporters:
            r.step(record)
        return record

    def distributed_backward(self, batch: Any, ctx: StepContext) -> tuple[float, bool]:
        """This rank's backward pass, then the gradients averaged over the ranks: ``(global loss, finite)``."""
        self.opt.zero_grad(set_to_none=True)
        rows = batch_length(batch)
        loss = call_loss(self.loss_fn, self.flow, batch, ctx) if rows else None
        if loss is not None and torch.isfinite(loss):
            loss.backward()
        elif loss is not None:  # a non-finite loss here makes the global loss non-finite: every rank skips
            loss = loss.detach()
        value, self.rows = distributed.average_gradients(self.flow.parameters(), loss, rows)
        finite = math.isfinite(value)
        if not finite:
            self.opt.zero_grad(set_to_none=True)
        return value, finite

    @torch.no_grad()
    def validate(self, batches: list[Any], epoch: int, step: int) -> float:
        """Row-weighted mean loss over the validation batches, in eval mode."""
        self.flow.eval()
        total, count = 0.0, 0
        for batch in batches:
            if batch_length(batch) == 0:  # a rank's empty share of a short batch
                continue
            ctx = StepContext(step, epoch, self.stage, self.gens.samples, {})
            total += float(call_loss(self.loss_fn, self.flow, batch, ctx)) * batch_length(batch)
            count += batch_length(batch)
        if self.ranks is not None:
            total, count = distributed.sum_over_ranks([total, count], next(self.flow.parameters()))
        return total / count
