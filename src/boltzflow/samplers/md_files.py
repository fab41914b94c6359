"""The run directory of ``boltzflow simulate``: layout, provenance and chunk files (see ``samplers.md``)."""

from __future__ import annotations

import json
import platform as _platform
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from boltzflow.errors import BoltzflowError
from boltzflow.io import atomic_path, load_npz, save_json

if TYPE_CHECKING:
    from boltzflow.samplers.md import MDConfig

PROVENANCE = "provenance.json"
TOPOLOGY = "topology.pdb"


def replica_seeds(seed: int, replicas: int) -> list[int]:
    """Deterministic, distinct, non-zero OpenMM seeds (OpenMM treats 0 as 'pick a random seed')."""
    ss = np.random.SeedSequence(seed).spawn(replicas)
    return [int(s.generate_state(1, np.uint32)[0] % (2**31 - 2)) + 1 for s in ss]


def chunk_path(out_dir: Path, replica: int, chunk: int) -> Path:
    return Path(out_dir) / f"replica-{replica:02d}" / f"chunk-{chunk:05d}.npz"


def complete_chunks(out_dir: Path, replica: int) -> int:
    """Number of consecutive chunk files 0, 1, ... present for ``replica`` (a gap stops the count)."""
    n = 0
    while chunk_path(out_dir, replica, n).is_file():
        n += 1
    return n


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def prepare_dir(out: Path, config: MDConfig, force: bool) -> dict[str, Any] | None:
    """Return the provenance of a run to resume, or None for a fresh run (after clearing with ``force``)."""

    prov_path = out / PROVENANCE
    if out.exists() and not out.is_dir():
        raise BoltzflowError(f"--out {out} is a file; give a directory")
    if prov_path.is_file():
        try:
            prov = json.loads(prov_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BoltzflowError(f"{prov_path} is not valid JSON ({err}); restore it or use another --out") from None
        if not isinstance(prov, dict) or not isinstance(prov.get("config"), dict):
            raise BoltzflowError(f"{prov_path} is not a boltzflow simulate provenance (no 'config' table)")
        if force:
            clear_run(out, prov)
            return None
        old, new = prov.get("config", {}), config.identity()
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and k != "pdb_path"]
        if diff:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise BoltzflowError(
                f"{out} holds a run with a different configuration ({detail}); use another --out, the "
                "original options, or --force to delete it and start again"
            )
        return prov
    if out.is_dir() and any(out.iterdir()):
        raise BoltzflowError(f"--out {out} is not empty and holds no {PROVENANCE}; choose a new directory")
    return None


def clear_run(out: Path, prov: dict[str, Any]) -> None:
    """Delete only the files a run writes."""
    for r in range(int(prov.get("config", {}).get("replicas", 0))):
        shutil.rmtree(out / f"replica-{r:02d}", ignore_errors=True)
        (out / f"replica-{r:02d}.xtc").unlink(missing_ok=True)
    (out / TOPOLOGY).unlink(missing_ok=True)
    (out / PROVENANCE).unlink(missing_ok=True)


def new_provenance(config: MDConfig, platform_name: str, command: str) -> dict[str, Any]:
    import openmm

    import boltzflow

    return {
        "format": "boltzflow-md-run-1",
        "command": command,
        "config": config.identity(),
        "platform": platform_name,
        "replica_seeds": replica_seeds(config.seed, config.replicas),
        "integrator": "LangevinMiddleIntegrator",
        "nonbonded": "NoCutoff",
        "versions": {
            "openmm": openmm.version.version,
            "boltzflow": boltzflow.__version__,
            "python": _platform.python_version(),
            "numpy": np.__version__,
        },
        "host": {"machine": _platform.machine(), "system": _platform.system()},
        "started": now(),
        "sessions": [{"command": command, "started": now()}],
        "status": "running",
        "frames": [0] * config.replicas,
        "wall_time_s": 0.0,
    }


def record(
    prov: dict[str, Any], out: Path, elapsed: float, new_frames: int, rate: float, c: MDConfig
) -> None:
    session = prov["sessions"][-1]
    prior = prov.get("wall_time_s", 0.0) - session.get("wall_time_s", 0.0)
    session.update(wall_time_s=elapsed, new_frames=new_frames, ns_per_day=rate)
    prov["wall_time_s"] = prior + elapsed
    prov["frames"] = [
        sum(c.chunk_frames(k) for k in range(min(complete_chunks(out, r), c.n_chunks)))
        for r in range(c.replicas)
    ]
    save_json(out / PROVENANCE, prov)


def write_topology(path: Path, molecule: Any) -> None:
    import openmm.app as app

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        app.PDBFile.writeFile(
            molecule.topology, molecule.positions * 10.0, f
        )  # PDBFile takes Angstrom numbers


def write_xtc(out: Path, replica: int, molecule: Any) -> None:
    """Concatenate a finished replica's chunks into ``replica-XX.xtc`` (skipped when it is already there)."""
    import mdtraj

    path = out / f"replica-{replica:02d}.xtc"
    if path.is_file():
        return
    chunks = sorted((out / f"replica-{replica:02d}").glob("chunk-*.npz"))
    parts = [load_npz(c, ["xyz", "time_ps"]) for c in chunks]
    xyz = np.concatenate([p["xyz"] for p in parts])
    times = np.concatenate([p["time_ps"] for p in parts])
    traj = mdtraj.Trajectory(xyz, mdtraj.Topology.from_openmm(molecule.topology), time=times)
    with atomic_path(path) as tmp:
        traj.save_xtc(str(tmp), force_overwrite=True)
