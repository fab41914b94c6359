"""Affine coupling layer of RealNVP, written exactly as paper 001 §4 states it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from boltzflow.flows.core import Transform


def _block(idx: Tensor) -> slice | None:
    """``idx`` as a slice when it is one contiguous run (indexing is then a free view), else None."""
    start = int(idx[0])
    return (
        slice(start, start + len(idx)) if bool((idx == torch.arange(start, start + len(idx))).all()) else None
    )


def _plain_mlp(net: nn.Module) -> bool:
    """True for an ``nn.Sequential`` that begins and ends with ``nn.Linear`` (what ``nets.mlp`` builds)."""
    return (
        isinstance(net, nn.Sequential)
        and len(net) > 0
        and isinstance(net[0], nn.Linear)
        and isinstance(net[-1], nn.Linear)
    )


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

    Fast path (same function, fewer operations): with ``masked_input=True`` and nets that are plain MLPs
    (``nn.Sequential`` from ``nn.Linear`` to ``nn.Linear``), the masked-out inputs, which are zero, and the
    unused a-outputs are skipped by multiplying with the a-columns of the first weight and the b-rows of the
    last one. Contiguous partitions are split and joined with views and one concatenation.

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
        idx_a, idx_b = torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten()
        self.register_buffer("mask", mask)
        self.register_buffer("idx_a", idx_a)
        self.register_buffer("idx_b", idx_b)
        # order that puts cat([x_a, y_b]) back into place; derived, so kept out of the state dict
        self.register_buffer("_unsort", torch.argsort(torch.cat([idx_a, idx_b])), persistent=False)
        self._slice_a, self._slice_b = _block(idx_a), _block(idx_b)
        self.s_net = s_net
        self.t_net = t_net
        self.masked_input = masked_input
        self.scale_clamp = scale_clamp

    def _take(self, x: Tensor, part: slice | None, idx: Tensor) -> Tensor:
        """Entries ``idx`` of the last axis of ``x``; a view when they form the block ``part``."""
        return x[..., part] if part is not None else x.index_select(-1, idx)

    def _join(self, ya: Tensor, yb: Tensor) -> Tensor:
        """Full vector from its a-part (..., d_a) and b-part (..., d_b); out of place, for vmap/jacrev."""
        if self._slice_a is not None and self._slice_b is not None:
            return torch.cat([ya, yb], -1) if self._slice_a.start == 0 else torch.cat([yb, ya], -1)
        return torch.cat([ya, yb], -1).index_select(-1, self._unsort)

    def _sliced_mlp(self, net: nn.Sequential, xa: Tensor) -> Tensor:
        """``net(x * mask)[..., idx_b]`` computed from ``x_a`` alone, shape (..., d_a) -> (..., d_b)."""
        layers = list(net)
        first, last = layers[0], layers[-1]
        w_in = self._take(first.weight, self._slice_a, self.idx_a)
        if len(layers) == 1:
            w_out = self._take(w_in.transpose(0, 1), self._slice_b, self.idx_b).transpose(0, 1)
            b_out = None if first.bias is None else self._take(first.bias, self._slice_b, self.idx_b)
            return F.linear(xa, w_out, b_out)
        h = F.linear(xa, w_in, first.bias)
        for layer in layers[1:-1]:
            h = layer(h)
        w_out = self._take(last.weight.transpose(0, 1), self._slice_b, self.idx_b).transpose(0, 1)
        b_out = None if last.bias is None else self._take(last.bias, self._slice_b, self.idx_b)
        return F.linear(h, w_out, b_out)

    def _s_t(self, xa: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Scale and shift for the b-part, each shape (..., d_b), from the a-part ``xa`` of ``x``."""
        if not self.masked_input:
            s, t = self.s_net(xa), self.t_net(xa)
        elif _plain_mlp(self.s_net) and _plain_mlp(self.t_net):
            s, t = self._sliced_mlp(self.s_net, xa), self._sliced_mlp(self.t_net, xa)
        else:
            xm = x * self.mask.to(x.dtype)
            s = self._take(self.s_net(xm), self._slice_b, self.idx_b)
            t = self._take(self.t_net(xm), self._slice_b, self.idx_b)
        if self.scale_clamp is not None:
            s = torch.tanh(s / self.scale_clamp) * self.scale_clamp
        return s, t

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        za, zb = self._take(z, self._slice_a, self.idx_a), self._take(z, self._slice_b, self.idx_b)
        s, t = self._s_t(za, z)
        xb = (zb - t) * torch.exp(-s)
        return self._join(za, xb), -s.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        xa, xb = self._take(x, self._slice_a, self.idx_a), self._take(x, self._slice_b, self.idx_b)
        s, t = self._s_t(xa, x)
        zb = torch.addcmul(t, xb, torch.exp(s))
        return self._join(xa, zb), s.sum(-1)
