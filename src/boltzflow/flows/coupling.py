"""Affine coupling layer of RealNVP, written exactly as paper 001 §4 states it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from boltzflow.flows.core import Transform


class AffineCoupling(Transform):
    """RealNVP affine coupling (Dinh et al. 2017; paper 001 §4).

    The paper writes the data -> latent direction, which is our ``inverse``::

        z_a = x_a,   z_b = x_b * exp(s(x_a)) + t(x_a),   log|det dz/dx| = sum_j s_j(x_a)

    and its explicit inverse, our ``forward`` (sampling)::

        x_a = z_a,   x_b = (z_b - t(z_a)) * exp(-s(z_a)),   log|det dx/dz| = -sum_j s_j(z_a)

    Two input layouts for the conditioners ``s`` and ``t`` (separate networks, as in the paper):

    * ``masked_input=True``: the nets see the full, masked vector ``x * mask_a`` (D inputs) and return D
      outputs of which the b-entries are used (the paper's 1.09 M / 7.9 M parameter models);
    * ``masked_input=False``: the nets see ``x_a`` (d_a inputs) and return d_b outputs (the 2,316-parameter
      dihedral model).

    Scale bound: with ``scale_clamp = c`` the raw output is soft-clamped to ``s = c * tanh(raw / c)``, so
    each layer scales by at most ``e^c`` (``None`` leaves ``s`` unbounded).

    Args:
        mask: bool, shape (D,); True marks the conditioning part ``a`` (kept unchanged).
        s_net: scale network.
        t_net: shift network.
        masked_input: layout of the nets' inputs and outputs, see above.
        scale_clamp: soft bound ``c`` on ``|s|``, or None.
    """

    def __init__(
        self,
        mask: Tensor,
        s_net: nn.Module,
        t_net: nn.Module,
        masked_input: bool = True,
        scale_clamp: float | None = None,
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.all() or not mask.any():
            raise ValueError("coupling mask must split the dimensions into two non-empty parts")
        self.register_buffer("mask", mask)
        self.register_buffer("idx_a", torch.nonzero(mask).flatten())
        self.register_buffer("idx_b", torch.nonzero(~mask).flatten())
        self.s_net = s_net
        self.t_net = t_net
        self.masked_input = masked_input
        self.scale_clamp = scale_clamp

    def _s_t(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Scale and shift for the b-part, each shape (..., d_b), from the a-part of ``x``."""
        if self.masked_input:
            xa = x * self.mask.to(x.dtype)
            s = self.s_net(xa)[..., self.idx_b]
            t = self.t_net(xa)[..., self.idx_b]
        else:
            xa = x[..., self.idx_a]
            s = self.s_net(xa)
            t = self.t_net(xa)
        if self.scale_clamp is not None:
            s = self.scale_clamp * torch.tanh(s / self.scale_clamp)
        return s, t

    def _assemble(self, x: Tensor, yb: Tensor) -> Tensor:
        y = x.clone()
        y[..., self.idx_b] = yb
        return y

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._s_t(z)
        xb = (z[..., self.idx_b] - t) * torch.exp(-s)
        return self._assemble(z, xb), -s.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._s_t(x)
        zb = x[..., self.idx_b] * torch.exp(s) + t
        return self._assemble(x, zb), s.sum(-1)
