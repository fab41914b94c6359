"""The networks of the learned Boltzmann curves (:mod:`boltzflow.training.fisher_rao`), float64 MLPs on ``[x, t]``.

* :class:`TimeMLP`: ``g(t, x)``, the free velocity v_theta (d outputs) or the curve correction phi_theta (1 output);
* :class:`GradientVelocity`: ``v = grad_x psi_theta(t, x)``, the least-kinetic-energy solution of the residual;
* :class:`TimeScalar`: the log Z rate C_phi(t).

Inputs and outputs are scaled (``x_scale``, ``out_scale``) so the MLPs see and produce O(1) numbers whatever the
size of the target; the time enters as one more input column (Máté & Fleuret; notes §2.4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from boltzflow.flows.nets import mlp


def time_column(t: Tensor | float, x: Tensor) -> Tensor:
    """t (a float, shape () or (n,)) as a column of shape (n, 1) matching x (n, d) in dtype and device."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(-1, 1).expand(x.shape[0], 1) if t.numel() == 1 else t.reshape(-1, 1)


class TimeMLP(nn.Module):
    """``g(t, x) = out_scale * MLP([x / x_scale, t])``: the velocity v_theta (out = d) or phi_theta (out = 1).

    Args:
        dim: d, the dimension of x.
        out: output features (d for a velocity, 1 for a scalar field, which is returned with shape (n,)).
        hidden: hidden widths.
        activation: one of :data:`boltzflow.flows.nets.ACTIVATIONS`.
        x_scale: typical size of x (so the network sees O(1) inputs), units of x.
        out_scale: typical size of the output.
    """

    def __init__(
        self,
        dim: int,
        out: int,
        hidden: Sequence[int] = (128, 128, 128),
        activation: str = "silu",
        x_scale: float = 1.0,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = mlp(dim + 1, out, hidden, activation, zero_last=False)
        self.out, self.x_scale, self.out_scale = out, float(x_scale), float(out_scale)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        y = self.out_scale * self.net(torch.cat([x / self.x_scale, time_column(t, x)], -1))
        return y.squeeze(-1) if self.out == 1 else y


class GradientVelocity(nn.Module):
    """``v_theta(t, x) = grad_x psi_theta(t, x)``: a velocity that is a gradient field by construction.

    The residual fixes v only up to fields w with ``div(rho_t w) = 0`` (in 2-D, ``w = J grad chi / rho_t``
    for any chi), so a free network can keep an arbitrary such part. Among all solutions the gradient one is
    unique (the weighted Poisson equation of notes §2.1) and has the least kinetic energy, i.e. it is the W2
    velocity whose L2(rho_t) norm is the metric speed. Its divergence is the Laplacian of psi.

    Args:
        dim: d.
        hidden: hidden widths of psi.
        activation: activation of psi.
        x_scale: typical size of x.
        out_scale: typical size of psi (velocity scale times x_scale).
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128, 128),
        activation: str = "silu",
        x_scale: float = 1.0,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.potential = TimeMLP(dim, 1, hidden, activation, x_scale, out_scale)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.potential(t, xg).sum(), xg, create_graph=True)
        return grad


class TimeScalar(nn.Module):
    """The scalar C_phi(t) = MLP([t]); output has the shape of t (() or (n,))."""

    def __init__(self, hidden: Sequence[int] = (64, 64), activation: str = "silu", scale: float = 1.0) -> None:
        super().__init__()
        self.net = mlp(1, 1, hidden, activation, zero_last=False)
        self.scale = float(scale)

    def forward(self, t: Tensor) -> Tensor:
        return self.scale * self.net(t.reshape(-1, 1)).reshape(t.shape)
