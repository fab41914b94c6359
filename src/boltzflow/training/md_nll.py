"""The data-trained baseline of CMT's harness: maximum likelihood on reference samples ("md-nll").

Paper 002 Table 1 lists "forward KL on MD" next to the data-free methods; this is that baseline as a
:class:`~boltzflow.training.cmt.runner.Method`, so it trains the same initial flow in the same harness (log,
checkpoints, resume, ESS curve) as CMT, reverse KL and TA-BG.

* One harness step is ``iters`` Adam steps on ``-mean log q_θ(x_b)`` with minibatches of ``batch_size`` samples
  drawn uniformly with replacement from the training set by the run's generator; it is
  :func:`~boltzflow.training.cmt.harness.fit_weighted` with uniform weights, continuing one Adam whose moments
  persist across steps and checkpoints (so a resume is bit-identical).
* Training evaluates **no energy**: ``step_cost`` is 0, and the step count is the recipe's, not derived from the
  energy budget. The samples themselves were not free: an MD reference cost its simulation's force evaluations,
  which the runner reports with the number of frames trained on.
* The training set is chosen by the runner (:func:`boltzflow.experiments.cmt_report.training_samples`): the frames
  of a trajectory reference that are not among the evaluation frames, or fresh exact samples drawn with a
  generator distinct from the evaluation's; this module only fits what it is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow
from boltzflow.training.annealing import PersistentAdam
from boltzflow.training.cmt.harness import CountedTarget, FitConfig, fit_weighted


@dataclass
class MDNLLConfig:
    """Maximum likelihood on samples in blocks (one block = one harness step).

    Attributes:
        n_steps: harness steps (blocks).
        iters: Adam steps per block.
        batch_size: samples per Adam step, drawn uniformly with replacement.
        lr: Adam learning rate.
        clip_norm: gradient-norm clip.
    """

    n_steps: int = 10
    iters: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    clip_norm: float = 100.0

    def __post_init__(self) -> None:
        if min(self.n_steps, self.iters, self.batch_size) < 1 or not self.lr > 0 or not self.clip_norm > 0:
            raise ValueError(f"MDNLLConfig needs positive sizes, lr and clip_norm, got {self}")


class MDNLLMethod(PersistentAdam):
    """Maximum likelihood on a fixed set of samples, no energy evaluations (module docstring).

    Args:
        config: :class:`MDNLLConfig`.
        x: training samples, shape (n, D), in the flow's coordinates (flattened positions, nm, for molecules);
            None builds a method that can be sized and validated but not stepped.
        source: where the samples come from, for the checkpoint's config (a resume on other data is refused).
    """

    name = "md-nll"

    def __init__(self, config: MDNLLConfig, x: Tensor | None = None, source: str = "") -> None:
        if x is not None and (x.ndim != 2 or len(x) < 1 or not bool(torch.isfinite(x).all())):
            raise ValueError(f"md-nll needs finite training samples of shape (n >= 1, D), got {tuple(x.shape)}")
        self.config, self.x, self.source = config, x, source
        self._opt: torch.optim.Optimizer | None = None
        self._pending: dict[str, Tensor] = {}
        self._x_flow: Tensor | None = None

    @property
    def n_steps(self) -> int:
        return self.config.n_steps

    def step_cost(self, step: int) -> int:
        """Training energy evaluations of a step: 0 (the samples were paid for elsewhere)."""
        return 0

    def config_dict(self) -> dict[str, Any]:
        n = 0 if self.x is None else int(len(self.x))
        return {"method": self.name, **asdict(self.config), "n_train": n, "source": self.source}

    def step(self, flow: Flow, target: CountedTarget, step: int, generator: torch.Generator) -> dict[str, Any]:
        """``iters`` Adam steps of ``batch_size`` uniformly drawn samples; ``target`` is never called.

        Returns:
            ``nll_first`` / ``nll_last`` (mean minibatch NLL of the first and last tenth of the block, nats),
            ``fit_skipped`` (steps with a non-finite loss or gradient) and ``n_train``.
        """
        if self.x is None:
            raise BoltzflowError("md-nll was built without training samples")
        p = next(flow.parameters())
        if self._x_flow is None or self._x_flow.dtype != p.dtype or self._x_flow.device != p.device:
            self._x_flow = self.x.to(device=p.device, dtype=p.dtype)
        x = self._x_flow
        c = self.config
        fit = fit_weighted(flow, x, x.new_full((len(x),), 1.0 / len(x)), FitConfig(c.iters, c.batch_size, c.lr,
                           c.clip_norm), generator, optimizer=self._optimizer(flow))
        return {"nll_first": fit.nll_first, "nll_last": fit.nll_last, "fit_skipped": fit.n_skipped,
                "n_train": int(len(x))}
