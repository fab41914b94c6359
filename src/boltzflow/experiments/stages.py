"""The typed pieces recipes are made of: a RealNVP on the system's coordinates, a training stage (loss, batch
source, schedule) and the size of a BG evaluation, with the loss of a stage by name.

Every numeric field is checked at construction; the ValueError names the field, and the recipe loader adds the
key and the file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.flows.realnvp import RealNVPConfig
from boltzflow.training.config import TrainConfig
from boltzflow.training.energy_fit import mixed_objective
from boltzflow.training.losses import linlog_cut, nll

LOSSES = ("nll", "mixed")


def positive(obj: Any, *names: str, allow_zero: bool = False) -> None:
    """Raise ValueError naming the first field of ``obj`` that is not a finite number > 0 (>= 0 if ``allow_zero``)."""
    for name in names:
        v = getattr(obj, name)
        if v is None:
            continue
        ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
        if not ok or v < 0 or (v == 0 and not allow_zero):
            raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}")


@dataclass
class RealNVPFlow:
    """A RealNVP on the system's coordinates (the dimension comes from the system).

    Attributes:
        n_layers: coupling layers.
        hidden: hidden widths of every s and t net.
        masked_input: nets on the masked full vector rather than the kept half.
        activation: "tanh", "silu", ... (see :class:`~boltzflow.flows.realnvp.RealNVPConfig`).
        scale_clamp: soft bound on |s| (None: unbounded).
    """

    n_layers: int = 8
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    masked_input: bool = True
    activation: str = "tanh"
    scale_clamp: float | None = 2.0

    def __post_init__(self) -> None:
        positive(self, "n_layers", "scale_clamp")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {self.hidden}")

    def config(self, dim: int) -> RealNVPConfig:
        """The flow library's config for event dimension ``dim``."""
        return RealNVPConfig(dim=dim, **dataclasses.asdict(self))


@dataclass
class Stage(TrainConfig):
    """One training stage: a loss on the training set with its schedule (the :class:`TrainConfig` fields).

    Attributes:
        name: stage name (checkpoint ``checkpoints/<name>.pt``, progress label, metrics-log stage).
        loss: "nll" (data NLL) or "mixed" (``w_n NLL + w_k reverse KL + w_i IW-NLL + w_f force matching``
            against the system's energy, cut lin-log above ``energy_high`` kT).
        seed: added to the run's ``--seed`` for this stage's generators.
        nll_weight, kl_weight, iw_weight, force_weight: the weights of the mixed loss.
        kl_batch: flow samples per reverse-KL / IW-NLL estimate.
        energy_high: lin-log cut of the training energy, kT.
    """

    name: str = "train"
    loss: str = "nll"
    nll_weight: float = 1.0
    kl_weight: float = 0.0
    iw_weight: float = 0.0
    force_weight: float = 0.0
    kl_batch: int = 256
    energy_high: float = 1e3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.name or "/" in self.name:
            raise ValueError(f"stage name must be a non-empty file name, got {self.name!r}")
        positive(self, "nll_weight", "kl_weight", "iw_weight", "force_weight", allow_zero=True)
        positive(self, "kl_batch", "energy_high")

    def schedule(self, seed: int) -> TrainConfig:
        """The stage's :class:`TrainConfig`, its generators seeded from ``seed + self.seed``."""
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{**kw, "seed": seed + self.seed})


@dataclass
class BGEvaluation:
    """How a Boltzmann generator is scored.

    Attributes:
        n_samples: flow samples per draw.
        n_draws: independent draws (ESS and populations are mean ± sd over them; >= 4 for a result).
        mh_steps: independence Metropolis-Hastings steps on the first draw.
        clip_fraction: share of the largest log weights clipped for the clipped ESS.
        chunk_size: samples per flow/energy call.
        model_metrics_n: for model systems, samples per set of the mode coverage / energy distance / W2 with
            their floors (0: none).
    """

    n_samples: int = 100_000
    n_draws: int = 4
    mh_steps: int = 99_999
    clip_fraction: float = 1e-4
    chunk_size: int = 5000
    model_metrics_n: int = 5000

    def __post_init__(self) -> None:
        positive(self, "n_samples", "n_draws", "mh_steps", "clip_fraction", "chunk_size")
        positive(self, "model_metrics_n", allow_zero=True)
        if self.clip_fraction >= 1:
            raise ValueError(f"clip_fraction must be < 1, got {self.clip_fraction}")


def make_loss(stage: Stage, energy_flat: Callable[[Tensor], Tensor] | None, dim: int) -> Callable[..., Tensor]:
    """The loss function of ``stage``; ``energy_flat`` is u on flattened configurations (n, dim) -> (n,), kT."""
    if stage.loss == "nll":
        return nll
    if energy_flat is None:
        raise BoltzflowError(f"stage {stage.name}: the mixed loss needs the system's energy")
    u_train = lambda v: linlog_cut(energy_flat(v), high=stage.energy_high)  # noqa: E731  never inf
    return mixed_objective(u_train, stage.nll_weight, stage.kl_weight, stage.force_weight, stage.kl_batch,
                           dim=dim, iw_weight=stage.iw_weight)


