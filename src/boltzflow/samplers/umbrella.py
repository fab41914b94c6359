"""Umbrella sampling along one dihedral with OpenMM: harmonic windows over the full circle, resumable.

Each window adds ``0.5 k d(θ, θ0)^2`` (d = periodic distance) on one torsion to a copy of the molecule's
System and runs Langevin MD, recording that dihedral (and an optional second one, e.g. ψ) every
``save_every_ps``. Windows run as a chain: the first starts from the minimised input structure, every later
one from the last frame of its neighbour, after a restrained minimisation (which drags the dihedral to the new
centre) and ``equilibrate_ps`` of discarded MD.

Run directory layout (``out_dir``)::

    umbrella.json         configuration, window seeds, versions, platform, wall time
    window-NN.npz         theta (n,) rad, extra (n,) rad, time_ps (n,), theta0 rad, k_kj_per_mol_rad2,
                          final_xyz (n_atoms, 3) nm, checkpoint (OpenMM checkpoint after the last frame)

A window file is written atomically once the window is done, so a killed run restarts at the first missing
window. Asking for longer windows later (larger ``ns_per_window``) continues each window from its checkpoint.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from boltzflow.io import save_json, save_npz
from boltzflow.samplers.openmm_run import (
    Langevin,
    NonFiniteError,
    checkpoint,
    non_negative,
    open_context,
    positive,
    restore,
    run_frames,
    start,
    whole,
)
from boltzflow.samplers.restraint import (  # noqa: F401  (re-exported: the umbrella API in one place)
    RESTRAINT_EXPRESSION,
    bias_energy_kj,
    chain_order,
    dihedral,
    dihedral_restraint,
    periodic_distance,
    restrained_system,
    window_centers,
)
from boltzflow.samplers.umbrella_files import (  # noqa: F401  (re-exported)
    MANIFEST,
    UmbrellaWindows,
    load_windows,
    open_manifest,
    read_window,
    window_path,
)


@dataclass(frozen=True)
class UmbrellaConfig:
    """Settings of an umbrella run (all but ``ns_per_window`` must match when a run is resumed).

    Attributes:
        pdb_path: starting structure.
        forcefield: OpenMM force-field XML names.
        restrained_atoms: the four atoms of the restrained dihedral (0-based), e.g. φ = C-N-CA-C.
        extra_atoms: four atoms of a second dihedral that is only recorded (e.g. ψ).
        n_windows: window centres ``-pi + 2 pi i / n_windows``, i = 0..n-1.
        ns_per_window: production per window, ns.
        k_kj_per_mol_rad2: force constant, kJ/mol/rad^2.
        temperature_kelvin, friction_per_ps, timestep_fs: Langevin (middle) integrator settings.
        save_every_ps: time between recorded dihedrals, ps.
        equilibrate_ps: discarded restrained MD at the start of each window, ps.
        constraints: "HBonds" or "none".
        seed: base seed; window seeds are derived from it.
        platform: OpenMM platform name.
        exchange: replica-exchange umbrella sampling: neighbouring windows swap their replicas after every
            recorded frame (:mod:`boltzflow.samplers.replica_exchange`); False: independent windows run as a chain.
    """

    pdb_path: str
    forcefield: tuple[str, ...]
    restrained_atoms: tuple[int, int, int, int]
    extra_atoms: tuple[int, int, int, int]
    n_windows: int = 36
    ns_per_window: float = 0.5
    k_kj_per_mol_rad2: float = 150.0
    temperature_kelvin: float = 300.0
    friction_per_ps: float = 1.0
    timestep_fs: float = 2.0
    save_every_ps: float = 1.0
    equilibrate_ps: float = 20.0
    constraints: str = "HBonds"
    seed: int = 0
    platform: str = "Reference"
    exchange: bool = False

    @property
    def langevin(self) -> Langevin:
        return Langevin(self.temperature_kelvin, self.friction_per_ps, self.timestep_fs)

    @property
    def frames_per_window(self) -> int:
        return whole(
            self.ns_per_window * 1000.0 / self.save_every_ps, "ns_per_window * 1000 / save_every_ps"
        )

    @property
    def steps_per_frame(self) -> int:
        return whole(self.save_every_ps * 1000.0 / self.timestep_fs, "save_every_ps / timestep_fs")

    def validate(self) -> None:
        """Raise a one-line ValueError naming the first setting that is out of range or inconsistent."""
        if not (isinstance(self.n_windows, int) and self.n_windows >= 2):
            raise ValueError(f"n_windows must be an integer >= 2, got {self.n_windows!r}")
        self.langevin.validate()
        for name in ("ns_per_window", "k_kj_per_mol_rad2", "save_every_ps"):
            positive(getattr(self, name), name)
        non_negative(self.equilibrate_ps, "equilibrate_ps")
        for name in ("restrained_atoms", "extra_atoms"):
            atoms = getattr(self, name)
            if len(atoms) != 4 or len(set(atoms)) != 4 or min(atoms) < 0:
                raise ValueError(f"{name}: a dihedral needs four distinct atom indices >= 0, got {atoms}")
        if not Path(self.pdb_path).is_file():
            raise FileNotFoundError(f"PDB file not found (or not a file): {self.pdb_path}")
        _ = self.frames_per_window, self.steps_per_frame

    def identity(self) -> dict[str, Any]:
        """Settings a resumed run must share (everything except ``ns_per_window``)."""
        d = asdict(self)
        d.pop("ns_per_window")
        if not self.exchange:  # runs made before exchange existed resume unchanged
            d.pop("exchange")
        d["forcefield"], d["pdb_path"] = list(self.forcefield), str(Path(self.pdb_path).resolve())
        d["restrained_atoms"], d["extra_atoms"] = list(self.restrained_atoms), list(self.extra_atoms)
        return d


class UmbrellaRun(NamedTuple):
    """What ``run_umbrella`` did in this call."""

    out_dir: Path
    n_windows: int
    frames_per_window: int
    new_frames: int
    wall_time_s: float
    ns_per_day: float


def run_umbrella(
    config: UmbrellaConfig,
    out_dir: str | Path,
    *,
    command: str = "",
    progress: bool = True,
    molecule: Any = None,
) -> UmbrellaRun:
    """Run (or resume, or extend) every window of ``config`` into ``out_dir``.

    Args:
        config: the run's settings.
        out_dir: run directory (created, resumed or extended).
        command: command line recorded in the manifest.
        progress: show a tqdm bar.
        molecule: the :class:`~boltzflow.energies.openmm_system.Molecule` to restrain (e.g. a registered system's
            ``molecule(config.constraints)``); default: built from ``config``'s PDB and force field.

    Raises:
        BoltzflowError: ``out_dir`` holds a different run or unrelated files, or a window diverged (its file is
            left as it was; the windows before it are kept).
        ValueError: bad settings, an unreadable PDB or a force field that does not fit it.
    """
    from boltzflow.energies.openmm_system import build_molecule

    config.validate()
    if molecule is None:
        molecule = build_molecule(config.pdb_path, config.forcefield, config.constraints)
    if max(*config.restrained_atoms, *config.extra_atoms) >= molecule.n_atoms:
        raise ValueError(f"dihedral atom indices must be < {molecule.n_atoms} (the molecule's atom count)")
    out = Path(out_dir)
    manifest = open_manifest(out, config, command)
    centers = window_centers(config.n_windows)
    t0, new_frames = time.perf_counter(), 0
    bar = _progress_bar(config, progress)
    xyz = None
    try:
        if config.exchange:
            from boltzflow.samplers.replica_exchange import run_exchange

            new_frames = config.n_windows * run_exchange(config, out, manifest, molecule, bar)
        else:
            for w in chain_order(molecule.positions, config.restrained_atoms, centers):
                system = restrained_system(molecule.system, config.restrained_atoms, centers[w],
                                           config.k_kj_per_mol_rad2)
                n_new, xyz = _run_window(out, w, centers[w], system, molecule, xyz, manifest["seeds"][w], config, bar)
                new_frames += n_new
                bar.set_postfix_str(f"window {w}, {_rate(new_frames, config, t0):.0f} ns/day")
    except NonFiniteError as err:
        _close_session(out, manifest, config, new_frames, t0, error=str(err))
        raise
    finally:
        bar.close()
    elapsed, rate = _close_session(out, manifest, config, new_frames, t0)
    return UmbrellaRun(out, config.n_windows, config.frames_per_window, new_frames, elapsed, rate)


def _rate(new_frames: int, c: UmbrellaConfig, t0: float) -> float:
    """Simulated ns/day of this session."""
    return new_frames * c.save_every_ps / 1000.0 / max(time.perf_counter() - t0, 1e-9) * 86400.0


def _close_session(
    out: Path, manifest: dict[str, Any], c: UmbrellaConfig, new_frames: int, t0: float, error: str | None = None
) -> tuple[float, float]:
    """Record this session's wall time, frames and rate (and error) in the manifest; return (wall s, ns/day)."""
    elapsed, rate = time.perf_counter() - t0, _rate(new_frames, c, t0)
    manifest["sessions"][-1].update(wall_time_s=elapsed, new_frames=new_frames, ns_per_day=rate)
    if error is not None:
        manifest["sessions"][-1]["error"] = error
    else:
        manifest["ns_per_window"] = c.ns_per_window
    manifest["wall_time_s"] = sum(s.get("wall_time_s", 0.0) for s in manifest["sessions"])
    save_json(out / MANIFEST, manifest)
    return elapsed, rate


def _run_window(
    out: Path, w: int, theta0: float, system: Any, molecule: Any, start_xyz: Any, seed: int, c: UmbrellaConfig,
    bar: Any,
) -> tuple[int, np.ndarray]:
    """Run or extend window ``w``; return (frames computed now, final positions for the next window).

    Restrained minimisation (it drags the dihedral to the centre), new velocities and ``equilibrate_ps`` of
    discarded MD start a new window; an existing one continues from its checkpoint.
    """
    path = window_path(out, w)
    old = read_window(path) if path.is_file() else None
    have = 0 if old is None else len(old["theta"])
    if have >= c.frames_per_window:
        bar.update(c.frames_per_window)
        return 0, old["final_xyz"]
    bar.update(have)
    context = open_context(system, c.langevin, c.platform, seed)
    label = f"umbrella window {w} (centre {np.degrees(theta0):+.0f} deg)"
    if old is None:
        start(context, molecule.positions if start_xyz is None else start_xyz, c.langevin, seed, minimize=True,
              equilibrate_ps=c.equilibrate_ps, label=label)
    else:
        restore(context, old["checkpoint"])
    frames = run_frames(context, c.frames_per_window - have, c.steps_per_frame, first_frame=have, label=label,
                        on_frame=lambda: bar.update(1))
    new = {"theta": dihedral(frames.xyz, c.restrained_atoms), "extra": dihedral(frames.xyz, c.extra_atoms),
           "time_ps": frames.time_ps}
    if old is not None:
        new = {k: np.concatenate([old[k], new[k]]) for k in new}
    save_npz(path, theta0=theta0, k_kj_per_mol_rad2=c.k_kj_per_mol_rad2, **new, final_xyz=frames.xyz[-1],
             checkpoint=checkpoint(context))
    return c.frames_per_window - have, frames.xyz[-1]


def _progress_bar(c: UmbrellaConfig, enabled: bool) -> Any:
    from tqdm import tqdm

    total = c.n_windows * c.frames_per_window
    return tqdm(total=total, unit="ps", disable=not enabled, file=sys.stderr, smoothing=0.1, desc="umbrella")
