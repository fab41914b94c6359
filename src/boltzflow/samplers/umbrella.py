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

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.geometry import dihedrals
from boltzflow.io import load_npz, save_json, save_npz
from boltzflow.samplers.md_files import now, replica_seeds

RESTRAINT_EXPRESSION = (
    "0.5*umbrella_k*min(dtheta, 2*pi-dtheta)^2; dtheta = abs(theta-umbrella_theta0); pi = 3.1415926535"
)
MANIFEST = "umbrella.json"


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

    @property
    def frames_per_window(self) -> int:
        return _whole(
            self.ns_per_window * 1000.0 / self.save_every_ps, "ns_per_window * 1000 / save_every_ps"
        )

    @property
    def steps_per_frame(self) -> int:
        return _whole(self.save_every_ps * 1000.0 / self.timestep_fs, "save_every_ps / timestep_fs")

    def validate(self) -> None:
        """Raise a one-line ValueError for inconsistent settings."""
        if self.n_windows < 2:
            raise ValueError(f"n_windows must be >= 2, got {self.n_windows}")
        for name in (
            "ns_per_window",
            "k_kj_per_mol_rad2",
            "temperature_kelvin",
            "timestep_fs",
            "save_every_ps",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.friction_per_ps < 0 or self.equilibrate_ps < 0:
            raise ValueError("friction and equilibration time must be non-negative")
        if len(set(self.restrained_atoms)) != 4 or len(set(self.extra_atoms)) != 4:
            raise ValueError("a dihedral needs four distinct atom indices")
        if not Path(self.pdb_path).is_file():
            raise FileNotFoundError(f"PDB file not found: {self.pdb_path}")
        _ = self.frames_per_window, self.steps_per_frame

    def identity(self) -> dict[str, Any]:
        """Settings a resumed run must share (everything except ``ns_per_window``)."""
        d = asdict(self)
        d.pop("ns_per_window")
        d["forcefield"], d["pdb_path"] = list(self.forcefield), str(Path(self.pdb_path).resolve())
        d["restrained_atoms"], d["extra_atoms"] = list(self.restrained_atoms), list(self.extra_atoms)
        return d


class UmbrellaWindows(NamedTuple):
    """Recorded samples of all windows (first ``frames_per_window`` frames of each).

    Attributes:
        theta: restrained dihedral, shape (n_windows, n_frames), rad.
        extra: recorded second dihedral, shape (n_windows, n_frames), rad.
        theta0: window centres, shape (n_windows,), rad.
        k_kj_per_mol_rad2: force constant, kJ/mol/rad^2.
        temperature_kelvin: temperature of the run.
    """

    theta: np.ndarray
    extra: np.ndarray
    theta0: np.ndarray
    k_kj_per_mol_rad2: float
    temperature_kelvin: float


class UmbrellaRun(NamedTuple):
    """What ``run_umbrella`` did in this call."""

    out_dir: Path
    n_windows: int
    frames_per_window: int
    new_frames: int
    wall_time_s: float
    ns_per_day: float


def window_centers(n_windows: int) -> np.ndarray:
    """Centres ``-pi + 2 pi i / n``, shape (n_windows,), rad."""
    return -math.pi + 2.0 * math.pi * np.arange(n_windows) / n_windows


def periodic_distance(theta: np.ndarray, theta0: np.ndarray | float) -> np.ndarray:
    """Shortest angular distance |θ - θ0| on the circle, in [0, pi] (broadcasts), rad."""
    d = np.abs(np.remainder(np.asarray(theta) - theta0 + math.pi, 2.0 * math.pi) - math.pi)
    return np.minimum(d, 2.0 * math.pi - d)


def bias_energy_kj(theta: np.ndarray, theta0: np.ndarray | float, k_kj_per_mol_rad2: float) -> np.ndarray:
    """The restraint energy 0.5 k d(θ, θ0)^2 in kJ/mol (NumPy twin of the OpenMM force; broadcasts)."""
    return 0.5 * k_kj_per_mol_rad2 * periodic_distance(theta, theta0) ** 2


def dihedral_restraint(atoms: tuple[int, int, int, int], theta0: float, k_kj_per_mol_rad2: float) -> Any:
    """``CustomTorsionForce`` 0.5 k d(θ, θ0)^2; global parameters ``umbrella_theta0``, ``umbrella_k``."""
    import openmm

    force = openmm.CustomTorsionForce(RESTRAINT_EXPRESSION)
    force.addGlobalParameter("umbrella_theta0", float(theta0))
    force.addGlobalParameter("umbrella_k", float(k_kj_per_mol_rad2))
    force.addTorsion(*[int(a) for a in atoms], [])
    return force


def restrained_system(system: Any, atoms: tuple[int, int, int, int], theta0: float, k: float) -> Any:
    """A copy of ``system`` with :func:`dihedral_restraint` added (the input is left unchanged)."""
    out = copy.deepcopy(system)
    out.addForce(dihedral_restraint(atoms, theta0, k))
    return out


def run_umbrella(
    config: UmbrellaConfig, out_dir: str | Path, *, command: str = "", progress: bool = True
) -> UmbrellaRun:
    """Run (or resume, or extend) every window of ``config`` into ``out_dir``.

    Raises:
        BoltzflowError: ``out_dir`` holds a different run or unrelated files.
    """
    from boltzflow.energies.openmm_system import build_molecule

    config.validate()
    out = Path(out_dir)
    manifest = _prepare(out, config, command)
    molecule = build_molecule(config.pdb_path, config.forcefield, config.constraints)
    centers = window_centers(config.n_windows)
    start, new_frames = time.perf_counter(), 0
    bar = _progress_bar(config, progress)
    xyz = None
    try:
        for w in _chain_order(molecule.positions, config, centers):
            system = restrained_system(
                molecule.system, config.restrained_atoms, centers[w], config.k_kj_per_mol_rad2
            )
            n_new, xyz = _run_window(
                out, w, centers[w], system, molecule, xyz, manifest["seeds"][w], config, bar
            )
            new_frames += n_new
            elapsed = time.perf_counter() - start
            rate = new_frames * config.save_every_ps / 1000.0 / max(elapsed, 1e-9) * 86400.0
            bar.set_postfix_str(f"window {w}, {rate:.0f} ns/day")
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    rate = new_frames * config.save_every_ps / 1000.0 / max(elapsed, 1e-9) * 86400.0
    manifest["sessions"][-1].update(wall_time_s=elapsed, new_frames=new_frames, ns_per_day=rate)
    manifest["wall_time_s"] = sum(s.get("wall_time_s", 0.0) for s in manifest["sessions"])
    manifest["ns_per_window"] = config.ns_per_window
    save_json(out / MANIFEST, manifest)
    return UmbrellaRun(out, config.n_windows, config.frames_per_window, new_frames, elapsed, rate)


def load_windows(out_dir: str | Path, frames_per_window: int | None = None) -> UmbrellaWindows:
    """Read a finished run's windows (first ``frames_per_window`` frames of each; default: all in common)."""
    out = Path(out_dir)
    if not (out / MANIFEST).is_file():
        raise BoltzflowError(f"{out} holds no {MANIFEST}; run `boltzflow umbrella` into it first")
    cfg = json.loads((out / MANIFEST).read_text())["config"]
    files = [_window_path(out, w) for w in range(cfg["n_windows"])]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise BoltzflowError(
            f"{out} lacks {len(missing)} window files ({missing[0]}, ...); rerun to finish them"
        )
    data = [load_npz(p) for p in files]
    n = min(len(d["theta"]) for d in data) if frames_per_window is None else frames_per_window
    if any(len(d["theta"]) < n for d in data):
        raise BoltzflowError(f"some windows in {out} have fewer than {n} frames; rerun to extend them")
    return UmbrellaWindows(
        theta=np.stack([d["theta"][:n] for d in data]),
        extra=np.stack([d["extra"][:n] for d in data]),
        theta0=np.array([float(d["theta0"]) for d in data]),
        k_kj_per_mol_rad2=float(cfg["k_kj_per_mol_rad2"]),
        temperature_kelvin=float(cfg["temperature_kelvin"]),
    )


def _whole(value: float, what: str) -> int:
    n = int(round(value))
    if n < 1 or abs(n - value) > 1e-6 * max(1.0, value):
        raise ValueError(f"{what} must be a positive whole number, got {value:g}")
    return n


def _window_path(out: Path, w: int) -> Path:
    return out / f"window-{w:02d}.npz"


def _prepare(out: Path, config: UmbrellaConfig, command: str) -> dict[str, Any]:
    """Load (and check) or create the run manifest, adding this session."""
    import openmm

    import boltzflow

    if out.exists() and not out.is_dir():
        raise BoltzflowError(f"--out {out} is a file; give a directory")
    path = out / MANIFEST
    if path.is_file():
        manifest = json.loads(path.read_text())
        old, new = manifest["config"], config.identity()
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and k != "pdb_path"]
        if diff:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise BoltzflowError(
                f"{out} holds an umbrella run with other settings ({detail}); use another --out"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise BoltzflowError(f"--out {out} is not empty and holds no {MANIFEST}; choose a new directory")
    else:
        manifest = {
            "format": "boltzflow-umbrella-run-1",
            "command": command,
            "config": config.identity(),
            "restraint": RESTRAINT_EXPRESSION,
            "integrator": "LangevinMiddleIntegrator",
            "seeds": replica_seeds(config.seed, config.n_windows),
            "versions": {
                "openmm": openmm.version.version,
                "boltzflow": boltzflow.__version__,
                "numpy": np.__version__,
            },
            "started": now(),
            "sessions": [],
            "wall_time_s": 0.0,
        }
    manifest["sessions"].append({"command": command, "started": now(), "ns_per_window": config.ns_per_window})
    save_json(path, manifest)
    return manifest


def _chain_order(positions: np.ndarray, config: UmbrellaConfig, centers: np.ndarray) -> list[int]:
    """Windows in the order they are run: from the one nearest the start structure's dihedral, ascending."""
    theta = _dihedral(positions, config.restrained_atoms)
    first = int(np.argmin(periodic_distance(centers, theta)))
    return [(first + i) % config.n_windows for i in range(config.n_windows)]


def _dihedral(xyz: np.ndarray, atoms: tuple[int, int, int, int]) -> float | np.ndarray:
    x = torch.as_tensor(np.asarray(xyz, dtype=np.float64))
    out = dihedrals(x, [list(atoms)])[..., 0].numpy()
    return float(out) if out.ndim == 0 else out


def _run_window(
    out: Path,
    w: int,
    theta0: float,
    system: Any,
    molecule: Any,
    start_xyz: Any,
    seed: int,
    c: UmbrellaConfig,
    bar: Any,
) -> tuple[int, np.ndarray]:
    """Run or extend window ``w``; return (frames computed now, final positions for the next window)."""
    path = _window_path(out, w)
    old = load_npz(path) if path.is_file() else None
    have = 0 if old is None else len(old["theta"])
    if have >= c.frames_per_window:
        bar.update(c.frames_per_window)
        return 0, old["final_xyz"]
    bar.update(have)
    context = _context(system, c, seed)
    if old is None:
        context.setPositions(molecule.positions if start_xyz is None else start_xyz)
        _equilibrate(context, c, seed)
    else:
        context.loadCheckpoint(old["checkpoint"].tobytes())
    new = _sample(context, c, c.frames_per_window - have, bar)
    if old is not None:
        new.update({k: np.concatenate([old[k], new[k]]) for k in ("theta", "extra", "time_ps")})
    save_npz(path, theta0=theta0, k_kj_per_mol_rad2=c.k_kj_per_mol_rad2, **new)
    return c.frames_per_window - have, new["final_xyz"]


def _context(system: Any, c: UmbrellaConfig, seed: int) -> Any:
    import openmm
    import openmm.unit as unit

    integrator = openmm.LangevinMiddleIntegrator(
        c.temperature_kelvin * unit.kelvin,
        c.friction_per_ps / unit.picosecond,
        c.timestep_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(seed)
    try:
        platform = openmm.Platform.getPlatformByName(c.platform)
    except Exception:
        raise BoltzflowError(
            f"OpenMM platform {c.platform!r} is not available; use Reference or CPU"
        ) from None
    return openmm.Context(system, integrator, platform)


def _equilibrate(context: Any, c: UmbrellaConfig, seed: int) -> None:
    """Restrained minimisation (drags the dihedral to its centre), new velocities, discarded MD."""
    import openmm

    context.applyConstraints(1e-8)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 1000)
    context.setVelocitiesToTemperature(c.temperature_kelvin, seed)
    context.getIntegrator().step(int(round(c.equilibrate_ps * 1000.0 / c.timestep_fs)))
    context.setTime(0.0)
    context.setStepCount(0)


def _sample(context: Any, c: UmbrellaConfig, n_frames: int, bar: Any) -> dict[str, np.ndarray]:
    import openmm.unit as unit

    xyz = np.empty((n_frames, context.getSystem().getNumParticles(), 3))
    times = np.empty(n_frames)
    integrator = context.getIntegrator()
    for i in range(n_frames):
        integrator.step(c.steps_per_frame)
        state = context.getState(getPositions=True)
        xyz[i] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        times[i] = state.getTime().value_in_unit(unit.picosecond)
        bar.update(1)
    return {
        "theta": _dihedral(xyz, c.restrained_atoms),
        "extra": _dihedral(xyz, c.extra_atoms),
        "time_ps": times,
        "final_xyz": xyz[-1],
        "checkpoint": np.frombuffer(context.createCheckpoint(), dtype=np.uint8),
    }


def _progress_bar(c: UmbrellaConfig, enabled: bool) -> Any:
    from tqdm import tqdm

    total = c.n_windows * c.frames_per_window
    return tqdm(total=total, unit="ps", disable=not enabled, file=sys.stderr, smoothing=0.1, desc="umbrella")
