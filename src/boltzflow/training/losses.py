"""Losses as plain functions ``(flow, batch, ...) -> scalar tensor``."""

from __future__ import annotations

from torch import Tensor

from boltzflow.flows.flow import Flow


def nll(flow: Flow, x: Tensor) -> Tensor:
    """Negative log-likelihood of data (forward KL up to a constant), paper 001 §4.

    Args:
        flow: the model q.
        x: data, shape (n, D).

    Returns:
        ``-mean(log q(x))``, a scalar in nats.
    """
    return -flow.log_prob(x).mean()
