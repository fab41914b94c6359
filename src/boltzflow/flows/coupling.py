"""The one coupling layer: a partition, a conditioner and any elementwise map.

``Coupling(mask, conditioner, elementwise)`` keeps the entries marked True in ``mask`` (the part ``a``) and maps
the others (``b``) through ``elementwise`` with parameters ``conditioner(x)`` computed from ``a`` alone, so the
Jacobian is triangular and log|det| is the sum of the elementwise log-slopes::

    forward (sampling):  x_a = z_a,  x_b = f(z_b; c(z_a)),       log|det dx/dz| = sum_j log|f'(z_b,j)|
    inverse (density):   z_a = x_a,  z_b = f^-1(x_b; c(x_a)),    log|det dz/dx| = sum_j log|(f^-1)'(x_b,j)|

RealNVP (:mod:`~boltzflow.flows.realnvp`: :class:`~boltzflow.flows.elementwise.Affine` with
:class:`~boltzflow.flows.conditioners.AffineNets`), the torus flow (:mod:`~boltzflow.flows.torus`) and the
internal-coordinate flows (:mod:`~boltzflow.flows.ic_flow`: splines or smooth mixtures with an
:class:`~boltzflow.flows.conditioners.MLPConditioner`) are all built from it.

Older checkpoints stored three separate classes (``AffineCoupling`` with ``s_net``/``t_net``,
``CircularSplineCoupling`` and ``MixedSplineCoupling`` with ``net`` or ``const``, each with its index buffers).
``load_state_dict`` accepts those keys: they are moved under ``conditioner.`` and the stored partitions are
checked against the layer's (see :func:`upgrade_legacy_keys`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from boltzflow.flows.conditioners import _block, take
from boltzflow.flows.core import Transform
from boltzflow.flows.elementwise import Elementwise

#: top-level names of the conditioner's modules and parameters in the old coupling classes
LEGACY_CONDITIONER_KEYS = ("s_net", "t_net", "net", "const")
#: index buffers the old coupling classes stored in their state dicts
LEGACY_INDEX_KEYS = ("mask", "idx_a", "idx_b", "idx_a_per", "idx_a_lin")


class Coupling(Transform):
    """Coupling layer ``(z_a, z_b) -> (z_a, f(z_b; c(z_a)))`` for any elementwise map ``f``.

    Args:
        mask: bool, shape (D,); True marks the kept (conditioning) entries ``a``; at least one False.
        conditioner: module ``x (..., D) -> params`` of ``elementwise`` for the b-entries, reading only a.
        elementwise: an :class:`~boltzflow.flows.elementwise.Elementwise` map.
    """

    def __init__(self, mask: Tensor, conditioner: nn.Module, elementwise: Elementwise) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.ndim != 1 or mask.all():
            raise ValueError("coupling mask must be 1-D and leave at least one entry to transform")
        idx_a, idx_b = torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten()
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("idx_a", idx_a, persistent=False)
        self.register_buffer("idx_b", idx_b, persistent=False)
        # order that puts cat([x_a, y_b]) back into place
        self.register_buffer("_unsort", torch.argsort(torch.cat([idx_a, idx_b])), persistent=False)
        self._slice_a = _block(idx_a) if idx_a.numel() else slice(0, 0)
        self._slice_b = _block(idx_b)
        self.conditioner = conditioner
        self.elementwise = elementwise

    def _join(self, x: Tensor, yb: Tensor) -> Tensor:
        """``x`` with its b-entries replaced by ``yb`` (..., d_b); out of place (vmap/jacrev-safe)."""
        xa = take(x, self._slice_a, self.idx_a)
        if self._slice_a is not None and self._slice_b is not None:
            return torch.cat([xa, yb], -1) if self._slice_a.start == 0 else torch.cat([yb, xa], -1)
        return torch.cat([xa, yb], -1).index_select(-1, self._unsort)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        yb, logdet = self.elementwise.forward(take(z, self._slice_b, self.idx_b), self.conditioner(z))
        return self._join(z, yb), logdet.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        yb, logdet = self.elementwise.inverse(take(x, self._slice_b, self.idx_b), self.conditioner(x))
        return self._join(x, yb), logdet.sum(-1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        errors.extend(upgrade_legacy_keys(self, state_dict, prefix))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)


def _legacy_partition(layer: Coupling) -> dict[str, Tensor]:
    """What the old classes stored under each index key, computed from this layer."""
    parts = {"mask": layer.mask, "idx_a": layer.idx_a, "idx_b": layer.idx_b}
    per = getattr(layer.conditioner, "idx_periodic", None)
    if per is not None:
        parts["idx_a_per"], parts["idx_a_lin"] = per, layer.conditioner.idx_linear
    return parts


def upgrade_legacy_keys(layer: Coupling, state_dict: dict[str, Tensor], prefix: str) -> list[str]:
    """Rewrite, in place, the keys of an old coupling class under ``prefix`` to this layer's layout.

    ``s_net.*``, ``t_net.*``, ``net.*`` and ``const`` move under ``conditioner.``; the stored index buffers
    (``mask``, ``idx_a``, ``idx_b``, ``idx_a_per``, ``idx_a_lin``) are compared with the layer's partition
    and dropped. Returns error messages for partitions that differ (``load_state_dict`` raises on them).
    """
    errors = []
    expected = _legacy_partition(layer)
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        head = rest.split(".", 1)[0]
        if head in LEGACY_CONDITIONER_KEYS and head not in layer._modules:
            state_dict[prefix + "conditioner." + rest] = state_dict.pop(key)
        elif rest in LEGACY_INDEX_KEYS:
            stored, ours = state_dict.pop(key), expected.get(rest)
            if ours is None or stored.shape != ours.shape or not torch.equal(stored.to(ours.dtype), ours):
                errors.append(f"{key}: the stored partition does not match this coupling layer's")
    return errors
