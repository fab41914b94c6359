"""Print the Markdown tables of docs/peptides.md from the shipped references and the basin JSONs.

    PYTHONPATH=src python docs/results/peptides/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from boltzflow.systems.peptide import SHIPPED, reference_path

HERE = Path(__file__).resolve().parent


def md_table() -> str:
    rows = ["| system | replicas kept (asked) × ns | simulated | frames at 1 ps | shipped frames (every) | file | "
            "wall time (sessions) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for seq in SHIPPED:
        npz = reference_path(seq)
        if not npz.is_file():
            continue
        prov = json.loads(npz.with_suffix(".json").read_text())
        pk, cfg = prov["packing"], prov["config"]
        sessions = "; ".join(f"{s['wall_time_s'] / 3600:.2f} h, {s['new_frames']} frames, {s['ns_per_day']:.0f} ns/day"
                             for s in prov["sessions"])
        rows.append(f"| `peptide:{seq}` | {len(pk['replicas_kept'])} ({cfg['replicas']}) × {cfg['ns']:g} | "
                    f"{pk['ns_total']:g} ns | {pk['n_frames_simulated']} | {pk['n_frames']} "
                    f"({pk['frame_interval_ps']:g} ps) | {npz.stat().st_size / 1e6:.2f} MB | {sessions} |")
    return "\n".join(rows)


def basin_table(seq: str) -> str:
    data = json.loads((HERE / f"{seq}-basins.json").read_text())
    full = data["full_1ps"]
    pooled, sem = np.array(full["pooled"]), np.array(full["replica_sem"])
    per = np.array(full["per_replica"])
    changes = np.array(full["basin_changes_per_replica"])
    head = " | ".join(full["basins"])
    rows = [f"`peptide:{seq}`, {full['n_frames']} frames (1 ps) of replicas {data['replicas_kept']}:", "",
            f"| residue | {head} | αL per replica | basin changes per replica |",
            "| --- |" + " --- |" * (len(full["basins"]) + 2)]
    for r, name in enumerate(full["residues"]):
        cells = " | ".join(f"{100 * p:.1f} ± {100 * s:.1f} %" for p, s in zip(pooled[r], sem[r], strict=True))
        alpha_l = ", ".join(f"{100 * v:.2f}" for v in per[:, r, 2])
        rows.append(f"| {name} | {cells} | {alpha_l} % | {', '.join(map(str, changes[:, r]))} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(md_table(), end="\n\n")
    for seq in SHIPPED:
        if (HERE / f"{seq}-basins.json").is_file():
            print(basin_table(seq), end="\n\n")
