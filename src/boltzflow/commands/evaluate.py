"""Evaluate a trained flow (a checkpoint, or a shipped model by name) against reference samples.

The reference data is an npz with `x` of shape (n, D) in the flow's coordinates or, for molecules, `xyz` of
shape (n, n_atoms, 3) in nm: what `boltzflow sample` and `boltzflow simulate` write, so
`boltzflow evaluate alanine-dipeptide-bg --data s.npz` scores the shipped model against its own samples.

Draws -n samples from the flow and reports: the NLL of the reference data under the flow, W2 between generated
and reference samples (mean ± sd over --w2-n-point subsample draws) next to its noise floor (the W2 between two
disjoint reference subsamples of the same size), where the system has an energy the Kish ESS of the generated
samples' importance weights, the Lipschitz constants of the map and of its inverse (max and 99.9 % quantile of
Jacobian singular values over --n-lipschitz latent points; skipped with 0, and for flows whose latent and
sample dimensions differ, such as internal-coordinate flows) and the system's own observables (for two-particle:
min r, mean r, collision fraction r < 0.3).

--device cuda draws the samples, log q, the torch energies and the Lipschitz Jacobians on the GPU; W2 runs on the
CPU.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from boltzflow.runtime import add_device_argument

HELP = "evaluate a checkpoint against reference samples (W2 + noise floor, NLL, ESS, Lipschitz, observables)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint file written by train or reproduce, or a shipped model's name")
    p.add_argument("--data", required=True,
                   help="reference samples: npz with x (n, D), or xyz (n, n_atoms, 3) nm for molecules")
    p.add_argument("-n", type=int, default=10_000, help="generated samples (default 10000)")
    p.add_argument("--w2-n", type=int, default=1000, help="subsample size of every W2 (default 1000)")
    p.add_argument("--draws", type=int, default=5, help="subsample draws per W2 (default 5)")
    p.add_argument("--n-lipschitz", type=int, default=10_000,
                   help="latent points for Lipschitz estimates (default 10000; 0 skips them)")
    p.add_argument("--seed", type=int, default=0, help="random seed >= 0 (default 0)")
    p.add_argument("--batch-size", type=int, default=10_000, help="samples per forward pass (default 10000)")
    p.add_argument("--out", help="write the metrics as JSON here (default: print only; its folder must exist)")
    add_device_argument(p, "torch", "sampling, log q, the torch energy and the Lipschitz Jacobians (W2 runs on "
                                    "the CPU)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from boltzflow.commands.sample import check_counts, load_system
    from boltzflow.errors import BoltzflowError
    from boltzflow.eval.wasserstein import w2_with_floor
    from boltzflow.eval.weights import ess_fraction
    from boltzflow.io import check_output_file, read_configurations, save_json
    from boltzflow.runtime import resolve_device
    from boltzflow.training.checkpoint import load_flow

    check_counts(n=(args.n, 1), w2_n=(args.w2_n, 2), draws=(args.draws, 1), n_lipschitz=(args.n_lipschitz, 0),
                 seed=(args.seed, 0), batch_size=(args.batch_size, 1))
    if args.out:
        check_output_file(args.out)
    device = resolve_device(args.device)
    flow, ckpt = load_flow(args.checkpoint)
    flow = flow.to(device)
    system = load_system(ckpt, args.checkpoint)
    with torch.no_grad():
        probe = flow.sample(1, torch.Generator(device).manual_seed(0)).x
    x_dim, dtype = probe.shape[1], probe.dtype
    ref = read_configurations(args.data, x_dim, system.event_shape if system is not None else None)
    if args.n < args.w2_n or len(ref) < 2 * args.w2_n:
        raise BoltzflowError(f"--w2-n {args.w2_n} needs -n >= {args.w2_n} generated and >= {2 * args.w2_n} "
                             f"reference samples (for the noise floor); got -n {args.n} and {len(ref)}")
    gen = torch.Generator(device).manual_seed(args.seed)
    x_gen, log_q = _sample(flow, args.n, args.batch_size, gen)
    with torch.no_grad():
        ref_t = torch.as_tensor(ref, dtype=dtype, device=device)
        nll = float(-torch.cat([flow.log_prob(c) for c in ref_t.split(args.batch_size)]).double().mean())
    rng = np.random.default_rng(args.seed)
    metrics = {"checkpoint": str(args.checkpoint), "data": args.data, "n_gen": args.n, "n_ref": len(ref),
               "nll_data": nll, "w2_x": w2_with_floor(ref, x_gen.numpy(), n=args.w2_n, draws=args.draws,
                                                      generator=rng)}
    if system is not None:
        energy = system.energy().to(device)
        with torch.no_grad():
            u = torch.cat([energy(c.to(device).unflatten(-1, system.event_shape)).double().cpu()
                           for c in x_gen.split(args.batch_size)])
        metrics["ess_fraction"] = ess_fraction(-u - log_q)
    metrics.update(_lipschitz(flow, args.n_lipschitz, x_gen.shape[1], gen))
    if system is not None and system.name == "two-particle":
        from boltzflow.systems.two_particle import observables

        metrics["observables_gen"] = observables(x_gen.numpy())
        metrics["observables_ref"] = observables(ref)
    print(json.dumps(metrics, indent=2))
    if args.out:
        save_json(args.out, metrics)
    return 0


def _sample(flow: Any, n: int, batch_size: int, gen: Any) -> tuple[Any, Any]:
    """``n`` flow samples and their log q, float64, in chunks."""
    import torch

    xs, lqs = [], []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            s = flow.sample(min(batch_size, n - start), gen)
            xs.append(s.x.double().cpu())
            lqs.append(s.log_prob.double().cpu())
    return torch.cat(xs), torch.cat(lqs)


def _lipschitz(flow: Any, n: int, x_dim: int, gen: Any) -> dict[str, Any]:
    """Forward/inverse Lipschitz estimates on ``n`` latent points, or why they were skipped."""
    from boltzflow.eval.lipschitz import bi_lipschitz

    if n == 0:
        return {"lipschitz": "skipped (--n-lipschitz 0)"}
    if x_dim != flow.dim:
        return {"lipschitz": f"skipped: the flow maps R^{flow.dim} into R^{x_dim} (not a bijection of one space)"}
    z = flow.base.sample(n, gen)
    fwd, inv = bi_lipschitz(lambda v: flow.transform.forward(v)[0], z)  # on the flow's device
    return {"lip": fwd.max, "lip_q999": fwd.quantile, "lip_inverse": inv.max, "lip_inverse_q999": inv.quantile}
