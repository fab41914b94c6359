"""The run directory of ``boltzflow umbrella``: the manifest and the window files (see ``samplers.umbrella``)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from boltzflow.errors import BoltzflowError
from boltzflow.io import load_npz, save_json
from boltzflow.samplers.md_files import now, replica_seeds
from boltzflow.samplers.restraint import RESTRAINT_EXPRESSION

if TYPE_CHECKING:
    from boltzflow.samplers.umbrella import UmbrellaConfig

MANIFEST = "umbrella.json"


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


def window_path(out: Path, w: int) -> Path:
    """``out/window-NN.npz``."""
    return Path(out) / f"window-{w:02d}.npz"


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a run directory.

    Raises:
        BoltzflowError: there is none, or it is not a JSON object.
    """
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise BoltzflowError(f"{out} holds no {MANIFEST}; run `boltzflow umbrella` into it first")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BoltzflowError(f"{path} is not valid JSON ({err}); restore it or use another --out") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise BoltzflowError(f"{path} is not an umbrella manifest (no 'config' table)")
    return manifest


def check_out_dir(out: Path, config: UmbrellaConfig) -> dict[str, Any] | None:
    """The manifest of a run in ``out`` with the same settings, or None when ``out`` is new or empty.

    Raises:
        BoltzflowError: ``out`` is a file, holds unrelated files, or a run with other settings.
    """
    if out.exists() and not out.is_dir():
        raise BoltzflowError(f"--out {out} is a file; give a directory")
    if (out / MANIFEST).exists():
        manifest = read_manifest(out)
        old, new = manifest["config"], config.identity()
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and k != "pdb_path"]
        if diff:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise BoltzflowError(f"{out} holds an umbrella run with other settings ({detail}); use another --out")
        return manifest
    if out.is_dir() and any(out.iterdir()):
        raise BoltzflowError(f"--out {out} is not empty and holds no {MANIFEST}; choose a new directory")
    return None


def open_manifest(out: Path, config: UmbrellaConfig, command: str) -> dict[str, Any]:
    """Load (and check) or create the run manifest, add this session and write it."""
    import openmm

    import boltzflow

    manifest = check_out_dir(out, config)
    if manifest is None:
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
    save_json(out / MANIFEST, manifest)
    return manifest


def load_windows(out_dir: str | Path, frames_per_window: int | None = None) -> UmbrellaWindows:
    """Read a finished run's windows (first ``frames_per_window`` frames of each; default: all in common).

    Raises:
        BoltzflowError: no manifest, a missing or unreadable window file, or windows shorter than asked.
    """
    out = Path(out_dir)
    cfg = read_manifest(out)["config"]
    files = [window_path(out, w) for w in range(cfg["n_windows"])]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise BoltzflowError(f"{out} lacks {len(missing)} window files ({missing[0]}, ...); rerun to finish them")
    data = [read_window(p) for p in files]
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


def read_window(path: Path) -> dict[str, np.ndarray]:
    """All arrays of one window file (theta, extra, time_ps rad/ps; theta0; final_xyz nm; checkpoint).

    Raises:
        BoltzflowError: the file is missing arrays, truncated, pickled or not an npz.
    """
    try:
        with open(path, "rb") as fh:  # np.load leaks its own handle when the zip is truncated (numpy 2.x)
            return load_npz(fh, ["theta", "extra", "time_ps", "theta0", "final_xyz", "checkpoint"])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BoltzflowError(f"{path} is not a readable window file ({msg}); delete it and rerun to redo it") from None
