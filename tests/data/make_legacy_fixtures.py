"""Write the fixtures of ``tests/test_legacy_checkpoints.py`` with the code *before* the coupling refactor.

Run against main at 5cfc260 (the last commit with AffineCoupling / CircularSplineCoupling /
MixedSplineCoupling), from the repository root::

    mkdir -p /tmp/base && git archive 5cfc260 src | tar -x -C /tmp/base
    PYTHONPATH=/tmp/base/src .venv/bin/python tests/data/make_legacy_fixtures.py

It writes

* ``tests/data/legacy_flows.pt``: for small RealNVP (both layouts), torus and IC spline flows, the spec, the
  state dict as the old classes wrote it (random weights), a fixed input and the old ``log_prob`` of it and
  ``forward`` of a fixed latent, all float64;
* ``tests/data/shipped_bg_log_prob.json``: ``log_prob`` (float64) of the shipped alanine-dipeptide BG on a few
  frames of the shipped MD data.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import torch

from boltzflow.flows.ic_flow import ICStats, ic_spline_spec
from boltzflow.flows.realnvp import RealNVPConfig
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.flows.zmatrix import build_zmatrix
from boltzflow.samplers.dataset import load_alanine_dataset
from boltzflow.training.checkpoint import load_flow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FRAMES = [0, 4321, 15000, 29999, 44444, 59999]
BRANCHED = [(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)]


def _specs() -> dict[str, dict]:
    zm = build_zmatrix(BRANCHED, 6)
    loc = torch.tensor([0.15] * 5 + [1.9] * 4 + [2.5, -1.0, 0.3])
    scale = torch.tensor([0.01] * 5 + [0.1] * 4 + [1.0, 0.3, 1.0])  # one narrow torsion
    return {
        "realnvp_masked": realnvp_spec(RealNVPConfig(dim=5, n_layers=3, hidden=[8, 8]), loc=[1.0] * 5, scale=[2.0] * 5),
        "realnvp_split": realnvp_spec(RealNVPConfig(dim=4, n_layers=2, hidden=[6], masked_input=False)),
        "torus": {"kind": "circular_spline", "config": {"dim": 3, "n_layers": 2, "bins": 4, "hidden": [8]}},
        "torus_1d_no_rotation": {
            "kind": "circular_spline",
            "config": {"dim": 1, "n_layers": 2, "bins": 3, "hidden": [4], "rotate": False},
        },
        "ic_spline": ic_spline_spec(zm, ICStats(loc, scale), n_layers=2, bins=4, hidden=(8,)),
    }


def _inputs(flow, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    z = flow.base.sample(5, gen)
    x = flow.sample(5, gen).x.detach()
    return x, z


def legacy_flows() -> dict:
    torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(7)
    out = {}
    for name, spec in _specs().items():
        flow = build_flow(spec).double()
        with torch.no_grad():
            for p in flow.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
        x, z = _inputs(flow, gen)
        with torch.no_grad():
            out[name] = {
                "spec": json.dumps(spec),
                "state": dict(flow.state_dict()),
                "x": x,
                "log_prob": flow.log_prob(x),
                "z": z,
                "forward": flow.transform.forward(z)[0],
            }
    return out


def shipped_bg() -> dict:
    flow, _ = load_flow(ROOT / "src" / "boltzflow" / "data" / "alanine-dipeptide-bg.pt")
    flow = flow.double()
    xyz = torch.as_tensor(load_alanine_dataset().xyz[FRAMES], dtype=torch.float64)
    with torch.no_grad():
        log_prob = flow.log_prob(xyz.flatten(-2))
    assert all(math.isfinite(v) for v in log_prob.tolist())
    return {"frames": FRAMES, "log_prob": [float(v) for v in log_prob]}


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    note = f"written by tests/data/make_legacy_fixtures.py with the flows of 5cfc260 (checkout {commit.stdout.strip()})"
    torch.save({"note": note, "flows": legacy_flows()}, HERE / "legacy_flows.pt")
    bg = {"note": note, "dtype": "float64", **shipped_bg()}
    (HERE / "shipped_bg_log_prob.json").write_text(json.dumps(bg, indent=1) + "\n")
    np.set_printoptions(precision=17)
    print(bg)


if __name__ == "__main__":
    main()
