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
from boltzflow.samplers.openmm_run import Langevin, non_negative, open_context, positive, run_frames, start


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
        BoltzflowError: bad shapes, non-finite starts, a setting out of range, an unavailable platform, or a
            run that diverged (:class:`~boltzflow.samplers.openmm_run.NonFiniteError`, naming run and frame).
    """
    from tqdm.auto import tqdm

    starts = np.asarray(starts, dtype=np.float64)
    n_atoms = system.getNumParticles()
    if starts.ndim != 3 or starts.shape[1:] != (n_atoms, 3) or len(starts) == 0:
        raise BoltzflowError(f"starts must have shape (n_runs >= 1, {n_atoms}, 3), got {starts.shape}")
    if not np.isfinite(starts).all():
        raise BoltzflowError("starts hold non-finite positions")
    if not (isinstance(frames_per_run, int | np.integer) and frames_per_run >= 1):
        raise BoltzflowError(f"frames_per_run must be an integer >= 1, got {frames_per_run!r}")
    langevin = Langevin(temperature_kelvin, friction_per_ps, timestep_fs)
    try:
        langevin.validate()
        positive(save_every_ps, "save_every_ps")
        non_negative(equilibrate_ps, "equilibrate_ps")
    except ValueError as err:
        raise BoltzflowError(str(err)) from None
    steps_per_frame = max(1, langevin.steps(save_every_ps))
    out = np.empty((len(starts), frames_per_run, n_atoms, 3))
    for i in tqdm(range(len(starts)), desc="seed MD", disable=not progress, leave=False):
        run_seed = seed + i + 1  # OpenMM reads seed 0 as "pick one at random"
        context = open_context(system, langevin, platform, run_seed)
        label = f"seeding run {i} (seed {run_seed})"
        start(context, starts[i], langevin, run_seed, minimize=False, equilibrate_ps=equilibrate_ps, label=label)
        out[i] = run_frames(context, frames_per_run, steps_per_frame, label=label).xyz
        del context
    return out.reshape(-1, n_atoms, 3)
