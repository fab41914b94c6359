"""Replica-exchange umbrella sampling (REUS) along one dihedral: the umbrella windows, with swaps between them.

Plain umbrella windows near the φ barrier of alanine dipeptide hold ψ in one basin for nanoseconds, so two seeds
disagree on the αL population long after φ has converged. Here every window's restraint is carried by one
replica (an OpenMM context whose ``umbrella_theta0`` is that window's centre), and after every recorded frame
neighbouring windows try to swap their replicas: the Metropolis test on the bias energies,

    accept with probability min(1, exp(-β [u_i(θ_b) + u_j(θ_a) - u_i(θ_a) - u_j(θ_b)])),

for the replica a in window i and b in window j. A swap exchanges the two contexts' centres (same temperature,
so velocities stay). Each exchange round is ``sweeps`` passes that alternate the even and the odd pairs on the
ring of windows. A replica that crosses the barrier carries its ψ with it, which is what the plain windows
could not do.

Each window's frames are samples of that window's biased distribution, so the window files are in the format
of :mod:`boltzflow.samplers.umbrella` and every umbrella analysis (MBAR, halves, ψ-aware thinning) reads them
unchanged. The run directory adds:

    exchange-state.npz    resume point: every replica's OpenMM checkpoint (concatenated, with offsets), the
                          window each replica holds, the exchange RNG state (JSON bytes), acceptance counts and
                          all frames so far (theta, extra, replica: shape (n_windows, n_frames))

written atomically every ``checkpoint_every`` frames, together with the window files (which gain ``replica``,
the replica index of each frame). A killed run loses at most that many frames; asking for longer windows
later continues from the state.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from boltzflow.energies.openmm_system import kt_kj_per_mol
from boltzflow.io import load_npz, save_json, save_npz
from boltzflow.samplers.openmm_run import checkpoint, open_context, restore, run_frames, start
from boltzflow.samplers.restraint import bias_energy_kj, chain_order, dihedral, restrained_system, window_centers
from boltzflow.samplers.umbrella_files import MANIFEST, window_path

STATE = "exchange-state.npz"
STATE_KEYS = ("theta", "extra", "replica", "time_ps", "window_of_replica", "checkpoints", "offsets", "rng",
              "attempts", "accepts")


def swap_pairs(n_windows: int, parity: int) -> np.ndarray:
    """Disjoint neighbour pairs (i, i+1 mod n) starting at ``parity`` (0 or 1), shape (n_pairs, 2).

    On an even ring the odd pass includes the pair (n-1, 0); on an odd ring that pair would reuse window 0, so it
    is left out (every other neighbour pair is still tried, and the ring stays connected through the rest).
    """
    first = np.arange(parity, n_windows - 1, 2)
    pairs = np.stack([first, first + 1], axis=1)
    if n_windows % 2 == 0 and parity == 1 and n_windows > 2:
        pairs = np.concatenate([pairs, [[n_windows - 1, 0]]])
    return pairs.reshape(-1, 2)


def exchange(
    theta: np.ndarray,
    window_of_replica: np.ndarray,
    centers: np.ndarray,
    k_kt: float,
    rng: np.random.Generator,
    sweeps: int,
    attempts: np.ndarray,
    accepts: np.ndarray,
) -> np.ndarray:
    """Neighbour swaps at fixed configurations; return the new window of every replica.

    Args:
        theta: restrained dihedral of every replica, shape (n,), rad.
        window_of_replica: window index held by each replica, shape (n,) (a permutation of 0..n-1).
        centers: window centres, shape (n,), rad.
        k_kt: force constant in kT/rad^2.
        rng: the exchange RNG (advanced).
        sweeps: passes, alternating even and odd pairs (the first is even).
        attempts, accepts: per-pair counters, shape (n,), index i counts the pair (i, i+1 mod n); updated in place.
    """
    n = len(centers)
    replica_of_window = np.empty(n, dtype=np.int64)
    replica_of_window[window_of_replica] = np.arange(n)
    # bias_energy_kj is linear in k, so with k in kT/rad^2 it returns reduced (kT) energies
    for s in range(sweeps):
        pairs = swap_pairs(n, s % 2)
        i, j = pairs[:, 0], pairs[:, 1]
        a, b = replica_of_window[i], replica_of_window[j]
        u = bias_energy_kj(theta[a], centers[j], k_kt) + bias_energy_kj(theta[b], centers[i], k_kt)
        u0 = bias_energy_kj(theta[a], centers[i], k_kt) + bias_energy_kj(theta[b], centers[j], k_kt)
        ok = np.log(rng.random(len(pairs))) < -(u - u0)
        attempts[i] += 1
        accepts[i] += ok
        replica_of_window[i[ok]], replica_of_window[j[ok]] = b[ok], a[ok]
    out = np.empty(n, dtype=np.int64)
    out[replica_of_window] = np.arange(n)
    return out


def run_exchange(
    config: Any, out: Path, manifest: dict[str, Any], molecule: Any, bar: Any, *, checkpoint_every: int = 50
) -> int:
    """Run or extend the replica-exchange umbrella run of ``config`` in ``out``; return the frames made per window.

    ``manifest`` is the opened run manifest (its window seeds seed the replicas' integrators and, with the base
    seed, the exchange RNG). See the module docstring for the files.
    """
    centers = window_centers(config.n_windows)
    k_kt = config.k_kj_per_mol_rad2 / kt_kj_per_mol(config.temperature_kelvin)
    state = _load_state(out / STATE) if (out / STATE).is_file() else None
    contexts = [open_context(restrained_system(molecule.system, config.restrained_atoms, 0.0,
                                              config.k_kj_per_mol_rad2), config.langevin, config.platform, seed)
                for seed in manifest["seeds"]]
    if state is None:
        state = _fresh_state(config, contexts, molecule, centers, manifest["seeds"], bar)
    else:
        _restore_all(contexts, state, centers)
    have = state["theta"].shape[1]
    bar.update(have * config.n_windows)
    todo = config.frames_per_window - have
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = json.loads(bytes(state["rng"]).decode())
    rows = {key: [state[key]] for key in ("theta", "extra", "replica", "time_ps")}
    new, window_of_replica = 0, state["window_of_replica"].astype(np.int64)
    while new < todo:
        block = min(checkpoint_every, todo - new)
        frames = np.empty((4, config.n_windows, block))
        for f in range(block):
            theta = np.empty(config.n_windows)
            for r, ctx in enumerate(contexts):
                w = window_of_replica[r]
                fr = run_frames(ctx, 1, config.steps_per_frame, first_frame=have + new + f,
                                label=f"replica {r} (window {w})")
                theta[r] = dihedral(fr.xyz[0], config.restrained_atoms)
                frames[:, w, f] = theta[r], dihedral(fr.xyz[0], config.extra_atoms), r, fr.time_ps[0]
            bar.update(config.n_windows)
            moved = exchange(theta, window_of_replica, centers, k_kt, rng, config.n_windows,
                             state["attempts"], state["accepts"])
            for r in np.flatnonzero(moved != window_of_replica):
                contexts[r].setParameter("umbrella_theta0", float(centers[moved[r]]))
            window_of_replica = moved
        for key, row in zip(("theta", "extra", "replica", "time_ps"), frames, strict=True):
            rows[key].append(row)
        new += block
        state.update({key: np.concatenate(v, axis=1) for key, v in rows.items()})
        state["window_of_replica"] = window_of_replica
        state["rng"] = np.frombuffer(json.dumps(rng.bit_generator.state).encode(), dtype=np.uint8)
        _save(out, state, contexts, centers, config, molecule)
        manifest["exchange"] = acceptance_summary(state["attempts"], state["accepts"], state["replica"])
        save_json(out / MANIFEST, manifest)
    return new


def acceptance_summary(attempts: np.ndarray, accepts: np.ndarray, replica: np.ndarray) -> dict[str, Any]:
    """Swap acceptance per neighbour pair (pair i is windows i, i+1 mod n) and how far the replicas travelled."""
    rate = np.where(attempts > 0, accepts / np.maximum(attempts, 1), np.nan)
    visited = [int(np.count_nonzero((replica == r).any(axis=1))) for r in range(replica.shape[0])]
    return {
        "acceptance_per_pair": [None if not np.isfinite(v) else round(float(v), 4) for v in rate],
        "min_acceptance": float(np.nanmin(rate)) if np.isfinite(rate).any() else None,
        "windows_visited_per_replica": visited,
    }


def _fresh_state(
    config: Any, contexts: list[Any], molecule: Any, centers: np.ndarray, seeds: list[int], bar: Any
) -> dict[str, Any]:
    """Start replica w in window w, as a chain like the plain umbrella: each from its neighbour's last frame."""
    n = config.n_windows
    xyz = None
    for w in chain_order(molecule.positions, config.restrained_atoms, centers):
        contexts[w].setParameter("umbrella_theta0", float(centers[w]))
        start(contexts[w], molecule.positions if xyz is None else xyz, config.langevin, seeds[w], minimize=True,
              equilibrate_ps=config.equilibrate_ps, label=f"replica {w} (window {w}, start)")
        xyz = _positions(contexts[w])
        bar.set_postfix_str(f"started replica {w}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, 8128])))
    empty = np.empty((n, 0))
    return {"theta": empty, "extra": empty, "replica": empty, "time_ps": empty,
            "window_of_replica": np.arange(n), "attempts": np.zeros(n, dtype=np.int64),
            "accepts": np.zeros(n, dtype=np.int64),
            "rng": np.frombuffer(json.dumps(rng.bit_generator.state).encode(), dtype=np.uint8)}


def _restore_all(contexts: list[Any], state: dict[str, Any], centers: np.ndarray) -> None:
    blobs = np.split(state["checkpoints"], state["offsets"][1:-1])
    for r, (ctx, blob) in enumerate(zip(contexts, blobs, strict=True)):
        restore(ctx, blob)
        ctx.setParameter("umbrella_theta0", float(centers[int(state["window_of_replica"][r])]))


def _save(out: Path, state: dict[str, Any], contexts: list[Any], centers: np.ndarray, c: Any, molecule: Any) -> None:
    """The resume point first, then every window file (derived from it), each written atomically."""
    blobs = [checkpoint(ctx) for ctx in contexts]
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    state = {**state, "checkpoints": np.concatenate(blobs), "offsets": offsets}
    save_npz(out / STATE, **{k: state[k] for k in STATE_KEYS})
    replica_of_window = np.empty(c.n_windows, dtype=np.int64)
    replica_of_window[state["window_of_replica"]] = np.arange(c.n_windows)
    for w in range(c.n_windows):
        r = int(replica_of_window[w])
        xyz = _positions(contexts[r])
        save_npz(window_path(out, w), theta0=centers[w], k_kj_per_mol_rad2=c.k_kj_per_mol_rad2,
                 theta=state["theta"][w], extra=state["extra"][w], time_ps=state["time_ps"][w],
                 replica=state["replica"][w].astype(np.int64), final_xyz=xyz, checkpoint=blobs[r])


def _positions(context: Any) -> np.ndarray:
    """Current positions of a context, shape (n_atoms, 3), nm."""
    import openmm.unit as unit

    return np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))


def _load_state(path: Path) -> dict[str, Any]:
    from boltzflow.errors import BoltzflowError

    try:
        return load_npz(path, STATE_KEYS)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise BoltzflowError(f"{path} is not a readable exchange state ({str(err).splitlines()[0]}); "
                             "delete the run directory and start again") from None

