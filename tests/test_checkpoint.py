"""Pickle-free checkpoints: round trips, a malicious pickle that must not run, old-format refusal and conversion,
damaged files, and the shipped model found by name from any folder."""

import json
import pickle
import struct

import numpy as np
import pytest
import torch

from boltzflow.cli import main
from boltzflow.errors import BoltzflowError
from boltzflow.flows import RealNVPConfig
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.io import save_safetensors
from boltzflow.training.checkpoint import (
    VERSION,
    convert_legacy_checkpoint,
    load_flow,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)

SPEC = realnvp_spec(RealNVPConfig(dim=2, n_layers=2, hidden=[8]))


class Payload:
    """Unpickling this writes a marker file: what a crafted checkpoint could do to a user."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.marker!r}).write_text('pwned')",))


def _evil(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"format": "boltzflow-checkpoint-v1", "flow_spec": SPEC, "model": Payload(marker)}, path)
    with open(tmp_path / "raw.pkl", "wb") as f:
        pickle.dump(Payload(marker), f)
    return path, tmp_path / "raw.pkl", marker


def test_the_payload_is_live_when_unpickled(tmp_path):
    """The test's premise: the crafted files really run code when unpickled (so the refusals below mean something)."""
    _, raw, marker = _evil(tmp_path)
    with open(raw, "rb") as f:
        pickle.load(f)  # deliberate, on our own crafted file
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_a_malicious_checkpoint_is_refused_without_running_it(tmp_path, capsys, command):
    evil, raw, marker = _evil(tmp_path)
    out = tmp_path / "out.npz"
    for path in (evil, raw):
        args = [command, str(path), "--out", str(out)] + (["--data", str(tmp_path / "d.npz")] if command == "evaluate"
                                                          else [])
        assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("old pickle checkpoint" in line and "convert" in line for line in err)
    assert not marker.exists() and not out.exists()
    with pytest.raises(BoltzflowError, match="not converted"):  # the converter's restricted unpickler refuses it
        convert_legacy_checkpoint(evil, tmp_path / "new.safetensors")
    assert not marker.exists() and not (tmp_path / "new.safetensors").exists()


def test_round_trip_of_weights_optimizer_rng_and_fields(tmp_path):
    flow = build_flow(SPEC)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    flow.log_prob(torch.randn(16, 2)).mean().backward()
    opt.step()
    gen = torch.Generator().manual_seed(5)
    payload = {"flow_spec": SPEC, "history": [{"epoch": 0, "val_loss": float("inf")}], "note": "hi",
               "model": flow.state_dict(), "best_model": None, "optimizer": opt.state_dict(),
               "rng": {"g": gen.get_state()}, "source": {"x": torch.arange(6.0).reshape(3, 2)}}
    save_checkpoint(tmp_path / "c.pt", payload)
    ck = read_checkpoint(tmp_path / "c.pt")
    assert ck["version"] == VERSION and ck["note"] == "hi" and ck["history"][0]["val_loss"] == float("inf")
    assert ck["best_model"] is None and torch.equal(ck["source"]["x"], payload["source"]["x"])
    assert all(torch.equal(ck["model"][k], v) for k, v in flow.state_dict().items())
    other = torch.optim.Adam(build_flow(SPEC).parameters(), lr=1.0)
    other.load_state_dict(ck["optimizer"])
    for a, b in zip(opt.state_dict()["state"].values(), other.state_dict()["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    g2 = torch.Generator()
    g2.set_state(ck["rng"]["g"])
    assert torch.equal(torch.randn(4, generator=g2), torch.randn(4, generator=gen))
    flow2, _ = load_flow(tmp_path / "c.pt")
    x = torch.randn(5, 2)
    torch.testing.assert_close(flow2.log_prob(x), flow.log_prob(x), rtol=0, atol=0)


def test_damaged_and_foreign_files_give_one_line(tmp_path):
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, {"flow_spec": SPEC, "model": build_flow(SPEC).state_dict()})
    data = good.read_bytes()
    cases = {
        "truncated.safetensors": (data[: len(data) // 2], "cannot read"),
        "empty.safetensors": (b"", "cannot read"),
        "garbage.safetensors": (b"hello world, not a checkpoint", "cannot read"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(BoltzflowError, match=message) as err:
            read_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)
    save_safetensors(tmp_path / "other.safetensors", {"w": torch.zeros(2)}, {"format": "something-else"})
    with pytest.raises(BoltzflowError, match="not a boltzflow checkpoint"):
        read_checkpoint(tmp_path / "other.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(BoltzflowError, match="without a boltzflow header"):
        read_checkpoint(tmp_path / "plain.safetensors")
    newer = _with_version(data, VERSION + 1)
    (tmp_path / "newer.safetensors").write_bytes(newer)
    with pytest.raises(BoltzflowError, match="version"):
        read_checkpoint(tmp_path / "newer.safetensors")
    with pytest.raises(BoltzflowError, match="is a directory"):
        read_checkpoint(tmp_path)


def _with_version(data: bytes, version: int) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    doc = json.loads(header["__metadata__"]["boltzflow"])
    doc["version"] = version
    header["__metadata__"]["boltzflow"] = json.dumps(doc)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_an_old_checkpoint_is_refused_and_converts_with_the_documented_command(tmp_path):
    """A format-v1 file as the old loop wrote it (with NumPy's RNG state): refused, then converted knowingly."""
    flow = build_flow(SPEC)
    old = {"format": "boltzflow-checkpoint-v1", "flow_spec": SPEC, "model": flow.state_dict(),
           "best_model": flow.state_dict(), "train_config": {"epochs": 1}, "epoch": 1, "history": [],
           "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(BoltzflowError, match="old pickle checkpoint.*python -m boltzflow.training.checkpoint"):
        read_checkpoint(tmp_path / "old.pt")
    from boltzflow.training.checkpoint import main as convert

    assert convert([str(tmp_path / "old.pt"), str(tmp_path / "new.safetensors")]) == 0
    new, ck = load_flow(tmp_path / "new.safetensors")
    x = torch.randn(7, 2)
    torch.testing.assert_close(new.log_prob(x), flow.log_prob(x), rtol=0, atol=0)
    assert ck["optimizer"] is None and "old.pt" in ck["converted_from"]  # weights only: not resumable


def test_the_shipped_model_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = resolve_checkpoint("alanine-dipeptide-bg")
    assert path.suffix == ".safetensors" and path.is_file()
    flow, ck = load_flow("alanine-dipeptide-bg")
    assert ck["flow_spec"]["kind"] == "ic_spline" and ck["system"]["name"] == "alanine-dipeptide"
    assert all(v.dtype in (torch.float32, torch.bool, torch.int64) for v in ck["model"].values())
    with pytest.raises(BoltzflowError, match="shipped model: alanine-dipeptide-bg"):
        resolve_checkpoint("alanine-dipeptide-bgx")


def test_every_header_length_reads_back(tmp_path):
    """A safetensors header length whose low byte is 0x80 (the pickle protocol byte) is still a checkpoint: the
    CI once refused a freshly written checkpoint as "an old pickle" because of that byte."""
    flow = build_flow(SPEC)
    seen = set()
    for pad in range(260):
        path = tmp_path / "c.safetensors"
        save_checkpoint(path, {"model": flow.state_dict(), "note": "x" * pad})
        seen.add(path.read_bytes()[0])
        assert read_checkpoint(path)["note"] == "x" * pad
    assert 0x80 in seen  # the case that failed is among those written
