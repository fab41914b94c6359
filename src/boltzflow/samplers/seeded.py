"""Short unbiased MD runs from given starting frames: training data for a basin the long MD barely visits.

A Boltzmann generator's weights w = exp(-u)/q correct any proposal that covers a state, so the data a flow is
trained on may over-represent a rare basin as long as the flow learns the basin's *shape*. Repeating the few
frames the long MD has there teaches the flow those frames, not the basin (docs/results/alanine-bg.md); many short
trajectories started from them at the same temperature sample the basin's local equilibrium instead (a
metastable basin relaxes within picoseconds and is left only on its escape time scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boltzflow.errors import BoltzflowError


def short_runs(
    system: Any,
    starts: np.ndarray,
    frames_per_run: int,
    *,
    temperature_kelvin: float = 300.0,
    save_every_ps: float = 0.25,
    equilibrate_ps: float = 2.0,
    friction_per_ps: float = 1.0,
    timestep_fs: float = 2.0,
    seed: int = 0,
    platform: str = "Reference",
    progress: bool = False,
) -> np.ndarray:
    """Langevin MD from each starting frame with fresh velocities; the frames after a short equilibration.

    Args:
        system: ``openmm.System`` of the MD (constraints as in the data the frames come from).
        starts: starting positions, shape (n_runs, n_atoms, 3), nm.
        frames_per_run: frames stored per run.
        temperature_kelvin: thermostat temperature.
        save_every_ps: time between stored frames, ps.
        equilibrate_ps: discarded MD after the start (velocities drawn at ``temperature_kelvin``), ps.
        friction_per_ps, timestep_fs: LangevinMiddleIntegrator settings.
        seed: run ``i`` uses seed ``seed + i`` for its velocities and its thermostat.
        platform: OpenMM platform name.
        progress: show a tqdm bar over the runs.

    Returns:
        positions, shape (n_runs * frames_per_run, n_atoms, 3), nm, ordered by run, then time.

    Raises:
        BoltzflowError: bad shapes, non-finite starts, or an unavailable platform.
    """
    import openmm
    import openmm.unit as unit
    from tqdm.auto import tqdm

    starts = np.asarray(starts, dtype=np.float64)
    n_atoms = system.getNumParticles()
    if starts.ndim != 3 or starts.shape[1:] != (n_atoms, 3) or len(starts) == 0:
        raise BoltzflowError(f"starts must have shape (n_runs >= 1, {n_atoms}, 3), got {starts.shape}")
    if not np.isfinite(starts).all():
        raise BoltzflowError("starts hold non-finite positions")
    if frames_per_run < 1:
        raise BoltzflowError(f"frames_per_run must be >= 1, got {frames_per_run}")
    for name, value in (("temperature_kelvin", temperature_kelvin), ("save_every_ps", save_every_ps),
                        ("timestep_fs", timestep_fs)):
        if not value > 0:
            raise BoltzflowError(f"{name} must be positive, got {value}")
    if not (equilibrate_ps >= 0 and friction_per_ps >= 0):
        raise BoltzflowError(
            f"equilibrate_ps and friction_per_ps must be >= 0, got {equilibrate_ps}, {friction_per_ps}"
        )
    steps_per_frame = max(1, int(round(save_every_ps * 1000.0 / timestep_fs)))
    equil_steps = int(round(equilibrate_ps * 1000.0 / timestep_fs))
    try:
        plat = openmm.Platform.getPlatformByName(platform)
    except Exception:
        raise BoltzflowError(f"OpenMM platform {platform!r} is not available; use Reference or CPU") from None
    out = np.empty((len(starts), frames_per_run, n_atoms, 3))
    for i in tqdm(range(len(starts)), desc="seed MD", disable=not progress, leave=False):
        integrator = openmm.LangevinMiddleIntegrator(
            temperature_kelvin * unit.kelvin, friction_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
        )
        integrator.setRandomNumberSeed(seed + i + 1)  # OpenMM reads seed 0 as "pick one at random"
        context = openmm.Context(system, integrator, plat)
        context.setPositions(starts[i] * unit.nanometer)
        context.applyConstraints(1e-8)
        context.setVelocitiesToTemperature(temperature_kelvin * unit.kelvin, seed + i + 1)
        if equil_steps:
            integrator.step(equil_steps)
        for f in range(frames_per_run):
            integrator.step(steps_per_frame)
            state = context.getState(getPositions=True)
            out[i, f] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        del context, integrator
    return out.reshape(-1, n_atoms, 3)
