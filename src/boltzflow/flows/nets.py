"""Conditioner networks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}


def mlp(
    d_in: int, d_out: int, hidden: Sequence[int], activation: str = "silu", zero_last: bool = True
) -> nn.Sequential:
    """A plain MLP ``d_in -> hidden... -> d_out``.

    Args:
        d_in: input features.
        d_out: output features.
        hidden: widths of the hidden layers.
        activation: one of ``ACTIVATIONS``.
        zero_last: zero-initialise the last layer so a coupling layer starts as the identity.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    widths = [d_in, *hidden, d_out]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    if zero_last:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)
