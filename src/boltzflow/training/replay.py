"""The replay buffer: a batch source of weighted samples ``x, log_w`` (optionally ``log_q, u``).

Served by weighted resampling or as weighted minibatches; it can be added to or replaced between stages,
refreshes itself from the flow at every epoch if asked, and its content is checkpointed (``state_dict``) so a
resumed run continues exactly. The other sources are in :mod:`boltzflow.training.sources`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow
from boltzflow.training.sources import EnergyFn, Generators, SampleBatch, Source, _check_count, draw_samples


class ReplayBuffer(Source):
    """Weighted samples served by weighted resampling or as weighted minibatches.

    Args:
        batch_size: rows per batch.
        steps_per_epoch: batches per epoch (None: ``ceil(len(buffer) / batch_size)``, one pass).
        capacity: most rows kept; adding beyond it drops the oldest rows (None: unbounded).
        resample: True: each batch is ``batch_size`` rows drawn with replacement with probability ∝ ``exp(log_w)``
            and carries ``log_w = 0``; False: uniform minibatches of a shuffled pass carrying their ``log_w``
            (self-normalise them in the loss, e.g. :func:`~boltzflow.training.losses.weighted_nll`).
        refresh_energy: with ``refresh_n``: at the start of every epoch, ``refresh_n`` detached flow samples with
            their energies and log weights are added (data-free training with replay).
        refresh_n: samples added per epoch.
    """

    COLUMNS = ("x", "log_w", "log_q", "u")

    def __init__(self, batch_size: int, steps_per_epoch: int | None = None, capacity: int | None = None,
                 resample: bool = True, refresh_energy: EnergyFn | None = None, refresh_n: int = 0) -> None:
        self.batch_size = _check_count("batch_size", batch_size)
        self.steps_per_epoch = None if steps_per_epoch is None else _check_count("steps_per_epoch", steps_per_epoch)
        self.capacity = None if capacity is None else _check_count("capacity", capacity)
        self.refresh_n = _check_count("refresh_n", refresh_n, 0)
        if (refresh_energy is None) != (self.refresh_n == 0):
            raise ValueError("give both refresh_energy and refresh_n >= 1, or neither")
        self.resample, self.refresh_energy = bool(resample), refresh_energy
        self.data: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return 0 if not self.data else len(self.data["x"])

    def add(self, x: Tensor, log_w: Tensor, log_q: Tensor | None = None, u: Tensor | None = None) -> None:
        """Append rows (detached); the buffer keeps the newest ``capacity`` rows.

        Args:
            x: samples, shape (n, D). log_w: log weights, shape (n,). log_q, u: optional, shape (n,); a column
            is given either always or never.
        """
        new = {"x": x, "log_w": log_w, "log_q": log_q, "u": u}
        new = {k: v.detach() for k, v in new.items() if v is not None}
        if new["x"].ndim != 2 or any(v.shape != (len(new["x"]),) for k, v in new.items() if k != "x"):
            raise ValueError(f"add() needs x (n, D) and per-row columns (n,), got "
                             f"{ {k: tuple(v.shape) for k, v in new.items()} }")
        if self.data and set(new) != set(self.data):
            raise ValueError(f"the buffer holds columns {sorted(self.data)}; add() got {sorted(new)}")
        merged = {k: torch.cat([self.data[k], v]) if self.data else v for k, v in new.items()}
        keep = slice(-self.capacity, None) if self.capacity is not None else slice(None)
        self.data = {k: v[keep] for k, v in merged.items()}

    def replace(self, x: Tensor, log_w: Tensor, log_q: Tensor | None = None, u: Tensor | None = None) -> None:
        """Empty the buffer, then :meth:`add`."""
        self.data = {}
        self.add(x, log_w, log_q, u)

    def batches(self, flow: Flow, generators: Generators) -> Iterator[SampleBatch]:
        if self.refresh_energy is not None:
            with torch.no_grad():
                s = draw_samples(flow, self.refresh_energy, self.refresh_n, generators.samples)
            self.add(s.x, s.log_w, s.log_q, s.u)
        if len(self) == 0:
            raise BoltzflowError("the replay buffer is empty; add samples or give refresh_energy and refresh_n")
        n = len(self)
        steps = self.steps_per_epoch or math.ceil(n / self.batch_size)
        if self.resample:
            log_w = torch.nan_to_num(self.data["log_w"].double().cpu(), nan=-math.inf)
            if not torch.isfinite(log_w).any():
                raise BoltzflowError("every log weight in the replay buffer is -inf or NaN; nothing to resample")
            probs = torch.softmax(log_w, 0)
            for _ in range(steps):
                idx = torch.multinomial(probs, self.batch_size, replacement=True, generator=generators.shuffle)
                yield self._rows(idx, zero_weights=True)
        else:  # one shuffled pass, or `steps` batches from back-to-back shuffled passes
            passes = 1 if self.steps_per_epoch is None else math.ceil(steps * self.batch_size / n)
            perm = torch.cat([torch.randperm(n, generator=generators.shuffle) for _ in range(passes)])
            for i in range(steps):
                yield self._rows(perm[i * self.batch_size : (i + 1) * self.batch_size], zero_weights=False)

    def _rows(self, idx: Tensor, zero_weights: bool) -> SampleBatch:
        rows = {k: v[idx.to(v.device)] for k, v in self.data.items()}
        if zero_weights:
            rows["log_w"] = torch.zeros_like(rows["log_w"])
        return SampleBatch(rows["x"], rows["log_w"], rows.get("log_q"), rows.get("u"))

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "replay_buffer", "batch_size": self.batch_size, "steps_per_epoch": self.steps_per_epoch,
                "capacity": self.capacity, "resample": self.resample, "refresh_n": self.refresh_n}

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.data)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        unknown = set(state) - set(self.COLUMNS)
        if unknown or (state and not {"x", "log_w"} <= set(state)):
            raise ValueError(f"not a replay buffer state: columns {sorted(state)}")
        device = next(iter(self.data.values())).device if self.data else None
        self.data = {k: v.to(device) if device is not None else v for k, v in state.items()}
