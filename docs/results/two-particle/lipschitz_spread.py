import torch, numpy as np
torch.set_num_threads(1)
from boltzflow.training.checkpoint import load_flow
from boltzflow.eval.lipschitz import bi_lipschitz
for case in ["unregularised", "eps0.03", "eps0.1", "eps0.5"]:
    flow, _ = load_flow(f"runs/two-particle-full/checkpoints/{case}.pt")
    out = []
    for seed in range(4):
        z = torch.randn(10000, 4, generator=torch.Generator().manual_seed(100 + seed))
        f, i = bi_lipschitz(lambda v: flow.transform.forward(v)[0], z)
        out.append((round(f.max), round(f.quantile), round(i.max), round(i.quantile)))
    print(case, out, flush=True)
