"""Noise floor of the GMM-40 mode-weight bar: max_k |40 w_k - 1| for n exact samples (all weights equal).

Run from the repository root: ``PYTHONPATH=src python docs/results/cmt-gmm40-modes/floor.py > OUT.txt``.
n = 7000 and 35,000 are the effective sample sizes of CMT's draws of 2e4 and 1e5 samples (ESS about 35 %).
"""

import numpy as np
import torch

from boltzflow.eval.modes import mode_weights
from boltzflow.systems.registry import get_system

system = get_system("gmm40")
for n in (7_000, 20_000, 35_000, 100_000):
    errs = []
    for d in range(8):
        x = system.sample_exact(n, torch.Generator().manual_seed(123 + d))
        w = mode_weights(system.mode_of(x.reshape(n, *system.event_shape)), 40)
        errs.append(float((w * 40 - 1).abs().max()))
    print(f"n = {n:>7}: max_k |40 w_k - 1| over 8 exact draws: mean {100 * np.mean(errs):.1f} %, "
          f"range {100 * min(errs):.1f}-{100 * max(errs):.1f} %")
