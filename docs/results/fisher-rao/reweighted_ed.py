"""Energy distance of the saved CNF samples, raw and reweighted by their exact importance weights, beside its floor.

The recipe's table scores 5·10⁴ raw samples. A Boltzmann generator's samples are meant to be reweighted, and the
baselines of ``docs/results/systems.md`` report the reweighted distance, so this scores the 10⁴ saved samples of
each row (seed 0: ``samples/<target>-<interpolation>.npz``, ``x`` and ``log_w``) both ways against ``DRAWS``
independent exact samples of 10⁴; the floor is the same statistic between two independent exact samples of 10⁴.
A reweighted sample of 10⁴ with effective size n_eff carries about as much information as n_eff exact samples, so
``floor_at_ess`` is the statistic for round(n_eff) exact samples against the same reference: what a perfect
weighted sample of this ESS would score. ``eval.energy_distance.energy_distance`` (half Székely's D²; the ratios
to the floor are the same). Mean ± sd over the draws of the reference; the model sample is one draw of one
training seed.

    PYTHONPATH=src python docs/results/fisher-rao/reweighted_ed.py docs/results/fisher-rao/run10k/samples [...]
    # folders (every .npz in them) or single .npz files
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from boltzflow.eval.energy_distance import energy_distance
from boltzflow.eval.weights import ess
from boltzflow.experiments.fisher_rao_targets import get_target

DRAWS = 16
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
out = {}
paths = [p for a in map(Path, sys.argv[1:]) for p in (sorted(a.glob("*.npz")) if a.is_dir() else [a])]
for path in paths:
    target_name, interp = path.stem.split("-", 1)
    target = get_target(target_name)
    with np.load(path) as z:
        x, log_w = torch.as_tensor(z["x"], dtype=torch.float64), torch.as_tensor(z["log_w"])
    n = len(x)
    rows = {"raw": [], "reweighted": [], "floor": [], "floor_at_ess": []}
    n_eff = max(int(round(ess(log_w))), 2)
    for k in range(DRAWS):
        y = target.sample(n, torch.Generator().manual_seed(100 + 2 * k))
        exact = target.sample(n, torch.Generator().manual_seed(101 + 2 * k))
        rows["raw"].append(energy_distance(x, y))
        rows["reweighted"].append(energy_distance(x, y, log_w=log_w))
        rows["floor"].append(energy_distance(exact, y))
        rows["floor_at_ess"].append(energy_distance(exact[:n_eff], y))
    stats = {k: (float(np.mean(v)), float(np.std(v, ddof=1))) for k, v in rows.items()}
    floor = stats["floor"][0]
    key = f"{path.parent.parent.name}/{path.name}"
    out[key] = {"n": n, "ess": ess(log_w), **stats, "raw_over_floor": stats["raw"][0] / floor,
                "reweighted_over_floor": stats["reweighted"][0] / floor}
    print(f"{key}: n {n}, ESS {out[key]['ess']:.0f}, "
          f"raw {stats['raw'][0]:.4g} ± {stats['raw'][1]:.2g} ({stats['raw'][0] / floor:.0f}x floor), "
          f"reweighted {stats['reweighted'][0]:.4g} ± {stats['reweighted'][1]:.2g} "
          f"({stats['reweighted'][0] / floor:.1f}x floor), floor {floor:.3g} ± {stats['floor'][1]:.2g}, "
          f"floor at n_eff = {n_eff}: {stats['floor_at_ess'][0]:.3g} ± {stats['floor_at_ess'][1]:.2g}",
          flush=True)
print(json.dumps(out, indent=1))
