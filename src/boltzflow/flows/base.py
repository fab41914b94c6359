"""Base (latent) distributions."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class StandardNormal(nn.Module):
    """N(0, I) on R^D.

    Args:
        dim: event dimension D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("_anchor", torch.zeros(()))  # follows .to(device, dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples, shape (n, D), on the module's device and dtype."""
        a = self._anchor
        return torch.randn(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log density of z, shape (..., D) -> (...)."""
        return -0.5 * (z**2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
