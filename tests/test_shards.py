"""Sharded sampling and the logsumexp merge: the merged ESS, log Z and reweighted observables equal those of one
process holding every sample (the same per-shard seeds), and bad shard folders fail in one line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzflow.cli import main
from boltzflow.commands.sample import draw_samples
from boltzflow.eval.shards import (
    merge_moments,
    merge_weight_stats,
    moment_stats,
    parse_shard,
    shard_name,
    shard_sizes,
    weight_stats,
)
from boltzflow.eval.weights import ess, log_partition_estimate, reweight
from boltzflow.io import load_npz
from boltzflow.training.checkpoint import load_flow
from boltzflow.training.distributed import rank_seed

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402

N, SEED, SHARDS = 301, 11, 3


def _log_weights(n: int, seed: int, dropped: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lw = 3.0 * torch.randn(n, generator=g, dtype=torch.float64) - 50.0  # wide weights, far from 0 in log space
    lw[:dropped] = torch.tensor([math.nan, -math.inf, math.inf])[:dropped]
    return lw


def test_weight_stats_merge_to_the_concatenated_ess_and_log_z():
    parts = [_log_weights(40, 1, dropped=2), _log_weights(7, 2), _log_weights(100, 3, dropped=3)]
    merged = merge_weight_stats([weight_stats(p) for p in parts])
    whole = torch.cat(parts)
    assert merged.n == 147 and merged.n_dropped == 5
    assert math.isclose(merged.ess, ess(whole), rel_tol=1e-12)
    z = log_partition_estimate(whole)
    assert math.isclose(merged.log_z, z.log_z, rel_tol=1e-12)
    assert math.isclose(merged.log_z_stderr, z.stderr, rel_tol=1e-10)


def test_moment_stats_merge_to_reweight_of_the_concatenation():
    g = torch.Generator().manual_seed(4)
    parts = [_log_weights(50, 5, dropped=1), _log_weights(3, 6), _log_weights(80, 7)]
    values = [torch.randn(len(p), 2, generator=g, dtype=torch.float64) * 2 + 10 for p in parts]
    merged = merge_moments([moment_stats(v, p) for v, p in zip(values, parts, strict=True)])
    whole = reweight(torch.cat(values), torch.cat(parts))
    torch.testing.assert_close(merged.mean, whole.mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(merged.stderr, whole.stderr, rtol=1e-10, atol=0)
    assert math.isclose(merged.ess, whole.ess, rel_tol=1e-12) and merged.n_dropped == whole.n_dropped == 1


def test_a_shard_whose_weights_are_all_dropped_adds_only_its_count():
    dead = torch.full((5,), math.nan, dtype=torch.float64)
    live = _log_weights(20, 8)
    merged = merge_weight_stats([weight_stats(dead), weight_stats(live)])
    assert merged.n == 25 and merged.n_dropped == 5
    assert math.isclose(merged.ess, ess(torch.cat([dead, live])), rel_tol=1e-12)
    values = torch.ones(25, dtype=torch.float64)
    est = merge_moments([moment_stats(values[:5], dead), moment_stats(values[5:], live)])
    assert float(est.mean) == pytest.approx(1.0, abs=1e-12)


def test_shard_helpers():
    assert shard_sizes(301, 3) == [101, 100, 100] and sum(shard_sizes(7, 7)) == 7
    assert parse_shard("2/5") == (2, 5) and shard_name(2, 5) == "shard-0002-of-0005.npz"
    for bad in ("5/5", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """Three shards written by three `sample --shard K/3` calls, and their merge."""
    root = tmp_path_factory.mktemp("shards")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # as the tests see it (a module fixture runs before conftest's)
    try:
        ckpt = ddp_worker.two_particle_checkpoint(root / "model.safetensors")
        for k in range(SHARDS):
            assert main(["sample", str(ckpt), "-n", str(N), "--seed", str(SEED), "--shard", f"{k}/{SHARDS}",
                         "--batch-size", "64", "--out", str(root / "shards")]) == 0
        assert main(["merge", str(root / "shards"), "--out", str(root / "merged.npz"), "--json",
                     str(root / "summary.json")]) == 0
    finally:
        torch.set_default_dtype(old)
    return root, ckpt


def _one_process(ckpt: Path) -> dict[str, np.ndarray]:
    """Every shard's samples drawn in this process with the shards' seeds, concatenated."""
    from boltzflow.commands.sample import load_system

    flow, info = load_flow(ckpt)
    system = load_system(info, str(ckpt))
    draws = [draw_samples(flow, system, n, 64, torch.Generator().manual_seed(rank_seed(SEED, k)))
             for k, n in enumerate(shard_sizes(N, SHARDS))]
    return {key: np.concatenate([d[key] for d in draws]) for key in draws[0]}


def test_merged_ess_and_observable_equal_one_process(sharded):
    root, ckpt = sharded
    whole = _one_process(ckpt)
    merged = load_npz(root / "merged.npz")
    assert sorted(merged) == sorted(whole)
    for key in whole:
        np.testing.assert_array_equal(merged[key], whole[key])
    summary = json.loads((root / "summary.json").read_text())
    log_w = torch.as_tensor(whole["log_w"])
    assert summary["n"] == N and summary["shards"] == SHARDS
    assert math.isclose(summary["ess"], ess(log_w), rel_tol=1e-12)
    from boltzflow.systems.registry import get_system

    r = get_system("two-particle").observables()["r"].fn(torch.as_tensor(whole["x"]))
    est = reweight(r, log_w)
    assert math.isclose(summary["observables"]["r"]["mean"], float(est.mean), rel_tol=1e-12)
    assert math.isclose(summary["observables"]["r"]["stderr"], float(est.stderr), rel_tol=1e-10)


def test_shard_zero_of_one_is_the_plain_sample(sharded, tmp_path):
    _, ckpt = sharded
    assert main(["sample", str(ckpt), "-n", "50", "--seed", "3", "--out", str(tmp_path / "plain.npz")]) == 0
    assert main(["sample", str(ckpt), "-n", "50", "--seed", "3", "--shard", "0/1", "--out", str(tmp_path)]) == 0
    plain, shard = load_npz(tmp_path / "plain.npz"), load_npz(tmp_path / shard_name(0, 1))
    for key in plain:
        np.testing.assert_array_equal(plain[key], shard[key])
    assert shard["shard"].tolist() == [0, 1] and int(shard["seed"]) == 3


def _fails_in_one_line(argv: list[str], root: Path, capsys) -> str:
    before = sorted(p for p in root.rglob("*"))
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as err:
        code = err.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code not in (0, None) and len(err) == 1, (argv, err)
    assert sorted(p for p in root.rglob("*")) == before
    return err[0]


def test_bad_shard_folders_fail_in_one_line(sharded, tmp_path, capsys):
    import shutil

    root, ckpt = sharded
    partial = tmp_path / "partial"
    shutil.copytree(root / "shards", partial)
    (partial / shard_name(1, SHARDS)).unlink()
    assert "missing" in _fails_in_one_line(["merge", str(partial), "--out", str(tmp_path / "m.npz")], tmp_path,
                                           capsys)
    shutil.copy(root / "shards" / shard_name(1, SHARDS), partial)
    shutil.copy(root / "shards" / shard_name(0, SHARDS), partial / shard_name(0, 2))
    assert "mixes" in _fails_in_one_line(["merge", str(partial)], tmp_path, capsys)
    assert "not a folder" in _fails_in_one_line(["merge", str(tmp_path / "nothing-here")], tmp_path, capsys)
    (tmp_path / "empty").mkdir()
    assert "no shard" in _fails_in_one_line(["merge", str(tmp_path / "empty")], tmp_path, capsys)
    other = tmp_path / "other-seed"
    shutil.copytree(root / "shards", other)
    assert main(["sample", str(ckpt), "-n", str(N), "--seed", "12", "--shard", f"1/{SHARDS}", "--out",
                 str(other)]) == 0
    assert "base_seed" in _fails_in_one_line(["merge", str(other)], tmp_path, capsys)
    assert "--shard" in _fails_in_one_line(["sample", str(ckpt), "--shard", "3/3", "--out", str(tmp_path / "s")],
                                           tmp_path, capsys)
    assert "empty" in _fails_in_one_line(["sample", str(ckpt), "-n", "2", "--shard", "2/3", "--out",
                                          str(tmp_path / "s")], tmp_path, capsys)


def test_shard_option_and_torchrun_do_not_mix(sharded, tmp_path, capsys, monkeypatch):
    _, ckpt = sharded
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert "torchrun" in _fails_in_one_line(["sample", str(ckpt), "--shard", "0/2", "--out", str(tmp_path / "s")],
                                            tmp_path, capsys)
    assert "one process" in _fails_in_one_line(["systems"], tmp_path, capsys)
