"""Score saved fisher-rao models again with the recipe's current evaluation (reweighted energy distance included).

For every ``<target>-<interpolation>-s<seed>.json`` with a ``.safetensors`` beside it in the given run folders
(``<out>/runs``), rebuild the model from the cell's saved training settings, load its weights and run
``experiments.fisher_rao_eval.evaluate_curve`` with the full preset's evaluation sizes, on a fresh generator
(seed 5000 + seed: a new draw, not the draw of the original evaluation). Prints one line per cell and writes
``rescore.json`` and the floors' cache ``rescore-cache/`` in the current directory.

    PYTHONPATH=src python docs/results/fisher-rao/rescore.py /work/runs/fr30/runs docs/results/fisher-rao/run10k/runs
"""

import json
import sys
import time
from pathlib import Path

import torch

from boltzflow.experiments.fisher_rao_eval import evaluate_curve
from boltzflow.experiments.fisher_rao_targets import get_target
from boltzflow.io import read_safetensors
from boltzflow.recipes import load_recipe
from boltzflow.training.fisher_rao import build_model

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
ev = load_recipe("fisher-rao", "full").config.evaluation
KEYS = ("energy_distance", "energy_distance_floor", "energy_distance_reweighted", "energy_distance_reweighted_floor",
        "energy_distance_reweighted_floor_sd", "energy_distance_reweighted_floor_at_ess", "ess_fraction",
        "log_z_is_error", "modes_covered")
out = {}
cache = Path("rescore-cache")  # the floors' cache (the raw floor copied from the run folder, the weighted one made)
cache.mkdir(exist_ok=True)
for folder in map(Path, sys.argv[1:]):
    for floor in folder.glob("floor-*.json"):
        if not (cache / floor.name).exists():
            (cache / floor.name).write_text(floor.read_text())
    for weights in sorted(folder.glob("*-s*.safetensors")):
        cell = json.loads(weights.with_suffix(".json").read_text())
        tc, target = cell["training"], get_target(cell["target"])
        model = build_model(cell["interpolation"], target.energy, target.dim, tc["base_scale"], tc["hidden"],
                            velocity_form=tc["velocity_form"], schedule=tc["schedule"], **target.scales)
        model.load_state_dict(read_safetensors(weights, "model")[0])
        t0 = time.process_time()
        m = evaluate_curve(model, target, ev, torch.Generator().manual_seed(5000 + cell["seed"]), cache,
                           ev.reference_seed).metrics
        row = {k: m[k] for k in KEYS} | {"cpu_s": time.process_time() - t0, "source": str(weights)}
        out[weights.stem] = row
        raw = m["energy_distance"] / m["energy_distance_floor"]
        print(f"{weights.stem} (base {tc['base_scale']}): raw ED/floor {raw:.0f}, "
              f"reweighted ED/floor {m['energy_distance_reweighted'] / m['energy_distance_reweighted_floor']:.2f} "
              f"(floor {m['energy_distance_reweighted_floor']:.3g} ± {m['energy_distance_reweighted_floor_sd']:.2g}, "
              f"at ESS {m['energy_distance_reweighted_floor_at_ess'] / m['energy_distance_reweighted_floor']:.1f}x), "
              f"ESS {100 * m['ess_fraction']:.1f} %, log Z err {m['log_z_is_error']:+.3f}, modes {m['modes_covered']}",
              flush=True)
Path("rescore.json").write_text(json.dumps(out, indent=1))
