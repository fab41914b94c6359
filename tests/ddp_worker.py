"""Worker of tests/test_distributed.py and tests/test_shards.py, launched as
``python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py OUT CHECKPOINT``.

On every rank it trains the tiny float64 flow of :func:`setup` data-parallel (a dataset source with uneven last
batches and an empty validation share, and a flow-sample source), also killed-and-resumed, then draws one shard
of samples per rank through ``boltzflow sample``. Rank 0 writes the runs under OUT; every rank writes
``OUT/rank-R.json`` with what the test checks across ranks (parameters after training, generator states).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from boltzflow.cli import main
from boltzflow.flows.realnvp import RealNVPConfig
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.training import distributed
from boltzflow.training.config import TrainConfig
from boltzflow.training.loop import fit, train
from boltzflow.training.losses import nll, sample_reverse_kl
from boltzflow.training.reporters import MetricsLog
from boltzflow.training.sources import FlowSampleSource

# 86 rows, 17 held out: 69 training rows make batches of 16, 16, 16, 16, 5 (shares 3 + 2), and the validation
# batches 16 + 1 leave rank 1 an empty share.
N_DATA, BATCH, VAL_FRACTION = 86, 16, 0.2


def setup(epochs: int) -> tuple[torch.nn.Module, torch.Tensor, TrainConfig]:
    """The flow (seeded weights), the data and the schedule every process uses."""
    spec = realnvp_spec(RealNVPConfig(dim=4, n_layers=2, hidden=[8]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        flow = build_flow(spec).double()
    x = torch.randn(N_DATA, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.7 + 0.3
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, lr=1e-2, lr_schedule="constant", val_fraction=VAL_FRACTION,
                      seed=5)  # constant: a stage stopped early and resumed takes the same steps
    return flow, x, cfg


def two_particle_checkpoint(path: Path) -> Path:
    """A small untrained flow for the two-particle system (seeded weights), saved as a sampling checkpoint."""
    from boltzflow.training.checkpoint import save_checkpoint

    spec = realnvp_spec(RealNVPConfig(dim=4, n_layers=2, hidden=[8]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        flow = build_flow(spec).double()
    save_checkpoint(path, {"model": flow.state_dict(), "flow_spec": spec, "system": {"name": "two-particle"}})
    return path


RECIPE = """
name = "tiny-bg"
runner = "bg"
system = "gmm40"
[data]
n_train = 300
n_test = 200
[flow]
n_layers = 2
hidden = [8]
[[stages]]
name = "nll"
epochs = 2
batch_size = 50
lr = 3e-3
[evaluation]
n_samples = 300
n_draws = 2
mh_steps = 10
model_metrics_n = 0
"""


def gaussian_energy(x: torch.Tensor) -> torch.Tensor:
    """u(x) = |x - 1|^2 / 2, kT."""
    return 0.5 * ((x - 1.0) ** 2).sum(-1)


def run_kl(flow: torch.nn.Module, epochs: int, path: Path) -> None:
    """Reverse KL on the flow's own samples (batch 12: 6 per rank, per-rank generators)."""
    cfg = TrainConfig(epochs=epochs, lr=5e-3, lr_schedule="constant", seed=7)
    source = FlowSampleSource(gaussian_energy, batch_size=12, steps_per_epoch=3)
    train(flow, sample_reverse_kl, source, cfg, checkpoint=path, reporters=[MetricsLog(path.parent / "metrics.jsonl")],
          stage="kl")


def flat(flow: torch.nn.Module) -> list[float]:
    return torch.cat([p.detach().reshape(-1) for p in flow.parameters()]).tolist()


def main_worker(out: Path, checkpoint: str) -> None:
    ranks = distributed.init_from_env()
    report: dict[str, object] = {"rank": ranks.rank, "world_size": ranks.world_size}
    with distributed.rank_output(out) as mine:
        flow, x, cfg = setup(3)
        fit(flow, nll, x, cfg, mine / "nll" / "checkpoint.safetensors", progress=False, desc="nll")
        report["nll_params"] = flat(flow)
        flow, x, cfg = setup(2)  # killed after 2 epochs, resumed to 3 (every rank reads rank 0's checkpoint)
        fit(flow, nll, x, cfg, mine / "nll-resumed" / "checkpoint.safetensors", progress=False, desc="nll")
        flow, x, cfg = setup(3)
        fit(flow, nll, x, cfg, mine / "nll-resumed" / "checkpoint.safetensors", progress=False, desc="nll")
        report["nll_resumed_params"] = flat(flow)
        flow, _, _ = setup(1)
        run_kl(flow, 3, mine / "kl" / "checkpoint.safetensors")
        report["kl_params"] = flat(flow)
        flow, _, _ = setup(1)
        run_kl(flow, 1, mine / "kl-resumed" / "checkpoint.safetensors")
        flow, _, _ = setup(1)
        run_kl(flow, 3, mine / "kl-resumed" / "checkpoint.safetensors")
        report["kl_resumed_params"] = flat(flow)
    code = main(["sample", checkpoint, "-n", "301", "--seed", "11", "--batch-size", "64", "--out",
                 str(out / "shards")])
    report["sample_exit"] = code
    report["run_exit"] = main(["run", str(out.parent / "tiny.toml"), "--out", str(out / "recipe-run"),
                               "--no-progress"])
    (out / f"rank-{ranks.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # as tests/conftest.py: the initial weights are drawn in float64
    main_worker(Path(sys.argv[1]), sys.argv[2])
