"""A normalizing flow: a base distribution pushed through a transform."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from boltzflow.flows.core import Transform


class FlowSample(NamedTuple):
    """Samples and their log density under the flow.

    Attributes:
        x: configurations, shape (n, D).
        log_prob: log q(x), shape (n,).
        z: the latent points they came from, shape (n, D).
    """

    x: Tensor
    log_prob: Tensor
    z: Tensor


class Flow(nn.Module):
    """q = T_# p_base for a transform ``T`` (z -> x) and a base distribution.

    Args:
        base: module with ``sample(n, generator)`` and ``log_prob(z)``.
        transform: a :class:`~boltzflow.flows.core.Transform`.
    """

    def __init__(self, base: nn.Module, transform: Transform) -> None:
        super().__init__()
        self.base = base
        self.transform = transform

    @property
    def dim(self) -> int:
        return self.base.dim

    def sample(self, n: int, generator: torch.Generator | None = None) -> FlowSample:
        """Draw ``n`` samples with their log density. Differentiable; wrap in ``no_grad`` when not training."""
        z = self.base.sample(n, generator)
        x, logdet = self.transform.forward(z)
        return FlowSample(x, self.base.log_prob(z) - logdet, z)

    def log_prob(self, x: Tensor) -> Tensor:
        """log q(x), shape (..., D) -> (...)."""
        z, logdet = self.transform.inverse(x)
        return self.base.log_prob(z) + logdet

    def forward(self, x: Tensor) -> Tensor:
        """Alias of :meth:`log_prob`, so the flow can be called like a module."""
        return self.log_prob(x)
