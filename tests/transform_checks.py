"""Invariant checks every transform must pass (imported by the transform tests)."""

from __future__ import annotations

import torch

from boltzflow.flows.core import Transform


def jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of a row-wise map at each row of x (n, D), by autograd."""
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], row)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def check_transform(t: Transform, z: torch.Tensor, atol: float = 1e-9) -> None:
    """Invertibility both ways and log-dets against autograd in both directions (float64)."""
    t = t.double()
    x, ld_fwd = t.forward(z)
    z_back, ld_inv = t.inverse(x)
    torch.testing.assert_close(z_back, z, atol=atol, rtol=0)
    x_back, _ = t.forward(z_back)
    torch.testing.assert_close(x_back, x, atol=atol, rtol=0)
    torch.testing.assert_close(ld_fwd, jacobian_logdet(lambda v: t.forward(v)[0], z), atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(ld_inv, jacobian_logdet(lambda v: t.inverse(v)[0], x), atol=1e-8, rtol=1e-8)
    assert ld_fwd.shape == z.shape[:-1]
