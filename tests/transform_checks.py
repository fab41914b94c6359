"""Invariant checks every transform must pass (imported by the transform tests)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from boltzflow.flows.core import Transform


def jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of a row-wise map at each row of x (n, D), by autograd."""
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], row)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def assert_close_mod(a: torch.Tensor, b: torch.Tensor, periodic: Sequence[int], atol: float) -> None:
    """a == b, entries ``periodic`` compared modulo 2 pi."""
    diff = a - b
    if periodic:
        idx = torch.as_tensor(list(periodic))
        diff[..., idx] = torch.remainder(diff[..., idx] + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(diff, torch.zeros_like(diff), atol=atol, rtol=0)


def check_transform(t: Transform, z: torch.Tensor, atol: float = 1e-9, periodic: Sequence[int] = ()) -> None:
    """Invertibility both ways and log-dets against autograd in both directions (float64).

    Args:
        t: the transform.
        z: latent inputs, shape (n, D).
        atol: tolerance of the round trips.
        periodic: entries that are angles (compared modulo 2 pi).
    """
    t = t.double()
    x, ld_fwd = t.forward(z)
    z_back, ld_inv = t.inverse(x)
    assert_close_mod(z_back, z, periodic, atol)
    x_back, _ = t.forward(z_back)
    assert_close_mod(x_back, x, periodic, atol)
    torch.testing.assert_close(ld_fwd, jacobian_logdet(lambda v: t.forward(v)[0], z), atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(ld_inv, jacobian_logdet(lambda v: t.inverse(v)[0], x), atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(ld_inv, -ld_fwd, atol=1e-8, rtol=1e-8)
    assert ld_fwd.shape == z.shape[:-1] and ld_inv.shape == z.shape[:-1]


def randomise(module: torch.nn.Module, std: float, seed: int) -> torch.nn.Module:
    """Non-trivial weights N(0, std²) in place (zero-initialised last layers would make every coupling the
    identity); returns the module."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module
