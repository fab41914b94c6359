"""Write the shipped pretrained checkpoint (weights only, float32) from a finished alanine-bg run, and the compact
samples committed beside the results.

Run from the repository root:
    .venv/bin/python docs/results/alanine-bg/export_pretrained.py RUN_DIR "COMMAND"
writes src/boltzflow/data/alanine-dipeptide-bg.safetensors (the best weights of the run's last training stage, its flow spec,
system and data names, the command) and docs/results/alanine-bg/bg_samples.npz ((φ, ψ) in degrees, u and log_w of
all the run's samples; xyz of the first 10^4).
"""

import sys
from pathlib import Path

import numpy as np
import torch

from boltzflow.systems.alanine import phi_psi
from boltzflow.training.checkpoint import read_checkpoint, save_checkpoint

run, command = Path(sys.argv[1]), sys.argv[2]
stage = next(p for p in (run / "checkpoints" / n for n in ("bg_polish.pt", "bg.pt")) if p.is_file())
ckpt = read_checkpoint(stage)
best = ckpt["best_model"] if ckpt.get("best_model") is not None else ckpt["model"]
epoch = ckpt.get("best_epoch")  # 0-based
n_epochs = len(ckpt["history"])
save_checkpoint(
    "src/boltzflow/data/alanine-dipeptide-bg.safetensors",
    {
        "flow_spec": ckpt["flow_spec"],
        "system": ckpt["system"],
        "data": ckpt["data"],
        "model": {k: v.float() for k, v in best.items()},
        "note": f"pretrained alanine dipeptide Boltzmann generator (IC spline flow), weights of {stage.name} "
        f"epoch {epoch + 1} of {n_epochs} (lowest training loss); see docs/results/alanine-bg.md",
        "command": command,
    },
)
s = np.load(run / "samples" / "bg.npz")
x = torch.as_tensor(s["x"], dtype=torch.float64).reshape(-1, 22, 3)
np.savez_compressed(
    "docs/results/alanine-bg/bg_samples.npz",
    phi_psi_deg=np.degrees(phi_psi(x).numpy()).astype(np.float32),
    u=s["u"],
    log_w=s["log_w"],
    xyz=s["x"][:10_000].reshape(-1, 22, 3).astype(np.float32),
)
print(f"exported {stage} epoch {epoch + 1} of {n_epochs}")
