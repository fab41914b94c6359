"""Print the "Peptides" rows of docs/results/systems.md from the committed peptide runs' results.json.

Usage: ``python docs/results/systems/peptide-rows.py`` (no boltzflow import; reads the folders next to it).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
LABELS = {"md-nll": "MD NLL", "reverse-kl": "reverse KL"}


def _pm(v: dict, scale: float = 100.0) -> str:
    return f"{scale * v['mean']:.3f} ± {scale * v['sd']:.3f}"


def rows(folder: Path) -> list[str]:
    res = json.loads((folder / "results.json").read_text())
    cfg, prov = res["config"], res["provenance"]
    out = []
    for name, m in res["methods"].items():
        ev, t = m["evaluation"], m["timing"]
        data = m.get("training_data")
        frames = f"{data['n_samples']} train / {cfg['evaluation']['n_reference']} eval" if data else \
            f"0 train / {cfg['evaluation']['n_reference']} eval"
        load = f"{t['loadavg_start'][0]:.1f} → {t['loadavg_end'][0]:.1f}"
        out.append(" | ".join([
            "", res["system"], folder.name, str(cfg["seed"]), LABELS[name],
            _pm(ev["ess_fraction"]), f"{ev['ess_fraction']['mean'] * ev['n_per_draw']:.1f} of {ev['n_per_draw']}",
            f"{ev['nll_reference']:.1f}", f"{ev['eubo']:.1f}", f"{ev['ramachandran_tv']:.3f}", f"{m['evals']:,}",
            frames, f"{t['train_seconds_all_sessions']:.0f}", f"{prov['wall_seconds']:.0f}", load, ""]).strip())
    return out


if __name__ == "__main__":
    for folder in sorted(p for p in HERE.glob("peptide-*") if (p / "results.json").is_file()):
        print("\n".join(rows(folder)))
