"""Data-parallel training under torchrun: 2 CPU processes (gloo) against one process with the same global batch.

One launch (``python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py``, the same
launcher users run, so torchrun's environment, our process-group setup and the exit path are all exercised) does
every distributed scenario; the tests read what it wrote. torchrun rather than ``torch.multiprocessing.spawn``:
the worker is a plain script, so nothing of pytest is re-imported in the children, and the rendezvous picks a
free port itself (``--standalone``). The launch has a hard timeout and its whole process group is killed on
failure, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boltzflow.training import distributed
from boltzflow.training.loop import fit
from boltzflow.training.losses import nll
from boltzflow.training.reporters import read_metrics

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ddp_worker  # noqa: E402

LAUNCH_TIMEOUT_S = 240


def launch(out: Path, checkpoint: Path) -> subprocess.CompletedProcess:
    """Run the worker on 2 processes; kill the whole process group if it does not finish in time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BOLTZFLOW_DIST_TIMEOUT": "120", "BOLTZFLOW_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "ddp_worker.py"), str(out), str(checkpoint)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {LAUNCH_TIMEOUT_S} s:\n{stdout[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, "")


def launch_worker(root: Path) -> tuple[Path, Path, list[dict]]:
    """One torchrun launch of the worker; returns its output folder, the sampling checkpoint and the rank reports."""
    checkpoint = ddp_worker.two_particle_checkpoint(root / "model.safetensors")
    out = root / "out"
    out.mkdir()
    (root / "tiny.toml").write_text(ddp_worker.RECIPE)
    result = launch(out, checkpoint)
    assert result.returncode == 0, result.stdout[-4000:]
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(2)]
    return out, checkpoint, ranks


def test_two_processes_under_torchrun(tmp_path, capsys):
    """Every distributed check on one launch (one test, so that pytest-xdist never launches it twice)."""
    run = launch_worker(tmp_path)
    for check in (check_loss_curve, check_rank_zero_alone_writes, check_resume_restores_every_rank,
                  check_per_rank_seeds, check_one_shard_per_rank, check_recipe_file):
        (tmp_path / check.__name__).mkdir()
        check(run, tmp_path / check.__name__, capsys)


def step_losses(path: Path, stage: str) -> list[float]:
    return [r["loss"] for r in read_metrics(path) if r["event"] == "step" and r["stage"] == stage]


def epoch_records(path: Path, stage: str) -> list[dict]:
    return [r for r in read_metrics(path) if r["event"] == "epoch" and r["stage"] == stage]


def single_process_nll(tmp_path: Path) -> tuple[list[float], list[dict], list[float]]:
    flow, x, cfg = ddp_worker.setup(3)
    fit(flow, nll, x, cfg, tmp_path / "checkpoint.safetensors", progress=False, desc="nll")
    params = torch.cat([p.detach().reshape(-1) for p in flow.parameters()]).tolist()
    return step_losses(tmp_path / "metrics.jsonl", "nll"), epoch_records(tmp_path / "metrics.jsonl", "nll"), params


def check_loss_curve(ddp_run, tmp_path, capsys):
    out, _, ranks = ddp_run
    losses, epochs, params = single_process_nll(tmp_path)
    ddp_losses = step_losses(out / "nll" / "metrics.jsonl", "nll")
    assert len(losses) == 3 * 5 and len(ddp_losses) == len(losses)  # 69 rows / 16 per global batch -> 5 steps
    assert max(abs(a - b) for a, b in zip(ddp_losses, losses, strict=True)) < 1e-10
    ddp_epochs = epoch_records(out / "nll" / "metrics.jsonl", "nll")
    for mine, theirs in zip(ddp_epochs, epochs, strict=True):
        assert math.isclose(mine["train_loss"], theirs["train_loss"], rel_tol=0, abs_tol=1e-10)
        assert math.isclose(mine["val_loss"], theirs["val_loss"], rel_tol=0, abs_tol=1e-10)  # rank 1: empty share
    assert max(abs(a - b) for a, b in zip(ranks[0]["nll_params"], params, strict=True)) < 1e-10
    assert ranks[0]["nll_params"] == ranks[1]["nll_params"]  # every rank took the same steps


def check_rank_zero_alone_writes(ddp_run, tmp_path, capsys):
    out, _, _ = ddp_run
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    runs = [p for p in written if not p.startswith(("rank-", "shards/", "recipe-run/"))]
    assert runs == sorted(f"{run}/{name}" for run in ("kl", "kl-resumed", "nll", "nll-resumed")
                          for name in ("checkpoint.safetensors", "metrics.jsonl"))


def check_resume_restores_every_rank(ddp_run, tmp_path, capsys):
    """Killed after 2 of 3 epochs (NLL) or 1 of 3 (reverse KL on per-rank flow samples) and resumed: every rank
    continues from rank 0's checkpoint, its own generator states included, and ends where the uninterrupted
    run ends, bit for bit."""
    out, _, ranks = ddp_run
    for run in ("nll", "kl"):
        stage = run
        assert step_losses(out / f"{run}-resumed" / "metrics.jsonl", stage) == step_losses(out / run / "metrics.jsonl",
                                                                                           stage)
        for r in ranks:
            assert r[f"{run}_resumed_params"] == r[f"{run}_params"]
    assert ranks[0]["kl_params"] == ranks[1]["kl_params"]


def check_per_rank_seeds(ddp_run, tmp_path, capsys):
    out, _, _ = ddp_run
    from boltzflow.training.checkpoint import read_checkpoint

    rng = read_checkpoint(out / "kl" / "checkpoint.safetensors")["rng"]
    assert {"samples", "global", "samples@1", "global@1"} <= set(rng)
    assert not torch.equal(rng["samples"], rng["samples@1"])
    assert distributed.rank_seed(7, 0) == 7 and distributed.rank_seed(7, 1) != 7


def check_one_shard_per_rank(ddp_run, tmp_path, capsys):
    """Rank R of 2 writes shard R of 2, the same arrays as `sample --shard R/2` in one process."""
    from boltzflow.cli import main
    from boltzflow.io import load_npz

    out, checkpoint, ranks = ddp_run
    assert [r["sample_exit"] for r in ranks] == [0, 0]
    names = sorted(p.name for p in (out / "shards").iterdir())
    assert names == ["shard-0000-of-0002.npz", "shard-0001-of-0002.npz"]
    for k, name in enumerate(names):
        assert main(["sample", str(checkpoint), "-n", "301", "--seed", "11", "--batch-size", "64", "--shard",
                     f"{k}/2", "--out", str(tmp_path)]) == 0
        mine, theirs = load_npz(tmp_path / name), load_npz(out / "shards" / name)
        assert sorted(mine) == sorted(theirs)
        for key in mine:
            assert (mine[key] == theirs[key]).all(), key
    capsys.readouterr()


def check_recipe_file(ddp_run, tmp_path, capsys):
    """`torchrun -m boltzflow run FILE`: rank 0 writes the run folder; its NLL curve is the one-process curve
    (float32 flow: to float32 rounding)."""
    from boltzflow.cli import main

    out, _, ranks = ddp_run
    assert [r["run_exit"] for r in ranks] == [0, 0]
    run = out / "recipe-run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "figures", "recipe.toml", "results.json",
                                                      "samples"]
    assert main(["run", str(out.parent / "tiny.toml"), "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    capsys.readouterr()
    mine = step_losses(tmp_path / "one" / "checkpoints" / "metrics.jsonl", "nll")
    theirs = step_losses(run / "checkpoints" / "metrics.jsonl", "nll")
    assert len(mine) == len(theirs) == 2 * 6  # 270 training rows in batches of 50
    assert max(abs(a - b) / abs(a) for a, b in zip(mine, theirs, strict=True)) < 1e-5


def test_one_process_is_untouched():
    assert distributed.active() is None and distributed.is_main()
    assert distributed.env_ranks().world_size == int(os.environ.get("WORLD_SIZE", "1"))


def test_dataset_shards_make_up_the_global_batches():
    """Rows r::N of every global batch: the ranks' batches together are exactly one process's batches."""
    from boltzflow.training.sources import DatasetSource, Generators

    x = torch.arange(70.0).reshape(35, 2)

    def batches(rank: int, world: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        source = DatasetSource(x, batch_size=8, val_fraction=0.3)
        source.shard(rank, world)
        gens = Generators(torch.Generator().manual_seed(4), torch.Generator().manual_seed(4))
        source.start(gens)
        return list(source.batches(None, gens)), source.validation_batches()

    whole, whole_val = batches(0, 1)
    parts = [batches(r, 3) for r in range(3)]
    for k, batch in enumerate(whole):
        mine = torch.cat([p[0][k] for p in parts])
        assert sorted(mine[:, 0].tolist()) == sorted(batch[:, 0].tolist())
    assert all(len(p[0]) == len(whole) for p in parts)  # every rank takes the same number of steps
    assert [sum(len(p[1][k]) for p in parts) for k in range(len(whole_val))] == [len(b) for b in whole_val]
    source = DatasetSource(x, batch_size=8)
    source.shard(1, 3)
    assert source.fingerprint()["processes"] == 3


def test_flow_sample_shares_add_up_and_the_replay_buffer_refuses():
    from boltzflow.errors import BoltzflowError
    from boltzflow.training.replay import ReplayBuffer
    from boltzflow.training.sources import FlowSampleSource

    shares = []
    for rank in range(4):
        source = FlowSampleSource(ddp_worker.gaussian_energy, batch_size=10)
        source.shard(rank, 4)
        shares.append(source.local_batch)
    assert shares == [3, 3, 2, 2]
    with pytest.raises(BoltzflowError, match="cannot be split"):
        ReplayBuffer(batch_size=4).shard(0, 2)
    ReplayBuffer(batch_size=4).shard(0, 1)  # one process: nothing to split
