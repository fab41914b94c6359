"""Local bi-Lipschitz estimates of a flow from its Jacobians along samples.

For a differentiable bijection f: R^D -> R^D the local Lipschitz constant at z is the largest singular value
of the Jacobian, sigma_max(J_f(z)). The inverse map has Jacobian J_{f^-1}(f(z)) = J_f(z)^-1, whose largest
singular value is 1 / sigma_min(J_f(z)). So one SVD of J_f(z) per point gives both constants:

* forward (z -> x):  L_f(z)    = sigma_max(J_f(z)),
* inverse (x -> z):  L_finv(x) = 1 / sigma_min(J_f(z)) at x = f(z),

and sum_i log sigma_i(J_f(z)) = log|det J_f(z)|, the flow's forward logdet. Over a sample of points the
estimate is reported as the maximum and a high quantile (the maximum alone is a noisy extreme value).
These are lower bounds on the global constants: only the sampled points are seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

RowwiseMap = Callable[[Tensor], Tensor]


class LipschitzEstimate(NamedTuple):
    """Local Lipschitz constants over a set of points.

    Attributes:
        max: largest value over the points (units of output per unit of input).
        quantile: the ``q``-quantile of the per-point values.
        q: the quantile level (0.999 by default).
        n: number of points.
    """

    max: float
    quantile: float
    q: float
    n: int


def jacobians(fn: RowwiseMap, z: Tensor, chunk_size: int = 1024) -> Tensor:
    """Jacobians d fn(z)_i / d z_j at every row of ``z``.

    Computed with ``torch.func.vmap(torch.func.jacrev(...))`` over single points (each point goes through
    ``fn`` as a batch of one), ``chunk_size`` points at a time. Parameters of ``fn`` get no gradient graph.

    Args:
        fn: map acting row-wise, shape (n, D) -> (n, D), e.g. ``lambda z: flow.transform.forward(z)[0]``.
            Must be vmap-compatible: no in-place writes into its input, no data-dependent Python control
            flow.
        z: points, shape (n, D).
        chunk_size: points per vmap call (memory grows as chunk_size * D^2 plus fn's activations).

    Returns:
        Jacobians, shape (n, D, D), dtype and device of ``z``; entry [k, i, j] = d fn(z_k)_i / d z_kj.
    """
    z = _check_points(z, chunk_size)
    jac = torch.func.vmap(torch.func.jacrev(_single_point(fn, z.shape[1])))
    with torch.no_grad():
        return torch.cat([jac(chunk) for chunk in z.split(chunk_size)], dim=0)


def jacobian_singular_values(fn: RowwiseMap, z: Tensor, chunk_size: int = 1024) -> Tensor:
    """Singular values of the Jacobian of ``fn`` at every row of ``z``, descending, shape (n, D).

    Args: as :func:`jacobians`. Only one chunk of Jacobians is held in memory at a time.
    """
    z = _check_points(z, chunk_size)
    jac = torch.func.vmap(torch.func.jacrev(_single_point(fn, z.shape[1])))
    with torch.no_grad():
        return torch.cat([torch.linalg.svdvals(jac(chunk)) for chunk in z.split(chunk_size)], dim=0)


def bi_lipschitz(
    fn: RowwiseMap, z: Tensor, q: float = 0.999, chunk_size: int = 1024
) -> tuple[LipschitzEstimate, LipschitzEstimate]:
    """Forward and inverse local Lipschitz constants of a bijection along samples.

    One SVD of J_fn(z) per point serves both directions: forward = sigma_max(J_fn(z)); inverse =
    1 / sigma_min(J_fn(z)), which equals sigma_max of the inverse map's Jacobian at fn(z). So the inverse
    map is never evaluated.

    Args:
        fn: the forward map, row-wise (n, D) -> (n, D), e.g. ``lambda z: flow.transform.forward(z)[0]``.
        z: points in the input space of ``fn``, shape (n, D) (e.g. base samples for a flow).
        q: quantile level reported beside the maximum, in (0, 1].
        chunk_size: points per vmap call.

    Returns:
        ``(forward, inverse)`` estimates. A singular Jacobian gives an infinite inverse constant.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile level q must be in (0, 1], got {q}")
    sv = jacobian_singular_values(fn, z, chunk_size)
    forward = sv[:, 0]
    inverse = 1.0 / sv[:, -1]  # sigma_min = 0 gives inf, the honest answer for a non-invertible point
    return _estimate(forward, q), _estimate(inverse, q)


def _estimate(values: Tensor, q: float) -> LipschitzEstimate:
    v = values.detach().to(torch.float64).cpu()
    return LipschitzEstimate(float(v.max()), float(torch.quantile(v, q)), float(q), int(v.numel()))


def _single_point(fn: RowwiseMap, dim: int) -> Callable[[Tensor], Tensor]:
    """``fn`` on one point: (D,) -> (1, D) -> fn -> (D,), checking that fn keeps the dimension."""

    def single(point: Tensor) -> Tensor:
        out = fn(point.unsqueeze(0))
        if out.shape != (1, dim):
            raise ValueError(
                f"fn must map shape (n, {dim}) to (n, {dim}); a batch of one came back as {tuple(out.shape)}"
            )
        return out.squeeze(0)

    return single


def _check_points(z: Tensor, chunk_size: int) -> Tensor:
    if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[0] == 0:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"z must be a non-empty tensor of shape (n, D), got {shape}")
    if not torch.is_floating_point(z):
        raise ValueError(f"z must be a floating-point tensor, got {z.dtype}")
    if not torch.isfinite(z).all():
        raise ValueError("z contains NaN or inf values; remove those points first")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return z.detach()


class BallSupremum(NamedTuple):
    """Supremum of the local Lipschitz constant over a latent ball, found by local ascent.

    Attributes:
        value: largest sigma_max(J_fn(z)) found with ``|z| <= radius`` (a lower bound on the sup).
        z: the point where it was found, shape (D,).
        start_value: the best value among the starting points, before ascent.
        radius: the ball's radius.
        n_starts: number of ascent runs.
    """

    value: float
    z: Tensor
    start_value: float
    radius: float
    n_starts: int


def ball_supremum(
    fn: RowwiseMap,
    z: Tensor,
    radius: float,
    n_starts: int = 32,
    steps: int = 200,
    lr: float = 0.02,
    chunk_size: int = 1024,
    inverse: bool = False,
) -> BallSupremum:
    """Lipschitz constant of ``fn`` on the ball ``|z| <= radius``: best sample, then projected gradient ascent.

    A maximum over random samples is a noisy extreme value (it depends on which rare points were drawn). Here the
    ``n_starts`` sampled points inside the ball with the largest sigma_max(J_fn) start Adam ascent on
    log sigma_max(J_fn(z)), each step projected back onto the ball, and the largest value seen is returned. That
    turns the sample maximum into a local maximum of a fixed, well-defined quantity (the sup over the ball),
    which is far less sensitive to the draw. It is still a lower bound: the ascent finds local maxima only.

    Args:
        fn: the map, row-wise (n, D) -> (n, D); must be twice differentiable under ``torch.func``.
        z: candidate points, shape (n, D); those outside the ball are ignored.
        radius: radius of the ball (e.g. the latent radius holding 99.9 % of a Gaussian base's mass).
        n_starts: ascent runs, started from the best candidates.
        steps: Adam steps per run.
        lr: Adam step size (units of z).
        chunk_size: points per vmap call when scoring the candidates.
        inverse: maximise 1 / sigma_min(J_fn(z)) instead, the inverse map's constant on the image of the ball.

    Raises:
        ValueError: no candidate inside the ball, or a non-positive radius.
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    z = _check_points(z, chunk_size)
    inside = z[z.norm(dim=1) <= radius]
    if len(inside) == 0:
        raise ValueError(f"no candidate point lies inside the ball of radius {radius}")
    pick = (lambda sv: 1.0 / sv[..., -1]) if inverse else (lambda sv: sv[..., 0])
    sigma = pick(jacobian_singular_values(fn, inside, chunk_size))
    order = torch.argsort(sigma, descending=True)[:n_starts]
    start_value = float(sigma[order[0]])
    single = _single_point(fn, z.shape[1])
    log_sigma = torch.func.vmap(lambda p: pick(torch.linalg.svdvals(torch.func.jacrev(single)(p))).log())
    points = inside[order].clone().requires_grad_(True)
    opt = torch.optim.Adam([points], lr=lr)
    best, best_z = start_value, inside[order[0]].clone()
    for _ in range(steps):
        values = log_sigma(points)
        finite = torch.isfinite(values)
        if not finite.any():
            break
        # gradient for the points only: the map's own parameters get no .grad from this estimate
        (points.grad,) = torch.autograd.grad(-values[finite].sum(), points)
        seen = values.detach()
        k = int(torch.argmax(torch.where(finite, seen, torch.full_like(seen, -torch.inf))))
        if finite[k] and float(seen[k].exp()) > best:
            best, best_z = float(seen[k].exp()), points[k].detach().clone()
        opt.step()
        with torch.no_grad():  # project onto the ball
            norm = points.norm(dim=1, keepdim=True)
            points.mul_(torch.clamp(radius / norm, max=1.0))
    with torch.no_grad():  # the points after the last step
        final = pick(jacobian_singular_values(fn, points.detach(), chunk_size))
        k = int(torch.argmax(torch.nan_to_num(final, nan=-1.0)))
        if float(final[k]) > best:
            best, best_z = float(final[k]), points[k].detach().clone()
    return BallSupremum(best, best_z, start_value, float(radius), int(len(order)))


def gaussian_ball_radius(dim: int, mass: float = 0.999) -> float:
    """Radius of the centred ball holding ``mass`` of a standard normal in ``dim`` dimensions (chi quantile)."""
    from scipy.stats import chi2

    if not 0.0 < mass < 1.0:
        raise ValueError(f"mass must be in (0, 1), got {mass}")
    return float(chi2.ppf(mass, dim) ** 0.5)
