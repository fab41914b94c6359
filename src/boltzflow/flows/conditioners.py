"""Conditioners: networks that give a coupling layer's elementwise map its parameters from the kept entries.

A conditioner is called with the full input ``x`` (..., D) and returns the parameter tuple of the elementwise
map for the transformed entries (see :mod:`boltzflow.flows.elementwise`): one tensor per entry of
``param_sizes``, shape (..., d_b) for a group of size 1 and (..., d_b, size) otherwise.

* :class:`MLPConditioner`: one MLP on features of the kept entries, ``(cos, sin)`` of the periodic ones
  (so the layer is periodic in them) and the raw values of the others; output ``d_b * n_params`` numbers laid
  out entry by entry, each entry's groups in ``param_sizes`` order.
* :class:`ConstantConditioner`: free parameters, for a layer with nothing to condition on.
* :class:`AffineNets`: RealNVP's separate ``s`` and ``t`` networks (paper 001 §4) in its two layouts, with the
  fast path of the masked layout (see the class).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from boltzflow.flows.nets import mlp

Params = tuple[Tensor, ...]


def split_params(raw: Tensor, d_b: int, sizes: Sequence[int]) -> Params:
    """Raw outputs (..., d_b * sum(sizes)) -> one tensor per group, (..., d_b) for size 1, else (..., d_b, size)."""
    groups = raw.unflatten(-1, (d_b, sum(sizes))).split(list(sizes), dim=-1)
    return tuple(g.squeeze(-1) if s == 1 else g for g, s in zip(groups, sizes, strict=True))


class MLPConditioner(nn.Module):
    """Parameters of the transformed entries from an MLP on the kept ones.

    Args:
        idx_periodic: kept entries that are angles (radians), long, fed to the net as (cos, sin).
        idx_linear: the other kept entries, long, fed as they are.
        d_b: number of transformed entries.
        param_sizes: the elementwise map's ``param_sizes``.
        hidden: hidden widths of the MLP.
        activation: hidden activation (see :data:`boltzflow.flows.nets.ACTIVATIONS`).
    """

    def __init__(
        self,
        idx_periodic: Tensor,
        idx_linear: Tensor,
        d_b: int,
        param_sizes: Sequence[int],
        hidden: Sequence[int],
        activation: str,
    ) -> None:
        super().__init__()
        self.register_buffer("idx_periodic", torch.as_tensor(idx_periodic, dtype=torch.long), persistent=False)
        self.register_buffer("idx_linear", torch.as_tensor(idx_linear, dtype=torch.long), persistent=False)
        self.d_b, self.param_sizes = d_b, tuple(param_sizes)
        n_in = 2 * self.idx_periodic.numel() + self.idx_linear.numel()
        if n_in == 0:
            raise ValueError("an MLP conditioner needs at least one kept entry; use ConstantConditioner")
        self.net = mlp(n_in, d_b * sum(self.param_sizes), list(hidden), activation)

    def features(self, x: Tensor) -> Tensor:
        """Net input from x (..., D): (cos, sin) of the periodic kept entries, then the linear ones."""
        per = x[..., self.idx_periodic]
        return torch.cat([torch.cos(per), torch.sin(per), x[..., self.idx_linear]], dim=-1)

    def forward(self, x: Tensor) -> Params:
        return split_params(self.net(self.features(x)), self.d_b, self.param_sizes)


class ConstantConditioner(nn.Module):
    """Free parameters (zero-initialised) for a layer with nothing to condition on.

    Args:
        d_b: number of transformed entries.
        param_sizes: the elementwise map's ``param_sizes``.
    """

    def __init__(self, d_b: int, param_sizes: Sequence[int]) -> None:
        super().__init__()
        self.d_b, self.param_sizes = d_b, tuple(param_sizes)
        self.const = nn.Parameter(torch.zeros(d_b * sum(self.param_sizes)))

    def forward(self, x: Tensor) -> Params:
        return split_params(self.const.expand(*x.shape[:-1], -1), self.d_b, self.param_sizes)


def _block(idx: Tensor) -> slice | None:
    """``idx`` as a slice when it is one contiguous run (indexing is then a free view), else None."""
    start = int(idx[0])
    return (
        slice(start, start + len(idx)) if bool((idx == torch.arange(start, start + len(idx))).all()) else None
    )


def take(x: Tensor, part: slice | None, idx: Tensor) -> Tensor:
    """Entries ``idx`` of the last axis of ``x``; a view when they form the block ``part``."""
    return x[..., part] if part is not None else x.index_select(-1, idx)


def _plain_mlp(net: nn.Module) -> bool:
    """True for an ``nn.Sequential`` that begins and ends with ``nn.Linear`` (what ``nets.mlp`` builds)."""
    return (
        isinstance(net, nn.Sequential)
        and len(net) > 0
        and isinstance(net[0], nn.Linear)
        and isinstance(net[-1], nn.Linear)
    )


class AffineNets(nn.Module):
    """RealNVP's conditioner: separate ``s`` and ``t`` networks (paper 001 §4); returns raw ``(s, t)``.

    Two input layouts:

    * ``masked_input=True``: the nets see the full, masked vector ``x * mask`` (D inputs) and return D outputs,
      of which the b-entries are used (the paper's 1.09 M / 7.9 M parameter models);
    * ``masked_input=False``: the nets see ``x_a`` (d_a inputs) and return d_b outputs (the 2,316-parameter
      dihedral model).

    Fast path (same function, fewer operations): with ``masked_input=True`` and nets that are plain MLPs
    (``nn.Sequential`` from ``nn.Linear`` to ``nn.Linear``), the masked-out inputs, which are zero, and the
    unused a-outputs are skipped by multiplying with the a-columns of the first weight and the b-rows of the
    last one; contiguous partitions are taken as views.

    Args:
        mask: bool, shape (D,); True marks the kept entries ``a``.
        s_net: scale network.
        t_net: shift network.
        masked_input: layout of the nets' inputs and outputs, see above.
    """

    def __init__(self, mask: Tensor, s_net: nn.Module, t_net: nn.Module, masked_input: bool = True) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        idx_a, idx_b = torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten()
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("idx_a", idx_a, persistent=False)
        self.register_buffer("idx_b", idx_b, persistent=False)
        self._slice_a, self._slice_b = _block(idx_a), _block(idx_b)
        self.s_net = s_net
        self.t_net = t_net
        self.masked_input = masked_input

    def _sliced_mlp(self, net: nn.Sequential, xa: Tensor) -> Tensor:
        """``net(x * mask)[..., idx_b]`` computed from ``x_a`` alone, shape (..., d_a) -> (..., d_b)."""
        layers = list(net)
        first, last = layers[0], layers[-1]
        w_in = take(first.weight, self._slice_a, self.idx_a)
        if len(layers) == 1:
            w_out = take(w_in.transpose(0, 1), self._slice_b, self.idx_b).transpose(0, 1)
            b_out = None if first.bias is None else take(first.bias, self._slice_b, self.idx_b)
            return F.linear(xa, w_out, b_out)
        h = F.linear(xa, w_in, first.bias)
        for layer in layers[1:-1]:
            h = layer(h)
        w_out = take(last.weight.transpose(0, 1), self._slice_b, self.idx_b).transpose(0, 1)
        b_out = None if last.bias is None else take(last.bias, self._slice_b, self.idx_b)
        return F.linear(h, w_out, b_out)

    def forward(self, x: Tensor) -> Params:
        xa = take(x, self._slice_a, self.idx_a)
        if not self.masked_input:
            return self.s_net(xa), self.t_net(xa)
        if _plain_mlp(self.s_net) and _plain_mlp(self.t_net):
            return self._sliced_mlp(self.s_net, xa), self._sliced_mlp(self.t_net, xa)
        xm = x * self.mask.to(x.dtype)
        return take(self.s_net(xm), self._slice_b, self.idx_b), take(self.t_net(xm), self._slice_b, self.idx_b)
