"""benchmarks/device.py (smoke size on the CPU, CUDA when present) and the GPU session script's plumbing."""

import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("boltzflow_device_bench", ROOT / "benchmarks" / "device.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _smoke(tmp_path, device: str) -> tuple[str, dict]:
    out, js = tmp_path / "bench.md", tmp_path / "bench.json"
    out.write_text("# Benchmarks\n\n<!-- bench:realnvp -->\nkept\n<!-- /bench:realnvp -->\n")
    assert _bench().main(["--smoke", "--device", device, "--out", str(out), "--json", str(js), "--threads", "1"]) == 0
    return out.read_text(), json.loads(js.read_text())


def _check(text: str, r: dict, device: str) -> None:
    assert text.count("<!-- bench:device -->") == 1 and "<!-- bench:realnvp -->\nkept\n" in text
    assert f"## Device benchmark: {r['environment']['device_name']} ({device})" in text
    assert [(e["dtype"], e["batch"]) for e in r["energy"]] == [
        ("float32", 10), ("float32", 100), ("float64", 10), ("float64", 100)
    ]
    assert all(e["evals_per_s"] > 0 for e in r["energy"])
    assert r["energy"][-1]["chunked"] and not r["energy"][0]["chunked"]  # smoke chunk: 64 frames
    # the device's float64 AMBER energies and forces agree with OpenMM Reference
    assert r["check"]["float64_energy"] < 1e-9 and r["check"]["float64_force"] < 1e-9
    assert r["check"]["float32_energy"] < 1e-4
    assert {o["platform"] for o in r["openmm"]} == {"CUDA", "OpenCL", "CPU", "Reference"}
    assert next(o for o in r["openmm"] if o["platform"] == "Reference")["evals_per_s"] > 0
    for flow in ("realnvp", "ic"):
        assert r[flow]["nll_steps_per_s"] > 0 and r[flow]["nll_skipped_steps"] == 0
        assert all(v > 0 for v in r[flow]["samples_per_s"].values())
    assert r["realnvp"]["penalty_steps_per_s"] > 0 and r["realnvp"]["penalty_skipped_steps"] == 0
    assert "Smoke run (tiny sizes)" in text


def test_smoke_run_on_cpu_writes_its_section_and_keeps_the_others(tmp_path):
    text, r = _smoke(tmp_path, "cpu")
    _check(text, r, "cpu")


def test_section_is_replaced_not_appended(tmp_path):
    bench = _bench()
    path = tmp_path / "b.md"
    bench.write_section(path, "first")
    bench.write_section(path, "second")
    text = path.read_text()
    assert text.count("<!-- bench:device -->") == 1 and "second" in text and "first" not in text
    path.write_text("# Benchmarks\n\n<!-- bench:device -->\nold\n<!-- /bench:device -->\n<!-- bench:z -->\nz\n"
                    "<!-- /bench:z -->\n")
    bench.write_section(path, "new")
    assert path.read_text() == ("# Benchmarks\n\n<!-- bench:device -->\nnew\n<!-- /bench:device -->\n"
                                "<!-- bench:z -->\nz\n<!-- /bench:z -->\n")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_asked_for_without_cuda_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _bench().main(["--smoke", "--device", "cuda", "--out", str(tmp_path / "b.md")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and err.count("\n") == 1
    assert not (tmp_path / "b.md").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_smoke_run_on_cuda(tmp_path):
    text, r = _smoke(tmp_path, "cuda")
    _check(text, r, "cuda")
    assert all(e["peak_gib"] > 0 for e in r["energy"])


def test_session_script_is_valid_bash_and_uses_only_existing_options():
    from boltzflow.cli import build_parser

    path = ROOT / "benchmarks" / "gpu_session.sh"
    subprocess.run(["bash", "-n", str(path)], check=True)
    calls = re.findall(r"bf (reproduce alanine-cartesian [^\n]*)", path.read_text().replace("\\\n", " "))
    assert len(calls) == 2  # the training processes and the scoring run
    reproduce = build_parser()._subparsers._group_actions[0].choices["reproduce"]
    known = {o for a in reproduce._actions for o in a.option_strings}
    for call in calls:
        options = {w for w in shlex.split(call) if w.startswith("--")}
        assert {"--device", "--set", "--out", "--no-progress", "--threads"} <= options
        sets = {w.split("=")[0] for w in shlex.split(call) if "=" in w and not w.startswith("--")}
        assert {"models", "deadline_minutes"} <= sets  # the recipe keys that replaced --models, --deadline-minutes
        assert options <= known, options - known
