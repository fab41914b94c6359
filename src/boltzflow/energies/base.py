"""The energy contract: reduced potentials u(x) = U(x)/kT."""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn


class Energy(nn.Module, abc.ABC):
    """A reduced potential u(x) in units of kT.

    ``energy`` maps ``(..., *event_shape) -> (...)``. ``force`` defaults to ``-grad u`` by autograd
    (units kT per unit length); subclasses with an external force source (OpenMM) override it.

    Attributes:
        event_shape: shape of one configuration, e.g. ``(4,)`` or ``(22, 3)``.
    """

    event_shape: tuple[int, ...]

    @abc.abstractmethod
    def energy(self, x: Tensor) -> Tensor:
        """Reduced energy, shape (..., *event_shape) -> (...)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.energy(x)

    def force(self, x: Tensor) -> Tensor:
        """-grad u(x), same shape as ``x``."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.energy(x).sum(), x)
        return -grad

    def check_shape(self, x: Tensor) -> None:
        """Raise a one-line ValueError when ``x`` does not end in ``event_shape``."""
        k = len(self.event_shape)
        if tuple(x.shape[x.dim() - k :]) != tuple(self.event_shape) or x.dim() < k:
            raise ValueError(
                f"{type(self).__name__} expects configurations of shape (..., {', '.join(map(str, self.event_shape))})"
                f", got {tuple(x.shape)}"
            )
