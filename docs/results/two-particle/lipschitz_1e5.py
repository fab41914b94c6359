"""Lipschitz estimates of the four full-scale two-particle flows on 10^5 latent samples.

Run from the repository root after the full reproduction (checkpoints in runs/two-particle-full/):
    .venv/bin/python docs/results/two-particle/lipschitz_1e5.py
"""

import numpy as np
import torch

from boltzflow.eval.lipschitz import jacobian_singular_values
from boltzflow.training.checkpoint import load_flow

torch.set_num_threads(1)
for case in ["unregularised", "eps0.03", "eps0.1", "eps0.5"]:
    flow, _ = load_flow(f"runs/two-particle-full/checkpoints/{case}.pt")
    z = torch.randn(100_000, 4, generator=torch.Generator().manual_seed(2024))
    s = jacobian_singular_values(lambda v: flow.transform.forward(v)[0], z).double().numpy()
    fwd, inv = s[:, 0], 1.0 / s[:, -1]
    q = lambda a, p: float(np.quantile(a, p))  # noqa: E731
    blocks = fwd.reshape(10, -1)
    print(f"{case}: forward max {fwd.max():.0f}, q99.9 {q(fwd, 0.999):.0f}, q99 {q(fwd, 0.99):.1f}, median "
          f"{q(fwd, 0.5):.2f}; q99.9 over 10 blocks of 1e4: {np.quantile(blocks, 0.999, axis=1).min():.0f}–"
          f"{np.quantile(blocks, 0.999, axis=1).max():.0f}; inverse max {inv.max():.0f}, q99.9 {q(inv, 0.999):.0f}, "
          f"q99 {q(inv, 0.99):.1f}, median {q(inv, 0.5):.2f}", flush=True)
