"""Force matching for flows on molecules: Cartesian flow forces, the FM loss and paper 004's eq. (5) weights.

A flow on internal coordinates (:mod:`boltzflow.flows.ic_flow`) ends with the internal-coordinate transform, so
``flow.log_prob(x)`` of *flattened Cartesian* positions x (nm) already holds the log-Jacobian of the map from
Cartesian to internal coordinates. Its gradient is therefore the Cartesian force of the flow potential
``u_q(x) = -log q(x)`` in kT/nm, the same units as the MD forces divided by kT:

    f_q(x) = -∇_x u_q(x) = ∇_x log q(x),        f_data(x) = F_MD(x) / kT.

No explicit chain rule through the Z-matrix is needed (autograd does it through the IC layer), and both forces
have zero net force and torque (q and the force field are invariant under rigid motions).

* :func:`flow_forces`: f_q at x, shape (n, D), kT per unit of x, optionally with the graph for training;
* :func:`fm_loss`: eq. (4), ``mean_n ||f_data - f_q||²``, on packed ``[x | f]`` batches
  (:func:`~boltzflow.training.energy_fit.pack_forces`);
* :func:`force_matching_error`: the same number for evaluation, in chunks, with the per-component RMSE;
* :func:`eq5_objective`: the convex combination ``ω_n NLL + ω_k KLD + ω_f FM`` with ``ω_n = 1 - ω_k - ω_f``
  (eq. (5) and Table 1 of paper 004);
* :func:`forces_in_kt`: kJ/mol/nm -> kT/nm at a temperature.

The loss itself is :func:`boltzflow.training.losses.force_matching` (the loss module keeps every plain loss);
this module adds what force matching on molecules needs around it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.flows.flow import Flow
from boltzflow.training.energy_fit import mixed_objective
from boltzflow.training.losses import EnergyFn, LossFn, force_matching

BOLTZMANN_KJ_PER_MOL_K = 0.008314462618  # k_B N_A, kJ/(mol K)


def forces_in_kt(forces_kj: Tensor, temperature_kelvin: float) -> Tensor:
    """Forces in kT per nm from forces in kJ/mol/nm (divided by k_B T at ``temperature_kelvin``)."""
    if not temperature_kelvin > 0:
        raise ValueError(f"temperature_kelvin must be > 0, got {temperature_kelvin}")
    return forces_kj / (BOLTZMANN_KJ_PER_MOL_K * temperature_kelvin)


def flow_forces(flow: Flow, x: Tensor, create_graph: bool = False) -> Tensor:
    """Force of the flow potential, ``f_q = ∇_x log q(x) = -∇_x u_q``.

    Args:
        flow: the model q on flattened configurations.
        x: configurations, shape (n, D) (flattened Cartesian positions, nm, for molecules).
        create_graph: keep the graph (to backpropagate through the force, as in training).

    Returns:
        forces, shape (n, D), kT per unit of x (kT/nm); detached unless ``create_graph``.
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(flow.log_prob(xg).sum(), xg, create_graph=create_graph)
    return grad if create_graph else grad.detach()


def fm_loss(dim: int) -> LossFn:
    """Eq. (4) as a ``(flow, batch) -> scalar`` loss on packed rows ``[x | f]`` of shape (b, 2 dim)."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")

    def loss(flow: Flow, batch: Tensor) -> Tensor:
        if batch.ndim != 2 or batch.shape[1] != 2 * dim:
            raise ValueError(f"force matching needs packed [x | f] rows of width {2 * dim}, got {tuple(batch.shape)}")
        return force_matching(flow, batch[:, :dim], batch[:, dim:])

    return loss


class ForceError(NamedTuple):
    """Force-matching error of a flow on reference forces.

    Attributes:
        fme: eq. (4), mean over frames of the squared error summed over the D components, (kT/nm)².
        rmse: root-mean-square error per Cartesian component, kT/nm.
        n: frames scored.
    """

    fme: float
    rmse: float
    n: int


def force_matching_error(flow: Flow, x: Tensor, forces_kt: Tensor, chunk_size: int = 2000) -> ForceError:
    """FME of ``flow`` on frames ``x`` (n, D) with reference forces ``forces_kt`` (n, D), kT/nm; frames where
    the flow's force is not finite count as failures (they make the FME infinite)."""
    if x.shape != forces_kt.shape or x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x and forces_kt must both be (n >= 1, D), got {tuple(x.shape)}, {tuple(forces_kt.shape)}")
    total = 0.0
    for xs, fs in zip(x.split(chunk_size), forces_kt.split(chunk_size), strict=True):
        sq = ((flow_forces(flow, xs) - fs.to(xs.dtype)) ** 2).sum(-1)
        total += float(torch.nan_to_num(sq, nan=torch.inf).sum())
    fme = total / len(x)
    return ForceError(fme, (fme / x.shape[1]) ** 0.5, len(x))


def eq5_objective(
    dim: int,
    kl_weight: float = 0.0,
    force_weight: float = 0.0,
    energy: EnergyFn | None = None,
    kl_batch: int = 256,
    force_reduction: str = "mean",
) -> LossFn:
    """Paper 004 eq. (5): ``(1 - ω_k - ω_f) NLL + ω_k KLD + ω_f FM`` on packed ``[x | f]`` batches (b, 2 dim).

    FM is by default the *mean* squared force error per Cartesian component (kT/nm)², as in paper 004's code
    (an MSE) with which ω_f = 0.001 was tuned; eq. (4) as printed sums over the D components, which makes the
    same ω_f D times stronger (66× for alanine dipeptide: FM then dominates the loss and the flow gives up
    density for forces; ``docs/results/smooth-flows.md``).

    Args:
        dim: D, the width of x in the packed batch.
        kl_weight: ω_k, weight of the reverse KL (``kl_batch`` flow samples against ``energy``).
        force_weight: ω_f, weight of force matching (eq. (4)).
        energy: reduced energy x (n, D) -> (n,), kT; needed when ``kl_weight > 0``.
        kl_batch: flow samples per reverse-KL estimate.
        force_reduction: ``"mean"`` (paper 004's code) or ``"sum"`` (eq. (4)) over the D components.

    Raises:
        ValueError: a weight outside [0, 1], or ``kl_weight + force_weight > 1``.
    """
    for name, w in (("kl_weight", kl_weight), ("force_weight", force_weight)):
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"{name} must be in [0, 1] (paper 004 eq. (5)), got {w}")
    if kl_weight + force_weight > 1.0:
        raise ValueError(f"kl_weight + force_weight must be <= 1 (ω_n = 1 - ω_k - ω_f), got {kl_weight + force_weight}")
    return mixed_objective(energy, 1.0 - kl_weight - force_weight, kl_weight, force_weight, kl_batch, dim=dim,
                           force_reduction=force_reduction)


__all__ = ["ForceError", "eq5_objective", "flow_forces", "fm_loss", "force_matching_error", "forces_in_kt"]
