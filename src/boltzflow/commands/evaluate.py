"""Evaluate a trained flow against reference samples.

Draws -n samples from the checkpoint and reports: the NLL of the reference data under the flow, W2 between
generated and reference samples (mean ± sd over 1,000-point subsample draws) next to its noise floor (the W2
between two disjoint reference subsamples of the same size), the Lipschitz constants of the map and of its
inverse (max and 99.9 % quantile of Jacobian singular values over latent samples), and the system's own
observables (for two-particle: min r, mean r, collision fraction r < 0.3).
"""

from __future__ import annotations

import argparse
import json

HELP = "evaluate a checkpoint against reference samples (W2 + noise floor, NLL, Lipschitz, observables)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint file written by train or reproduce")
    p.add_argument("--data", required=True, help="reference samples: npz with array x of shape (n, D)")
    p.add_argument("-n", type=int, default=10_000, help="generated samples (default 10000)")
    p.add_argument("--w2-n", type=int, default=1000, help="subsample size of every W2 (default 1000)")
    p.add_argument("--draws", type=int, default=5, help="subsample draws per W2 (default 5)")
    p.add_argument("--n-lipschitz", type=int, default=10_000, help="latent points for Lipschitz estimates")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="write the metrics as JSON here (default: print only)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from boltzflow.commands.train import load_samples
    from boltzflow.eval.lipschitz import bi_lipschitz
    from boltzflow.eval.wasserstein import w2_with_floor
    from boltzflow.io import save_json
    from boltzflow.training.checkpoint import load_flow

    flow, ckpt = load_flow(args.checkpoint)
    ref = load_samples(args.data, flow.dim)
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        x_gen = flow.sample(args.n, gen).x.double().numpy()
        nll = float(-flow.log_prob(torch.as_tensor(ref, dtype=next(flow.parameters()).dtype)).mean())
    rng = np.random.default_rng(args.seed)
    metrics = {"checkpoint": args.checkpoint, "data": args.data, "n_gen": args.n, "n_ref": len(ref), "nll_data": nll,
               "w2_x": w2_with_floor(ref, x_gen, n=args.w2_n, draws=args.draws, generator=rng)}
    z = torch.randn(args.n_lipschitz, flow.dim, generator=gen)
    fwd, inv = bi_lipschitz(lambda v: flow.transform.forward(v)[0], z)
    metrics.update(lip=fwd.max, lip_q999=fwd.quantile, lip_inverse=inv.max, lip_inverse_q999=inv.quantile)
    if (ckpt.get("system") or {}).get("name") == "two-particle":
        from boltzflow.systems.two_particle import observables

        metrics["observables_gen"] = observables(x_gen)
        metrics["observables_ref"] = observables(ref)
    print(json.dumps(metrics, indent=2))
    if args.out:
        save_json(args.out, metrics)
    return 0
