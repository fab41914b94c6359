"""MD on AMBER and on flow potentials for ``smooth-flows`` (paper 004 §6.5, Fig. 4).

* NVE: ``runs`` starts (evenly spaced test frames, bonds redrawn), Maxwell-Boltzmann velocities at the system's
  temperature, ``equilibrate_ps`` of BAOAB Langevin at ``equilibrate_friction`` in *each* potential, then
  ``nve_ps`` of velocity Verlet at ``timestep_fs``. Reported per run: the SD of the total energy divided by the
  degrees of freedom 3N - 6 (kJ/mol per dof, paper 004's measure), its drift, and whether it fell apart
  (non-finite energy). Runs are independent rows of one batch, so a run that diverges does not touch the others.
* Langevin on the smooth-flow potential (after the same equilibration): the torus W2 of its (φ, ψ) frames to
  the flow's own samples, beside the floor (two disjoint sets of flow samples of the same size).

Potentials: ``amber`` (the system's torch force field, kJ/mol), ``smooth`` and ``spline`` (kT · (-log q)).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.eval.wasserstein import w2_with_floor
from boltzflow.experiments.runner import cached_stage, file_sha256
from boltzflow.samplers.dynamics import equilibrated_run
from boltzflow.samplers.flow_potential import BOLTZMANN_KJ_PER_MOL_K, FlowPotential


def _amber(system: Any):
    energy = system.energy()

    def potential(x: Tensor) -> tuple[Tensor, Tensor]:
        bad = ~torch.isfinite(x).flatten(1).all(-1)
        ef = energy.energy_and_force(torch.where(bad[:, None, None], torch.zeros_like(x), x))
        nan = torch.full_like(ef.energy_kj, float("nan"))
        return torch.where(bad, nan, ef.energy_kj), torch.where(bad[:, None, None], nan[:, None, None], ef.force_kj)

    return potential


def pick_md_flows(keep: dict[tuple[str, float, float], Any]) -> dict[str, tuple[Any, str]]:
    """The smooth flow with the largest ω_f at ω_k = 0 (else any smooth one) and the plain (0, 0) spline."""
    out = {}
    smooth = sorted((c for c in keep if c[0] == "smooth"), key=lambda c: (c[1] != 0, -c[2]))
    spline = sorted((c for c in keep if c[0] == "spline"), key=lambda c: (c[1], c[2]))
    for name, cells in (("smooth", smooth), ("spline", spline)):
        if cells:
            out[name] = (*keep[cells[0]], cells[0])
    return out


def _nve(potential: Any, x0: Tensor, masses: Tensor, kt: float, md: Any, gen: torch.Generator) -> dict[str, Any]:
    dt = md.timestep_fs / 1000.0
    every = max(1, int(round(md.save_every_fs / md.timestep_fs)))
    traj = equilibrated_run(potential, x0, masses, kt, dt, int(round(md.equilibrate_ps / dt)),
                            int(round(md.nve_ps / dt)), every, 0.0, md.equilibrate_friction, gen,
                            stop_on_nonfinite=False)
    total = traj.total.numpy()
    n_dof = 3 * x0.shape[1] - 6
    finite = np.isfinite(total).all(0)
    sd = np.where(finite, total.std(0) / n_dof, np.nan)
    return {"sd_per_dof_kj": _json(sd), "max_sd_per_dof_kj": float(np.max(sd)) if finite.all() else None,
            "drift_kj": _json(total[-1] - total[0]), "diverged": int((~finite).sum()),
            "n_dof": n_dof, "time_ps": traj.time.numpy().tolist(),
            "total_kj": [_json(r) for r in (total - total[:1]).T]}


def _json(a: np.ndarray) -> list[float | None]:
    """Floats with NaN/inf as None (JSON has no NaN)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64).ravel()]


def _langevin_w2(flow: Any, system: Any, x0: Tensor, masses: Tensor, kt: float, md: Any,
                 gen: torch.Generator) -> dict[str, Any]:
    dt = md.timestep_fs / 1000.0
    every = max(1, int(round(md.save_every_fs / md.timestep_fs)))
    pot = FlowPotential(flow, system.event_shape, system.temperature_kelvin)
    traj = equilibrated_run(pot, x0, masses, kt, dt, int(round(md.equilibrate_ps / dt)),
                            max(every, int(round(md.langevin_ps / dt))), every, md.langevin_friction,
                            md.equilibrate_friction, gen)
    md_angles = system.phi_psi(traj.x[1:].flatten(0, 1))[..., 0, :].numpy()
    n = min(md.w2_n, len(md_angles))
    with torch.no_grad():
        s = flow.sample(2 * n, gen).x
    flow_angles = system.phi_psi(s.unflatten(-1, tuple(system.event_shape)))[..., 0, :].numpy()
    return {"frames": len(md_angles), **w2_with_floor(flow_angles, md_angles, n=n, metric="torus", generator=0)}


def md_study(out: Path, system: Any, keep: dict[tuple[str, float, float], Any], x_test: Tensor, md: Any,
             seed: int, cache: Path | None = None) -> dict[str, Any]:
    """NVE per potential and the Langevin W2 of the smooth flow; writes ``figures/nve_energy.png``.

    With ``cache`` (a folder), each potential's NVE and the Langevin W2 are saved there as ``md-<name>.json`` when
    they finish, and reused by a resumed run with the same protocol, starts, seed and checkpoint."""
    shape = tuple(system.event_shape)
    idx = np.linspace(0, len(x_test) - 1, md.runs).round().astype(int)
    x0 = x_test[idx].to(torch.float64).unflatten(-1, shape)
    mol = system.molecule("none")
    masses = torch.tensor([mol.system.getParticleMass(i)._value for i in range(shape[0])], dtype=torch.float64)
    kt = BOLTZMANN_KJ_PER_MOL_K * system.temperature_kelvin
    flows = pick_md_flows(keep)
    result: dict[str, Any] = {"protocol": {"runs": md.runs, "equilibrate_ps": md.equilibrate_ps,
                                           "equilibrate_friction_per_ps": md.equilibrate_friction,
                                           "nve_ps": md.nve_ps, "timestep_fs": md.timestep_fs}}
    potentials = {"amber": (_amber(system), None)}
    potentials.update({k: (FlowPotential(f, shape, system.temperature_kelvin), (path, cell))
                       for k, (f, path, cell) in flows.items()})
    base_key = {"protocol": asdict(md), "seed": seed, "x0_sha256": hashlib.sha256(x0.numpy().tobytes()).hexdigest()}

    def stage(name: str, where: tuple[str, Any] | None, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if cache is None:
            return compute()
        key = {**base_key, "checkpoint_sha256": None if where is None else file_sha256(where[0])}
        return cached_stage(cache / f"md-{name}.json", key, compute)

    for name, (pot, where) in potentials.items():
        def nve(pot: Any = pot, where: tuple[str, Any] | None = where) -> dict[str, Any]:
            r = _nve(pot, x0, masses, kt, md, torch.Generator().manual_seed(seed))
            if where is not None:
                r.update(checkpoint=where[0], cell=list(where[1]))
            return r

        result[name] = stage(name, where, nve)
    if "smooth" in flows:
        def langevin() -> dict[str, Any]:
            try:
                return _langevin_w2(flows["smooth"][0], system, x0, masses, kt, md,
                                    torch.Generator().manual_seed(seed + 1))
            except BoltzflowError as err:  # the Langevin run fell apart: say so instead of losing the whole study
                return {"error": " ".join(str(err).split())}

        result["langevin_w2_smooth"] = stage("langevin_w2_smooth", flows["smooth"][1:], langevin)
    _figure(out / "figures" / "nve_energy.png", result, [k for k in potentials])
    return result


def _figure(path: Path, result: dict[str, Any], names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        r = result[name]
        t = np.asarray(r["time_ps"])
        for k, row in enumerate(r["total_kj"]):
            first = k == 0  # one run highlighted, as in paper 004 Fig. 4
            ax.plot(t, np.asarray(row, dtype=np.float64), color="black" if first else "0.7", lw=1.0 if first else 0.6,
                    zorder=2 if first else 1)
        ax.set(title=f"{name}: {r['diverged']} of {len(r['total_kj'])} diverged", xlabel="t / ps",
               ylabel="E_tot - E_tot(0) / kJ/mol")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["md_study", "pick_md_flows"]
