"""Conditioner networks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_net_config(
    n_layers: Any = 1, hidden: Any = (), activation: Any = "silu", **counts: tuple[Any, int]
) -> None:
    """Raise a one-line ValueError naming the offending key of a flow config.

    Args:
        n_layers: number of coupling layers or blocks, an integer >= 1.
        hidden: hidden widths, a list of integers >= 1 (may be empty).
        activation: a key of :data:`ACTIVATIONS`.
        counts: further integer keys with their minimum, e.g. ``bins=(cfg.bins, 2)``.
    """
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"n_layers must be an integer >= 1, got {n_layers!r}")
    if isinstance(hidden, str | bytes) or not isinstance(hidden, Sequence):
        raise ValueError(f"hidden must be a list of layer widths, got {hidden!r}")
    if not all(_is_int(h) and h >= 1 for h in hidden):
        raise ValueError(f"hidden widths must be integers >= 1, got {list(hidden)!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    for key, (value, low) in counts.items():
        if not _is_int(value) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")


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
    check_net_config(hidden=hidden, activation=activation)
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
