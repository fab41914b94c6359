"""Training and sampling for the Cartesian alanine experiment (paper 001 §6.3) on any torch device, with a deadline.

* :func:`resolve_device`: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` -> ``torch.device``, or a one-line error.
* :func:`train_model`: one model of Table 2 (``nll``, ``penalty``, ``penalty_sum``, ``anneal``, ``smooth``),
  resumable from ``DIR/checkpoints/<model>.pt``. The flow and the training data are moved to the device before
  :func:`~boltzflow.training.loop.fit` is called (the loop itself moves nothing); checkpoints hold CPU-loadable
  tensors (``read_checkpoint`` maps to the CPU).
* :class:`StopAtDeadline`: a loss wrapper that ends training at an epoch boundary once a wall-clock deadline has
  passed, so that a run on a borrowed machine with a hard time limit still scores the last completed epoch and
  says how far it got. The loop is not changed for this: the wrapper raises :class:`DeadlineReached` at the first
  training call of an epoch that would start after the deadline, when the previous epoch's checkpoint is
  already written, and the model is then read back from that checkpoint.
* :func:`sample`, :func:`sample_rejected`: samples drawn on the flow's device with a generator of that device
  (so CUDA samples differ from CPU samples of the same seed), returned as (n, 22, 3) float64 arrays in nm.

Why a wrapper rather than an option of the loop: the loop is shared by every experiment; a loss that raises is a
seam it already has (any exception leaves the last checkpoint intact), and the deadline is this experiment's need.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.experiments.runner import seeded
from boltzflow.flows.flow import Flow
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.systems import alanine_cartesian as ac
from boltzflow.training import penalties as P
from boltzflow.training.checkpoint import read_checkpoint
from boltzflow.training.loop import fit
from boltzflow.training.losses import nll

if TYPE_CHECKING:
    from boltzflow.experiments.cartesian_config import CartesianScale

# The order fixes each model's seed (seed + index), so a model's seed does not depend on which others run.
TRAINED = ("nll", "penalty", "anneal", "smooth", "penalty_sum")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """:func:`boltzflow.runtime.resolve_device` with its one-line error as a :class:`BoltzflowError`.

    Raises:
        BoltzflowError: an unknown name, CUDA asked for where torch sees none, or N out of range.
    """
    from boltzflow.runtime import resolve_device as resolve

    try:
        return resolve(name)
    except ValueError as err:
        raise BoltzflowError(str(err)) from None


def device_name(device: torch.device) -> str:
    """Human-readable name of ``device`` (the GPU's name for CUDA)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from boltzflow.experiments.common import cpu_model

    return cpu_model()


class DeadlineReached(Exception):
    """Raised by :class:`StopAtDeadline` at the start of an epoch that would begin after the deadline."""


class StopAtDeadline:
    """Wrap a loss so that training stops at an epoch boundary once ``time.monotonic() >= deadline``.

    Training-mode calls are counted (``fit`` evaluates validation batches in eval mode); every
    ``steps_per_epoch`` of them make one epoch. At the first training call of an epoch the deadline is checked
    and one progress line (epoch, seconds since the wrapper was made) goes to stderr when ``log`` is set.

    Args:
        loss: the loss ``(flow, batch) -> scalar``.
        steps_per_epoch: optimiser steps per epoch (``ceil(n_train / batch_size)``).
        start_epoch: completed epochs of the checkpoint that ``fit`` resumes from.
        epochs: planned epochs (for the log line).
        deadline: ``time.monotonic()`` value after which no new epoch starts; None = no deadline.
        log: label of the progress lines, or None for none.
    """

    def __init__(
        self,
        loss,
        steps_per_epoch: int,
        start_epoch: int,
        epochs: int,
        deadline: float | None,
        log: str | None = None,
    ) -> None:
        self.loss, self.steps_per_epoch, self.start_epoch, self.epochs = loss, steps_per_epoch, start_epoch, epochs
        self.deadline, self.log = deadline, log
        self.calls = 0
        self.started = time.monotonic()

    @property
    def epoch(self) -> int:
        """0-based epoch of the next training call."""
        return self.start_epoch + self.calls // self.steps_per_epoch

    def __call__(self, flow: Flow, batch: Tensor) -> Tensor:
        if flow.training:
            if self.calls % self.steps_per_epoch == 0:
                self._epoch_start()
            self.calls += 1
        return self.loss(flow, batch)

    def _epoch_start(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.deadline is not None and time.monotonic() >= self.deadline:
            if self.log:
                print(f"{self.log}: deadline reached, stopping after epoch {self.epoch}/{self.epochs} "
                      f"({elapsed:.0f} s)", file=sys.stderr, flush=True)
            raise DeadlineReached(self.epoch)
        if self.log:
            print(f"{self.log}: epoch {self.epoch + 1}/{self.epochs} starts ({elapsed:.0f} s)",
                  file=sys.stderr, flush=True)


def make_loss(name: str, pairs: np.ndarray, sc: CartesianScale, steps_per_epoch: int):
    """The training loss of model ``name`` (``nll`` or one of the penalised models) at the sizes ``sc``."""
    if name == "nll":
        return nll
    schedules = {
        "penalty": P.constant(sc.lam),
        "penalty_sum": P.constant(sc.lam),
        "anneal": P.linear_anneal(sc.lam, max(1, round(sc.anneal_zero_fraction * sc.train.epochs))),
        "smooth": P.constant(sc.smooth_lam),
    }
    penalties = {
        "penalty_sum": P.collision_penalty_sum,
        "smooth": functools.partial(P.softplus_penalty, width=sc.smooth_width_nm),
    }
    penalty = penalties.get(name, P.collision_penalty)
    return P.PenalisedNLL(pairs, schedules[name], sc.eps_nm, penalty, ac.to_xyz, steps_per_epoch)


def train_model(
    out: Path,
    name: str,
    x: np.ndarray,
    st: ac.Standardizer,
    pairs: np.ndarray,
    sc: CartesianScale,
    seed: int,
    progress: bool,
    device: torch.device,
    deadline: float | None = None,
) -> tuple[Flow, dict[str, Any]] | None:
    """Train (or resume) model ``name`` on ``device`` until its epochs are done or ``deadline`` has passed.

    Args:
        out: run folder; the checkpoint is ``out/checkpoints/<name>.pt``.
        name: one of :data:`TRAINED`.
        x: aligned, flattened frames, shape (n, dim), nm.
        st: the standardiser of ``x`` (fixed de-standardisation at the end of the flow).
        pairs: non-bonded pairs, shape (n_pairs, 2).
        sc: sizes of the run.
        seed: seeds the initialisation, split, minibatches and generated batches.
        progress: show a progress bar.
        device: where training runs.
        deadline: ``time.monotonic()`` value after which no new epoch starts (None: train to the end).

    Returns:
        ``(flow in eval mode holding its best weights, on device; info)`` or None when not even one epoch was
        completed before the deadline. ``info`` has best_epoch, best_val_loss, skipped_steps, train_seconds,
        final_train_loss, epochs_trained and stopped_at_deadline.
    """
    spec = realnvp_spec(sc.flow, st.loc, st.scale)
    flow = seeded(lambda: build_flow(spec), seed).to(device)  # the initial weights, without global side effects
    cfg = dataclasses.replace(sc.train, seed=seed)
    path = out / "checkpoints" / f"{name}.pt"
    n_train = len(x) - int(round(cfg.val_fraction * len(x)))
    steps = math.ceil(n_train / cfg.batch_size)
    loss = make_loss(name, pairs, sc, steps)
    start = int(read_checkpoint(path)["epoch"]) if path.exists() else 0
    if isinstance(loss, P.PenalisedNLL):
        loss.start_at(start)
    log = f"train {name}" if deadline is not None else None
    wrapped = StopAtDeadline(loss, steps, start, cfg.epochs, deadline, log)
    extra = {"flow_spec": spec, "system": {"name": "alanine-dipeptide-cartesian", "model": name}}
    data = torch.as_tensor(x, dtype=torch.float32, device=device)
    stopped = False
    try:
        fit(flow, wrapped, data, cfg, path, extra=extra, progress=progress and log is None, desc=f"train {name}")
    except DeadlineReached:
        stopped = True
    if not path.exists():
        return None
    ckpt = read_checkpoint(path)
    flow.load_state_dict(ckpt["best_model"] if ckpt.get("best_model") is not None else ckpt["model"])
    return flow.eval(), _info(ckpt, stopped and int(ckpt["epoch"]) < cfg.epochs)


def _info(ckpt: dict[str, Any], stopped: bool) -> dict[str, Any]:
    history = ckpt["history"]
    return {
        "best_epoch": ckpt["best_epoch"],
        "best_val_loss": ckpt["best_val"],
        "skipped_steps": ckpt["skipped"],
        "train_seconds": float(sum(h["seconds"] for h in history)),
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "epochs_trained": int(ckpt["epoch"]),
        "stopped_at_deadline": bool(stopped),
    }


@torch.no_grad()
def sample(flow: Flow, n: int, seed: int, chunk: int = 2000) -> np.ndarray:
    """``n`` configurations from ``flow`` on its own device, shape (n, 22, 3), float64, nm."""
    device = next(flow.buffers()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    parts = [flow.sample(min(chunk, n - i), gen).x.double().cpu() for i in range(0, n, chunk)]
    return ac.to_xyz(torch.cat(parts)).numpy()


def sample_rejected(
    flow: Flow, n: int, pairs: np.ndarray, r_min: float, seed: int, first: np.ndarray, max_rounds: int = 50
) -> tuple[np.ndarray, float]:
    """Samples with every non-bonded distance >= ``r_min`` nm (``first`` = the first batch, already drawn).

    Returns:
        ``(up to n kept configurations (k, 22, 3) nm, kept / drawn)``.
    """
    kept, drawn, batch = [], 0, first
    for k in range(max_rounds):
        rej = P.reject_collisions(torch.as_tensor(batch), pairs, r_min)
        kept.append(rej.x.numpy())
        drawn += len(batch)
        if sum(len(v) for v in kept) >= n:
            break
        batch = sample(flow, n, seed + k)
    got = np.concatenate(kept)[:n]
    return got, float(sum(len(v) for v in kept)) / drawn
