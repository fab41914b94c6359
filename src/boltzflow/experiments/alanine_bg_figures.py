"""Figures of the alanine-dipeptide BG reproduction: F(φ, ψ), F(φ) beside the umbrella reference, energy histograms."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor


def figures(out: Path, system: Any, s: Any, xyz_md: np.ndarray, x_test: Tensor, u_flat: Callable[[Tensor], Tensor],
            umbrella: dict[str, Any]) -> None:
    """Write ``figures/free_energy_phi_psi.png``, ``free_energy_phi.png`` and ``energy_histograms.png``.

    Args:
        out: the run folder.
        system: the molecule system (its ``phi_psi`` and event shape).
        s: BG samples: ``x`` (n, dim) nm, ``log_w`` (n,), ``u`` (n,) kT.
        xyz_md: MD frames, shape (m, *event_shape), nm.
        x_test: held-out MD frames, shape (k, dim), nm.
        u_flat: reduced energy on (k, dim), kT.
        umbrella: the free-energy reference (``phi_grid`` rad, ``free_energy_kt``), or {}.
    """
    from boltzflow import plots

    w = torch.softmax(torch.nan_to_num(s.log_w, nan=-math.inf), 0).numpy()
    ang_bg = np.degrees(system.phi_psi(s.x.unflatten(-1, tuple(system.event_shape)))[:, 0].numpy())
    ang_md = np.degrees(system.phi_psi(torch.as_tensor(xyz_md))[:, 0].numpy())
    fig = plots.free_energy_phi_psi([("MD data", ang_md, None), ("BG, reweighted", ang_bg, w)])
    plots.save(fig, out / "figures" / "free_energy_phi_psi.png")
    ref = None
    if "phi_grid" in umbrella and "free_energy_kt" in umbrella:
        ref = ("umbrella/MBAR", np.degrees(umbrella["phi_grid"]), np.asarray(umbrella["free_energy_kt"]))
    fig = plots.free_energy_phi([("MD data", ang_md[:, 0], None), ("BG, reweighted", ang_bg[:, 0], w)], ref)
    plots.save(fig, out / "figures" / "free_energy_phi.png")
    with torch.no_grad():
        u_md = torch.cat([u_flat(c) for c in x_test.split(5000)]).numpy()
    fig = plots.energy_histograms(u_md, s.u.numpy(), w, ref_label="MD test frames")
    plots.save(fig, out / "figures" / "energy_histograms.png")
