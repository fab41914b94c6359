"""``--device`` on every command: present in every parser (a new command without it fails here), checked by
argparse before anything is read or written, refused in one line where it cannot apply; CUDA runs skip cleanly
on machines without CUDA."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzflow.cli import COMMANDS, build_parser, main
from boltzflow.io import load_npz
from boltzflow.runtime import add_device_argument, resolve_device

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402

OPENMM_ONLY = {"simulate", "umbrella"}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _base(command: str, f: Path) -> list[str]:
    """A parseable invocation of every command, its outputs under ``f`` (the device check comes first)."""
    ckpt, out = str(f / "model.safetensors"), str(f / "out")
    return {
        "train": ["train", str(f / "config.json"), "--out", out],
        "sample": ["sample", ckpt, "-n", "10", "--out", str(f / "s.npz")],
        "merge": ["merge", str(f / "shards"), "--out", str(f / "m.npz")],
        "evaluate": ["evaluate", ckpt, "--data", str(f / "data.npz"), "--out", str(f / "e.json")],
        "reproduce": ["reproduce", "two-particle", "--out", out],
        "run": ["run", str(f / "recipe.toml"), "--out", out],
        "simulate": ["simulate", "alanine-dipeptide", "--ns", "0.001", "--out", out],
        "energy": ["energy", "--pdb", str(f / "mol.pdb"), "--in", str(f / "frames.npz"), "--out", str(f / "u.npz")],
        "umbrella": ["umbrella", "alanine-dipeptide", "--out", out],
        "systems": ["systems", "two-particle"],
        "demo": ["demo", "-n", "10", "--out", out],
    }[command]


def test_every_command_has_a_device_option():
    parsers = _parsers()
    assert set(parsers) == set(COMMANDS)
    missing = [name for name, p in parsers.items() if not any("--device" in a.option_strings for a in p._actions)]
    assert not missing, f"commands without --device: {missing}"


def test_every_command_has_a_base_here():
    for command in COMMANDS:
        _parsers()[command].parse_args(_base(command, Path("/nonexistent"))[1:])


def _bad_devices() -> list[str]:
    bad = ["tpu", "cuda:99", "cpu:1"]
    return bad if torch.cuda.is_available() else ["cuda", "cuda:0", *bad]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unusable_device_fails_in_one_line_and_writes_nothing(command, tmp_path, capsys):
    (tmp_path / "sentinel.txt").write_text("keep")
    for device in _bad_devices():
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main([*_base(command, tmp_path), "--device", device])
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert exit_.value.code == 2 and len(err) == 1 and "--device" in err[0], (command, device, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["sentinel.txt"]


def test_cuda_without_cuda_says_so():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("command", sorted(OPENMM_ONLY))
def test_openmm_commands_refuse_cuda_even_where_torch_has_it(command, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SystemExit):
        main([*_base(command, Path("/nonexistent")), "--device", "cuda"])
    assert "OpenMM" in capsys.readouterr().err


def test_device_values():
    assert resolve_device(None) == resolve_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "gpu0", "cpu:1"):
        with pytest.raises(ValueError, match="--device"):
            resolve_device(bad)
    p = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="kind"):
        add_device_argument(p, "bogus")


def test_sample_on_cpu_is_the_default(tmp_path):
    ckpt = ddp_worker.two_particle_checkpoint(tmp_path / "model.safetensors")
    assert main(["sample", str(ckpt), "-n", "20", "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["sample", str(ckpt), "-n", "20", "--device", "cpu", "--out", str(tmp_path / "b.npz")]) == 0
    a, b = load_npz(tmp_path / "a.npz"), load_npz(tmp_path / "b.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sample_on_cuda_matches_the_cpu_energies(tmp_path):
    """On the GPU the samples differ (another generator), but their energies are the torch energy of x."""
    from boltzflow.systems.registry import get_system

    ckpt = ddp_worker.two_particle_checkpoint(tmp_path / "model.safetensors")
    assert main(["sample", str(ckpt), "-n", "64", "--device", "cuda", "--out", str(tmp_path / "g.npz")]) == 0
    g = load_npz(tmp_path / "g.npz")
    u = get_system("two-particle").energy()(torch.as_tensor(g["x"])).numpy()
    np.testing.assert_allclose(g["energy"], u, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g["log_w"], -g["energy"] - g["log_prob"], rtol=0, atol=1e-12)
