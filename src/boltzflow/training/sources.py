"""Batch sources: what the training loop feeds to the loss, one epoch at a time.

* :class:`DatasetSource`: minibatches of a data tensor; an epoch is one shuffled pass. An optional validation
  split and "keep the weights of the best epoch by validation loss" are options of this source, because they
  only make sense for a fixed dataset.
* :class:`FlowSampleSource`: the flow's own samples with their energies (data-free training). Reparameterised
  batches carry gradients through the samples (reverse KL, :func:`~boltzflow.training.losses.sample_reverse_kl`);
  detached batches carry ``log q``, ``u`` and ``log w = -u - log q`` for importance-weighted losses
  (:func:`~boltzflow.training.losses.weighted_nll`).
* :class:`~boltzflow.training.replay.ReplayBuffer` (in ``replay.py``): weighted samples ``x, log_w``, served by
  weighted resampling or as weighted minibatches.

Every source takes its randomness from the generator the loop passes in (never torch's global generator) and
reports a ``fingerprint`` that the loop stores in checkpoints, so resuming with other data is refused.

Data-parallel training calls ``shard(rank, world_size)`` first: a dataset serves rows ``rank::world_size`` of each
global batch (every rank walks the same permutation), flow samples come ``batch_size / world_size`` per rank.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow

EnergyFn = Callable[[Tensor], Tensor]


class SampleBatch(NamedTuple):
    """Weighted samples, from the flow (:class:`FlowSampleSource`) or a replay buffer (:mod:`.replay`).

    Attributes:
        x: configurations, shape (n, D).
        log_w: unnormalised log importance weights, shape (n,) (no gradient; 0 for resampled batches).
        log_q: log q(x) of the flow that drew them, shape (n,), or None.
        u: reduced target energy, shape (n,), kT, or None.
        z: latent points, shape (n, D_z), or None.
    """

    x: Tensor
    log_w: Tensor
    log_q: Tensor | None = None
    u: Tensor | None = None
    z: Tensor | None = None


class Generators(NamedTuple):
    """The loop's random streams, handed to the sources.

    Attributes:
        shuffle: CPU generator for permutations, splits and resampling indices.
        samples: generator on the flow's device for latent draws (shared with ``StepContext.generator``).
    """

    shuffle: torch.Generator
    samples: torch.Generator


def batch_length(batch: Any) -> int:
    """Number of rows of a batch (a tensor, or anything with an ``x`` tensor)."""
    return int(batch.shape[0]) if isinstance(batch, Tensor) else int(batch.x.shape[0])


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Source:
    """Defaults shared by the sources: no validation data, no state, last weights kept."""

    keep_best = False

    def start(self, generators: Generators) -> None:
        """Called once before training (and before a resumed state is restored)."""

    def batches(self, flow: Flow, generators: Generators) -> Iterator[Any]:
        """The batches of one epoch."""
        raise NotImplementedError

    def validation_batches(self) -> list[Any] | None:
        """Held-out batches scored after every epoch, or None."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able identity of the source, compared when a checkpoint is resumed."""
        return {"kind": type(self).__name__}

    def shard(self, rank: int, world_size: int) -> None:
        """Serve rank ``rank``'s share of every batch from now on (data-parallel training); this default refuses."""
        if world_size != 1:
            raise BoltzflowError(f"{type(self).__name__} cannot be split across {world_size} processes yet; "
                                 "train with one process")

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors to checkpoint (empty when the source has no state)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`."""


class DatasetSource(Source):
    """Shuffled minibatches of a data tensor; an epoch is one pass over the training rows.

    Args:
        x: data, shape (n, ...), finite, in the flow's dtype and device.
        batch_size: rows per batch.
        val_fraction: share of the rows held out for validation (split once, from the loop's generator).
        keep_best: let the loop keep the weights of the epoch with the lowest validation loss (with no
            validation rows: the lowest epoch-mean training loss) instead of the last ones.

    Raises:
        BoltzflowError: NaN or inf in ``x``, or no row.
        ValueError: a bad ``batch_size`` or ``val_fraction``.
    """

    def __init__(self, x: Tensor, batch_size: int, val_fraction: float = 0.0, keep_best: bool = True) -> None:
        if not isinstance(x, Tensor) or x.ndim < 1 or len(x) == 0:
            raise BoltzflowError("training data must be a tensor with at least one row")
        if not torch.isfinite(x).all():
            raise BoltzflowError("training data contain NaN or inf values; clean the data first")
        self.batch_size = _check_count("batch_size", batch_size)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.x, self.val_fraction, self.keep_best = x, float(val_fraction), bool(keep_best)
        self.train, self.val = x, x[:0]
        self._sha256: str | None = None
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = int(rank), int(world_size)

    def start(self, generators: Generators) -> None:
        perm = torch.randperm(len(self.x), generator=generators.shuffle).to(self.x.device)
        n_val = int(round(self.val_fraction * len(self.x)))
        self.train, self.val = self.x[perm[n_val:]], self.x[perm[:n_val]]
        if len(self.train) == 0:
            raise BoltzflowError(f"no training data left after the validation split of {len(self.x)} points")

    def batches(self, flow: Flow, generators: Generators) -> Iterator[Tensor]:
        perm = torch.randperm(len(self.train), generator=generators.shuffle).to(self.train.device)
        for start in range(0, len(self.train), self.batch_size):
            idx = perm[start : start + self.batch_size]
            yield self.train[idx if self.world_size == 1 else idx[self.rank :: self.world_size]]

    def validation_batches(self) -> list[Tensor] | None:
        if len(self.val) == 0:
            return None
        batches = [self.val[s : s + self.batch_size] for s in range(0, len(self.val), self.batch_size)]
        return batches if self.world_size == 1 else [b[self.rank :: self.world_size] for b in batches]

    def fingerprint(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = tensor_sha256(self.x)
        out = {"kind": "dataset", "sha256": self._sha256, "shape": list(self.x.shape), "dtype": str(self.x.dtype)}
        return out if self.world_size == 1 else {**out, "processes": self.world_size}


def tensor_sha256(x: Tensor) -> str:
    """sha256 of a tensor's shape, dtype and values (hex digest)."""
    digest = hashlib.sha256(f"{tuple(x.shape)}|{x.dtype}|".encode())
    digest.update(np.ascontiguousarray(x.detach().cpu().numpy()).data)
    return digest.hexdigest()


class FlowSampleSource(Source):
    """Fresh samples of the flow with their energies: ``steps_per_epoch`` batches of ``batch_size`` per epoch.

    Args:
        energy: reduced target energy on the flow's output, ``x (n, D) -> (n,)`` in kT (e.g.
            ``system.flat_energy()``, or a lin-log-cut version of it).
        batch_size: samples per batch.
        steps_per_epoch: batches per epoch.
        reparameterized: True: ``x``, ``log_q`` and ``u`` carry gradients back to the flow's parameters
            (reverse KL); False: everything is detached (importance-weighted losses).
    """

    def __init__(self, energy: EnergyFn, batch_size: int, steps_per_epoch: int = 1,
                 reparameterized: bool = True) -> None:
        if not callable(energy):
            raise ValueError("FlowSampleSource needs an energy function x (n, D) -> (n,)")
        self.energy = energy
        self.batch_size = _check_count("batch_size", batch_size)
        self.steps_per_epoch = _check_count("steps_per_epoch", steps_per_epoch)
        self.reparameterized = bool(reparameterized)
        self.rank, self.world_size, self.local_batch = 0, 1, self.batch_size

    def shard(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = int(rank), int(world_size)
        self.local_batch = self.batch_size // world_size + (rank < self.batch_size % world_size)

    def batches(self, flow: Flow, generators: Generators) -> Iterator[SampleBatch]:
        for _ in range(self.steps_per_epoch):
            yield self.draw(flow, generators.samples, self.local_batch)

    def draw(self, flow: Flow, generator: torch.Generator, n: int) -> SampleBatch:
        """``n`` samples; with gradients through the samples when the source is reparameterised."""
        with torch.set_grad_enabled(self.reparameterized and torch.is_grad_enabled()):
            return draw_samples(flow, self.energy, n, generator)

    def fingerprint(self) -> dict[str, Any]:
        out = {"kind": "flow_samples", "batch_size": self.batch_size, "steps_per_epoch": self.steps_per_epoch,
               "reparameterized": self.reparameterized}
        return out if self.world_size == 1 else {**out, "processes": self.world_size}


def draw_samples(flow: Flow, energy: EnergyFn, n: int, generator: torch.Generator | None) -> SampleBatch:
    """``n`` flow samples with ``log q``, ``u`` and detached ``log w = -u - log q`` (gradients as the caller's mode)."""
    s = flow.sample(n, generator)
    u = energy(s.x).to(s.log_prob.dtype)
    log_w = (-u - s.log_prob).detach()
    return SampleBatch(s.x, torch.nan_to_num(log_w, nan=-math.inf), s.log_prob, u, s.z)
