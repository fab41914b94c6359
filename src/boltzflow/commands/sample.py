"""Draw samples from a trained flow checkpoint.

Writes an npz with `x` (configurations in the system's coordinates, shape (n, D)), `log_prob` (log q(x) of the
flow) and, where the checkpoint's system has an energy, `energy` (reduced, kT) and `log_w` (log importance
weights -u(x) - log q(x), unnormalised). For molecules it also writes `xyz` (shape (n, n_atoms, 3), nm, atom
order of the shipped PDB) and the energy is the torch AMBER energy of those unconstrained coordinates. For flows
that remove the rigid-body motion (internal coordinates, aligned Cartesians) log q is the density of the reduced
coordinates, so log_w carries a constant offset; it cancels in self-normalised weights and ESS. The file is
written only when sampling succeeded.
"""

from __future__ import annotations

import argparse

HELP = "draw samples (x, log_prob, energy, log_w) from a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint file written by train or reproduce")
    p.add_argument("-n", type=int, default=10_000, help="number of samples (default 10000)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int, default=65_536, help="samples per forward pass (default 65536)")
    p.add_argument("--weights", choices=["best", "last"], default="best",
                   help="best-validation (default) or last weights")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from boltzflow.errors import BoltzflowError
    from boltzflow.io import save_npz
    from boltzflow.systems.registry import make_system
    from boltzflow.training.checkpoint import load_flow

    if args.n < 1 or args.batch_size < 1:
        raise BoltzflowError("-n and --batch-size must be positive")
    flow, ckpt = load_flow(args.checkpoint, args.weights)
    system = make_system(ckpt["system"]) if ckpt.get("system") else None
    energy = system.energy() if system is not None else None
    n_atoms = getattr(system, "n_atoms", None)
    gen = torch.Generator().manual_seed(args.seed)
    xs, lps, us = [], [], []
    with torch.no_grad():
        for start in range(0, args.n, args.batch_size):
            s = flow.sample(min(args.batch_size, args.n - start), gen)
            x = s.x.double()
            xs.append(x)
            lps.append(s.log_prob.double())
            if energy is not None:
                us.append(energy.double().energy(x.reshape(len(x), n_atoms, 3) if n_atoms else x))
    arrays = {"x": torch.cat(xs).numpy(), "log_prob": torch.cat(lps).numpy()}
    if n_atoms:
        arrays["xyz"] = arrays["x"].reshape(args.n, n_atoms, 3).astype(np.float32)
    if energy is not None:
        arrays["energy"] = torch.cat(us).numpy()
        arrays["log_w"] = -arrays["energy"] - arrays["log_prob"]
    if not np.isfinite(arrays["x"]).all():
        raise BoltzflowError("the flow produced non-finite samples; the checkpoint may be broken")
    save_npz(args.out, **arrays)
    print(f"wrote {args.n} samples to {args.out}")
    return 0
