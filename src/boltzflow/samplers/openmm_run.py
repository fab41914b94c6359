"""The one OpenMM Langevin setup shared by plain MD (``md``), umbrella windows (``umbrella``) and seeding runs.

Every trajectory in the package is made by the same four steps, so a fix or a check lands everywhere at once:

1. :func:`open_context`: a ``LangevinMiddleIntegrator`` (seeded) on a named platform around an ``openmm.System``;
2. :func:`start`: positions, constraints, an optional local energy minimisation, velocities drawn at the
   temperature, discarded equilibration MD, then the clock reset to t = 0;
3. :func:`run_frames`: ``n`` frames, ``steps_per_frame`` steps apart, of positions, potential energies and
   (optionally) forces, each checked to be finite before the next is computed;
4. :func:`checkpoint` / :func:`restore`: the OpenMM checkpoint bytes stored with every saved piece of a run, so a
   resumed run continues exactly where the uninterrupted one would have been.

A diverging simulation (a time step too large, a broken structure) turns positions or energies into NaN within a
few steps; OpenMM's Reference platform carries on silently and its CPU platform raises from deep inside. Both end
here as a :class:`NonFiniteError` naming the frame and the simulated time, so no caller ever stores a NaN frame.

OpenMM does the physics; this module only fixes the order of the calls that the three samplers used to repeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from boltzflow.errors import BoltzflowError

MAX_COUNT = 2**31 - 1  # largest step or frame count (OpenMM takes step counts as C int)
EQUILIBRATION_CHECK_PS = 1.0  # equilibration runs in blocks of this length, each checked to be finite


class NonFiniteError(BoltzflowError):
    """The simulation produced a non-finite position or energy.

    Attributes:
        frame: index of the first bad frame counted from ``first_frame`` of :func:`run_frames`
            (-1: during :func:`start`).
        time_ps: simulated time of that frame (since the clock reset), ps.
    """

    def __init__(self, message: str, frame: int, time_ps: float) -> None:
        super().__init__(message)
        self.frame = frame
        self.time_ps = time_ps


@dataclass(frozen=True)
class Langevin:
    """Settings of the ``LangevinMiddleIntegrator``.

    Attributes:
        temperature_kelvin: thermostat temperature, K.
        friction_per_ps: collision rate, 1/ps.
        timestep_fs: integration time step, fs.
    """

    temperature_kelvin: float
    friction_per_ps: float
    timestep_fs: float

    def validate(self) -> None:
        """Raise a one-line ValueError naming the first setting that is not finite and in range."""
        positive(self.temperature_kelvin, "temperature_kelvin")
        positive(self.timestep_fs, "timestep_fs")
        non_negative(self.friction_per_ps, "friction_per_ps")

    def steps(self, ps: float) -> int:
        """Number of time steps in ``ps`` picoseconds (rounded)."""
        return int(round(ps * 1000.0 / self.timestep_fs))


class Frames(NamedTuple):
    """Frames recorded by :func:`run_frames`.

    Attributes:
        xyz: positions, shape (n, n_atoms, 3), nm.
        energy_kj: potential energies, shape (n,), kJ/mol.
        forces_kj: forces, shape (n, n_atoms, 3), kJ/mol/nm, or None when not asked for.
        time_ps: simulated times, shape (n,), ps.
    """

    xyz: np.ndarray
    energy_kj: np.ndarray
    forces_kj: np.ndarray | None
    time_ps: np.ndarray


def positive(value: float, name: str) -> float:
    """``value`` if it is a finite number > 0, else a ValueError naming ``name``."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def non_negative(value: float, name: str) -> float:
    """``value`` if it is a finite number >= 0, else a ValueError naming ``name``."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def whole(value: float, what: str) -> int:
    """``value`` as an int when it is a whole number in [1, 2^31 - 1] (to 1e-6 relative), else a ValueError."""
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a positive whole number, got {value:g}")
    n = int(round(value))
    if n < 1 or abs(n - value) > 1e-6 * max(1.0, value):
        raise ValueError(f"{what} must be a positive whole number, got {value:g}")
    if n > MAX_COUNT:
        raise ValueError(f"{what} = {value:g} is too large (at most {MAX_COUNT}: OpenMM counts steps in int32)")
    return n


def open_context(system: Any, langevin: Langevin, platform: str, seed: int) -> Any:
    """An ``openmm.Context`` of ``system`` with a seeded ``LangevinMiddleIntegrator``.

    Args:
        system: ``openmm.System``.
        langevin: integrator settings.
        platform: OpenMM platform name ("Reference", "CPU", ...).
        seed: integrator seed, >= 1 (OpenMM reads 0 as "pick one at random").

    Raises:
        BoltzflowError: the platform is not available.
    """
    import openmm
    import openmm.unit as unit

    integrator = openmm.LangevinMiddleIntegrator(
        langevin.temperature_kelvin * unit.kelvin,
        langevin.friction_per_ps / unit.picosecond,
        langevin.timestep_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(seed)
    try:
        plat = openmm.Platform.getPlatformByName(platform)
    except Exception:
        raise BoltzflowError(f"OpenMM platform {platform!r} is not available; use Reference or CPU") from None
    return openmm.Context(system, integrator, plat)


def start(
    context: Any,
    positions: np.ndarray,
    langevin: Langevin,
    seed: int,
    *,
    minimize: bool,
    equilibrate_ps: float,
    label: str = "simulation",
) -> None:
    """Set positions, apply constraints, minimise (optionally), draw velocities, equilibrate, reset the clock.

    Args:
        context: from :func:`open_context`.
        positions: shape (n_atoms, 3), nm.
        langevin: the context's integrator settings (temperature of the velocities, time step).
        seed: seed of the velocity draw.
        minimize: run ``LocalEnergyMinimizer`` (tolerance 1 kJ/mol/nm, at most 1000 iterations) first.
        equilibrate_ps: discarded MD after the velocity draw, ps.
        label: what runs, for the error message (``"replica 0"``, ``"window 3"``).

    Raises:
        NonFiniteError: a non-finite state during equilibration (checked every ``EQUILIBRATION_CHECK_PS``;
            ``frame`` -1).
    """
    import openmm

    context.setPositions(positions)
    context.applyConstraints(1e-8)
    if minimize:
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 1000)
    context.setVelocitiesToTemperature(langevin.temperature_kelvin, seed)
    n_steps, block, done = langevin.steps(equilibrate_ps), max(1, langevin.steps(EQUILIBRATION_CHECK_PS)), 0
    while done < n_steps:  # checked every EQUILIBRATION_CHECK_PS: a diverged start stops early, not after all of it
        n = min(block, n_steps - done)
        done += n
        _step(context, n, label, "during equilibration", -1, done * langevin.timestep_fs / 1000.0)
        _check(context, label, "during equilibration", -1, done * langevin.timestep_fs / 1000.0, forces=False)
    context.setTime(0.0)
    context.setStepCount(0)


def run_frames(
    context: Any,
    n_frames: int,
    steps_per_frame: int,
    *,
    forces: bool = False,
    first_frame: int = 0,
    label: str = "simulation",
    on_frame: Any = None,
) -> Frames:
    """Advance ``steps_per_frame`` steps ``n_frames`` times and record every state.

    Args:
        context: a started context.
        n_frames: frames to record.
        steps_per_frame: time steps between frames.
        forces: also record forces.
        first_frame: index of the first frame in the caller's numbering (for error messages).
        label: what runs, for the error message.
        on_frame: called with no argument after each frame (a progress bar's ``update``).

    Raises:
        NonFiniteError: at the first frame whose positions, energy (or forces) are not finite; nothing of the
            frames recorded so far is returned.
    """
    import openmm.unit as unit

    n_atoms = context.getSystem().getNumParticles()
    xyz = np.empty((n_frames, n_atoms, 3))
    force_kj = np.empty((n_frames, n_atoms, 3)) if forces else None
    energy, times = np.empty(n_frames), np.empty(n_frames)
    t0 = context.getState().getTime().value_in_unit(unit.picosecond)
    dt_ps = context.getIntegrator().getStepSize().value_in_unit(unit.picosecond)
    for i in range(n_frames):
        frame = first_frame + i
        t_next = t0 + (i + 1) * steps_per_frame * dt_ps
        _step(context, steps_per_frame, label, "at", frame, t_next)
        xyz[i], energy[i], f, times[i] = _check(context, label, "at", frame, t_next, forces=forces)
        if force_kj is not None:
            force_kj[i] = f
        if on_frame is not None:
            on_frame()
    return Frames(xyz, energy, force_kj, times)


def checkpoint(context: Any) -> np.ndarray:
    """The context's OpenMM checkpoint (positions, velocities, time, RNG state) as a uint8 array."""
    return np.frombuffer(context.createCheckpoint(), dtype=np.uint8)


def restore(context: Any, data: np.ndarray) -> None:
    """Load a checkpoint made by :func:`checkpoint` into a context of the same System and integrator."""
    context.loadCheckpoint(np.asarray(data, dtype=np.uint8).tobytes())


def _step(context: Any, n_steps: int, label: str, where: str, frame: int, time_ps: float) -> None:
    import openmm

    try:
        context.getIntegrator().step(n_steps)
    except openmm.OpenMMException as err:  # the CPU platform raises "Particle coordinate is NaN"
        raise _diverged(label, where, frame, time_ps, str(err).splitlines()[0]) from None


def _check(
    context: Any, label: str, where: str, frame: int, time_ps: float, *, forces: bool
) -> tuple[np.ndarray, float, np.ndarray | None, float]:
    """Positions (nm), energy (kJ/mol), forces (kJ/mol/nm) and time (ps) of the current state, all finite."""
    import openmm
    import openmm.unit as unit

    try:
        state = context.getState(getPositions=True, getEnergy=True, getForces=forces)
    except openmm.OpenMMException as err:
        raise _diverged(label, where, frame, time_ps, str(err).splitlines()[0]) from None
    xyz = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    f = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer) if forces else None
    time_ps = state.getTime().value_in_unit(unit.picosecond)
    if not (np.isfinite(xyz).all() and math.isfinite(energy) and (f is None or np.isfinite(f).all())):
        what = "positions" if not np.isfinite(xyz).all() else "energy" if not math.isfinite(energy) else "forces"
        raise _diverged(label, where, frame, time_ps, f"non-finite {what}")
    return xyz, energy, f, time_ps


def _diverged(label: str, where: str, frame: int, time_ps: float, detail: str) -> NonFiniteError:
    place = f"{where} frame {frame} (t = {time_ps:g} ps)" if frame >= 0 else f"{where} (by t = {time_ps:g} ps)"
    return NonFiniteError(
        f"{label} diverged {place}: {detail}; use a smaller time step or check the structure", frame, time_ps
    )
