"""How the replicas of a replica-exchange umbrella run travel: swap acceptance, windows visited, barrier crossings.

    PYTHONPATH=src python docs/results/alanine-umbrella-reus/replicas.py NS_PER_WINDOW RUN [RUN ...]

For the first NS_PER_WINDOW ns of each RUN (``boltzflow umbrella --exchange``) it prints, from the run's
exchange-state.npz: the swap acceptance per neighbour pair (lowest five, with their window centres), the windows
each replica visited, and the number of times each replica went between the αL windows (centres 0°…120°) and the
windows of the β / αR side (centres −180°…−40°), counting a passage only once it reaches the other side. A replica
that crosses carries its ψ with it: these crossings are what the plain windows on the barrier lacked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from boltzflow.io import load_npz
from boltzflow.samplers.restraint import window_centers


def crossings(windows: np.ndarray, side: np.ndarray) -> int:
    """Passages between side +1 and side -1 (0: between the two) along a replica's window sequence."""
    s = side[windows]
    s = s[s != 0]
    return int(np.count_nonzero(s[1:] != s[:-1]))


def report(run: Path, ns: float) -> dict:
    manifest = json.loads((run / "umbrella.json").read_text())
    n = int(round(ns * 1000.0 / manifest["config"]["save_every_ps"]))
    state = load_npz(run / "exchange-state.npz", ["replica", "attempts", "accepts"])
    replica = state["replica"][:, :n].astype(int)  # (n_windows, n_frames): replica in each window
    n_windows = replica.shape[0]
    centres = np.degrees(window_centers(n_windows))
    window_of = np.empty_like(replica)  # (n_replicas, n_frames): window of each replica
    for f in range(replica.shape[1]):
        window_of[replica[:, f], f] = np.arange(n_windows)
    side = np.where((centres >= 0) & (centres <= 120), 1, np.where(centres <= -40, -1, 0))
    cross = [crossings(w, side) for w in window_of]
    visited = [len(set(w.tolist())) for w in window_of]
    rate = state["accepts"] / np.maximum(state["attempts"], 1)  # over the whole run so far
    low = np.argsort(rate)[:5]
    return {"run": str(run), "frames_per_window": int(replica.shape[1]),
            "lowest_acceptance": [[f"{centres[i]:+.0f}/{centres[(i + 1) % n_windows]:+.0f}", round(float(rate[i]), 4)]
                                  for i in low],
            "median_acceptance": round(float(np.median(rate)), 4),
            "windows_visited": {"min": min(visited), "median": float(np.median(visited)), "max": max(visited)},
            "barrier_crossings_per_replica": cross, "barrier_crossings_total": int(sum(cross)),
            "replicas_that_crossed": int(np.count_nonzero(cross))}


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    print(json.dumps([report(Path(r), float(sys.argv[1])) for r in sys.argv[2:]], indent=1))
