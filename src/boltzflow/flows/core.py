"""The transform contract every flow layer follows.

A transform maps latent ``z`` to configuration ``x``. Both directions return ``(output, logdet)`` where
``logdet`` is log|det J| of *that* direction:

* ``forward(z) -> (x, logdet_forward)``  (sampling direction),
* ``inverse(x) -> (z, logdet_inverse)``  (density direction),

with shapes ``(..., D) -> (..., D), (...)``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Transform(nn.Module, abc.ABC):
    """Invertible map z -> x with log-determinants in both directions."""

    @abc.abstractmethod
    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Map z -> x. Returns ``(x, log|det dx/dz|)``, shapes ``(..., D)`` and ``(...)``."""

    @abc.abstractmethod
    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map x -> z. Returns ``(z, log|det dz/dx|)``, shapes ``(..., D)`` and ``(...)``."""


class Compose(Transform):
    """Composition ``T_n ∘ ... ∘ T_1``: ``forward`` applies the layers in list order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[:-1])
        for t in self.transforms:
            z, ld = t.forward(z)
            logdet = logdet + ld
        return z, logdet

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[:-1])
        for t in reversed(self.transforms):
            x, ld = t.inverse(x)
            logdet = logdet + ld
        return x, logdet


class Inverse(Transform):
    """The inverse of a transform, with the two directions swapped."""

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform.forward(x)


class Affine(Transform):
    """Fixed elementwise affine map ``x = loc + scale * z`` (e.g. undoing a standardisation).

    Args:
        loc: shape (D,).
        scale: shape (D,), positive.
    """

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        super().__init__()
        if torch.any(scale <= 0):
            raise ValueError("Affine scale must be positive")
        self.register_buffer("loc", torch.as_tensor(loc))
        self.register_buffer("log_scale", torch.log(torch.as_tensor(scale)))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = self.loc + z * torch.exp(self.log_scale)
        return x, self.log_scale.sum().expand(z.shape[:-1])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = (x - self.loc) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[:-1])
