"""Copy a finished ``reproduce cmt-*`` run into docs/results/<recipe>/ and print its summary lines.

    PYTHONPATH=src python docs/results/cmt_collect.py runs/cmt-gmm40 docs/results/cmt-gmm40

Copies results.json, table.md, recipe.toml, figures/*.png and samples/*.npz (2·10⁴ samples per method: x as
float32, log_prob and u as float64), then prints, per method, the numbers the issue's bars ask for.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main(run: str, dest: str) -> None:
    src, out = Path(run), Path(dest)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    for name in ("results.json", "table.md", "recipe.toml"):
        shutil.copy2(src / name, out / name)
    for sub, pattern in (("figures", "*.png"), ("samples", "*.npz")):
        for f in sorted((src / sub).glob(pattern)):
            shutil.copy2(f, out / sub / f.name)
    res = json.loads((src / "results.json").read_text())
    prov = res["provenance"]
    print(f"{res['system']}: command {prov['command']!r}, wall {prov['wall_seconds']} s (this session)")
    for name, m in res["methods"].items():
        ev, t = m["evaluation"], m["timing"]
        line = [f"{name}: evals {m['evals']}", f"ESS {100 * ev['ess_fraction']['mean']:.2f} ± "
                f"{100 * ev['ess_fraction']['sd']:.2f} %", f"train {t['train_seconds_all_sessions']} s wall"]
        if "log_z" in ev:
            line.append(f"log Z error {ev['log_z']['error']:+.4f} (sd {ev['log_z']['estimate']['sd']:.4f})")
        if "modes_per_draw" in m:
            md = m["modes_per_draw"]
            line.append(f"modes {md['covered']}, max rel err vs cell {[round(v, 3) for v in md['max_rel_error_vs_cell']]}")
        print("  " + "; ".join(line))


if __name__ == "__main__":
    main(*sys.argv[1:3])
