"""Resumable Langevin MD with OpenMM: replicas written as atomic chunks of frames, energies and forces.

Run directory layout (``out_dir``)::

    provenance.json                 configuration, seeds, versions, platform, frames, wall time
    topology.pdb                    the topology (read trajectories with mdtraj or VMD together with it)
    replica-00/chunk-00000.npz      xyz (f, n_atoms, 3) nm, energy_kj (f,) kJ/mol, forces_kj (f, n_atoms, 3)
                                    kJ/mol/nm, time_ps (f,), checkpoint (OpenMM checkpoint after last frame)
    replica-00.xtc                  the whole replica as XTC (written once all its chunks exist)

Every chunk is written atomically together with the checkpoint that continues it, so a killed run restarts
each replica from its last complete chunk and reproduces, frame by frame, what an uninterrupted run would have
written.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from boltzflow.io import load_npz, save_json, save_npz
from boltzflow.samplers.md_files import (
    PROVENANCE,
    TOPOLOGY,
    chunk_path,
    complete_chunks,
    new_provenance,
    now,
    prepare_dir,
    record,
    write_topology,
    write_xtc,
)
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


@dataclass(frozen=True)
class MDConfig:
    """Everything that determines the trajectories (a resumed run must match it exactly).

    Attributes:
        pdb_path: starting structure; its atom order is the order of every stored frame.
        forcefield: OpenMM force-field XML names.
        temperature_kelvin: thermostat temperature.
        friction_per_ps: Langevin collision rate, 1/ps.
        timestep_fs: integration time step, fs.
        save_every_ps: time between stored frames, ps.
        ns: production length per replica, ns.
        equilibrate_ps: discarded MD before the first stored frame, ps (after a local energy minimisation).
        replicas: number of independent replicas (different seeds, same start).
        seed: base seed; replica seeds are derived from it deterministically.
        platform: OpenMM platform name ("Reference", "CPU") or "auto".
        constraints: "HBonds" or "none".
        chunk_ps: simulated time per chunk file (the unit of resumption), ps.
    """

    pdb_path: str
    forcefield: tuple[str, ...]
    temperature_kelvin: float = 300.0
    friction_per_ps: float = 1.0
    timestep_fs: float = 2.0
    save_every_ps: float = 1.0
    ns: float = 10.0
    equilibrate_ps: float = 100.0
    replicas: int = 1
    seed: int = 0
    platform: str = "Reference"
    constraints: str = "HBonds"
    chunk_ps: float = 100.0
    minimize: bool = field(default=True)

    @property
    def langevin(self) -> Langevin:
        return Langevin(self.temperature_kelvin, self.friction_per_ps, self.timestep_fs)

    @property
    def steps_per_frame(self) -> int:
        return whole(self.save_every_ps * 1000.0 / self.timestep_fs, "--save-every-ps / --timestep-fs")

    @property
    def frames_per_chunk(self) -> int:
        return whole(self.chunk_ps / self.save_every_ps, "--chunk-ps / --save-every-ps")

    @property
    def frames_per_replica(self) -> int:
        return whole(self.ns * 1000.0 / self.save_every_ps, "--ns * 1000 / --save-every-ps")

    @property
    def n_chunks(self) -> int:
        return -(-self.frames_per_replica // self.frames_per_chunk)

    def chunk_frames(self, chunk: int) -> int:
        """Number of frames in chunk ``chunk`` (the last one may be shorter)."""
        return min(self.frames_per_chunk, self.frames_per_replica - chunk * self.frames_per_chunk)

    def validate(self) -> None:
        """Raise a one-line ValueError naming the first setting that is out of range or inconsistent."""
        self.langevin.validate()
        for name in ("save_every_ps", "ns", "chunk_ps"):
            positive(getattr(self, name), name)
        non_negative(self.equilibrate_ps, "equilibrate_ps")
        if not (isinstance(self.replicas, int) and self.replicas >= 1):
            raise ValueError(f"replicas must be an integer >= 1, got {self.replicas!r}")
        if not Path(self.pdb_path).is_file():
            raise FileNotFoundError(f"PDB file not found (or not a file): {self.pdb_path}")
        _ = self.steps_per_frame, self.frames_per_chunk, self.frames_per_replica

    def identity(self) -> dict[str, Any]:
        """The settings stored in (and compared against) the provenance, with the PDB's content hash."""
        d = asdict(self)
        d["forcefield"] = list(self.forcefield)
        d["pdb_path"] = str(Path(self.pdb_path).resolve())
        d["pdb_sha256"] = hashlib.sha256(Path(self.pdb_path).read_bytes()).hexdigest()
        return d


class SimulationResult(NamedTuple):
    """What ``simulate`` did: frames per replica, frames computed now, wall time and ns/day of this call."""

    out_dir: Path
    frames_per_replica: int
    new_frames: int
    wall_time_s: float
    ns_per_day: float


def simulate(
    config: MDConfig,
    out_dir: str | Path,
    *,
    command: str = "",
    progress: bool = True,
    force: bool = False,
    molecule: Any = None,
) -> SimulationResult:
    """Run (or resume) all replicas of ``config`` into ``out_dir``.

    Args:
        config: the simulation settings.
        out_dir: run directory; created if missing, resumed if it holds a run with the same configuration.
        command: command line recorded in the provenance.
        progress: show a tqdm bar with ns/day.
        force: delete an existing run in ``out_dir`` (finished or not) and start again.
        molecule: the :class:`~boltzflow.energies.openmm_system.Molecule` to simulate, e.g. a registered
            system's ``molecule(config.constraints)``; default: built from ``config``'s PDB and force field.

    Raises:
        BoltzflowError: ``out_dir`` holds a different run or files that are not a run, or the simulation
            diverged (then the chunks before the bad frame are kept and the provenance says where it failed).
        ValueError: bad settings, an unreadable PDB or a force field that does not fit it.
    """
    from boltzflow.energies.openmm_system import build_molecule

    config.validate()
    if molecule is None:
        molecule = build_molecule(config.pdb_path, config.forcefield, config.constraints)
    out = Path(out_dir)
    prov = prepare_dir(out, config, force)
    if prov is None:
        plat = config.platform
        if plat == "auto":
            from boltzflow.energies.openmm_bridge import fastest_platform

            plat = fastest_platform(molecule.system)
        prov = new_provenance(config, plat, command)
        write_topology(out / TOPOLOGY, molecule)
    else:
        prov["sessions"].append({"command": command, "started": now()})
    save_json(out / PROVENANCE, prov)

    done = [min(complete_chunks(out, r), config.n_chunks) for r in range(config.replicas)]
    done_frames = sum(sum(config.chunk_frames(c) for c in range(d)) for d in done)
    total = config.replicas * config.frames_per_replica
    t0, new_frames = time.perf_counter(), 0
    bar = _progress_bar(total, done_frames, progress)
    ps_per_frame = config.save_every_ps
    try:
        for r, seed in enumerate(prov["replica_seeds"]):
            for n in _run_replica(out, r, seed, prov["platform"], molecule, config, bar):
                new_frames += n
                elapsed = time.perf_counter() - t0
                rate = new_frames * ps_per_frame / 1000.0 / max(elapsed, 1e-9) * 86400.0
                bar.set_postfix_str(f"replica {r}, {rate:.0f} ns/day")
                record(prov, out, elapsed, new_frames, rate, config)
    except NonFiniteError as err:
        prov["status"], prov["error"] = "diverged", str(err)
        elapsed = time.perf_counter() - t0
        record(prov, out, elapsed, new_frames, new_frames * ps_per_frame / 1000.0 / max(elapsed, 1e-9) * 86400.0,
               config)
        raise
    finally:
        bar.close()
    prov.pop("error", None)
    elapsed = time.perf_counter() - t0
    rate = new_frames * ps_per_frame / 1000.0 / max(elapsed, 1e-9) * 86400.0
    prov["status"] = "complete"
    record(prov, out, elapsed, new_frames, rate, config)
    return SimulationResult(out, config.frames_per_replica, new_frames, elapsed, rate)


def _run_replica(
    out: Path, r: int, seed: int, platform_name: str, molecule: Any, config: MDConfig, bar: Any
) -> Iterator[int]:
    """Simulate and save the missing chunks of replica ``r`` (yields each one's frame count), then its XTC.

    Raises:
        NonFiniteError: the replica diverged; the message names the frame, its time and the chunks kept.
    """
    c = done = min(complete_chunks(out, r), config.n_chunks)
    if done < config.n_chunks:
        label = f"replica {r}"
        try:
            context = open_context(molecule.system, config.langevin, platform_name, seed)
            if done == 0:
                start(context, molecule.positions, config.langevin, seed, minimize=config.minimize,
                      equilibrate_ps=config.equilibrate_ps, label=label)
            else:
                restore(context, load_npz(chunk_path(out, r, done - 1), ["checkpoint"])["checkpoint"])
            for c in range(done, config.n_chunks):
                frames = run_frames(context, config.chunk_frames(c), config.steps_per_frame, forces=True,
                                    first_frame=c * config.frames_per_chunk, label=label,
                                    on_frame=lambda: bar.update(1))
                save_npz(chunk_path(out, r, c), xyz=frames.xyz, energy_kj=frames.energy_kj,
                         forces_kj=frames.forces_kj, time_ps=frames.time_ps, checkpoint=checkpoint(context))
                yield len(frames.time_ps)
        except NonFiniteError as err:
            first = c * config.frames_per_chunk
            kept = f"chunks 0-{c - 1} (frames 0-{first - 1}) are kept" if c else "no chunk was written"
            raise NonFiniteError(f"{err}; {kept} in {out / f'replica-{r:02d}'}", err.frame, err.time_ps) from None
    write_xtc(out, r, molecule)


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="frame", disable=not enabled, file=sys.stderr, smoothing=0.1
    )
