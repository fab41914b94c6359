"""State dicts written by the three old coupling classes load into the one Coupling and give the same numbers.

Fixtures from ``tests/data/make_legacy_fixtures.py``, run with the flows of 5cfc260 (before the refactor).
"""

import json
from pathlib import Path

import pytest
import torch

from boltzflow.flows.spec import build_flow

DATA = Path(__file__).parent / "data"


def _legacy() -> dict:
    return torch.load(DATA / "legacy_flows.pt", weights_only=True)["flows"]


@pytest.mark.parametrize("name", ["realnvp_masked", "realnvp_split", "torus", "torus_1d_no_rotation", "ic_spline"])
def test_old_state_dicts_load_and_give_the_same_log_prob_and_samples(name):
    case = _legacy()[name]
    flow = build_flow(json.loads(case["spec"])).double()
    flow.load_state_dict(case["state"])  # strict: every old key is used, every new one filled
    with torch.no_grad():
        # rtol 1e-11: the fixtures were written on another CPU, and the spline's float64 kernels round differently
        # across CPUs (1.5e-10 on a log-density of 60 on an AMD EPYC); a wrongly mapped weight moves it by O(1).
        torch.testing.assert_close(flow.log_prob(case["x"]), case["log_prob"], rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(flow.transform.forward(case["z"])[0], case["forward"], rtol=0, atol=1e-12)


def test_old_state_dict_keys_are_renamed_and_index_buffers_dropped():
    case = _legacy()["realnvp_masked"]
    old_keys = set(case["state"])
    first = "transform.transforms.0.transforms.0."  # RealNVP stack, then the fixed de-standardisation
    assert {first + "mask", first + "s_net.0.weight"} <= old_keys
    flow = build_flow(json.loads(case["spec"])).double()
    new_keys = set(flow.state_dict())
    assert first + "conditioner.s_net.0.weight" in new_keys
    assert not any(k.endswith((".mask", ".idx_a", ".idx_b")) for k in new_keys)


def test_a_legacy_partition_that_differs_is_refused():
    case = _legacy()["ic_spline"]
    state = dict(case["state"])
    key = next(k for k in state if k.endswith(".idx_b"))
    state[key] = state[key] + 1
    flow = build_flow(json.loads(case["spec"])).double()
    with pytest.raises(RuntimeError, match="stored partition does not match"):
        flow.load_state_dict(state)


def _shipped_checkpoint() -> Path:
    data = Path(__file__).parents[1] / "src" / "boltzflow" / "data"
    found = sorted(p for p in data.glob("alanine-dipeptide-bg.*") if p.suffix != ".json")
    if not found:
        pytest.skip("no shipped alanine-dipeptide-bg model in src/boltzflow/data")
    return found[0]


def test_shipped_bg_gives_the_log_prob_of_the_old_classes():
    from boltzflow.samplers.dataset import load_alanine_dataset
    from boltzflow.training.checkpoint import load_flow

    ref = json.loads((DATA / "shipped_bg_log_prob.json").read_text())
    flow, _ = load_flow(_shipped_checkpoint())
    xyz = torch.as_tensor(load_alanine_dataset().xyz[ref["frames"]], dtype=torch.float64)
    with torch.no_grad():
        log_prob = flow.double().log_prob(xyz.flatten(-2))
    torch.testing.assert_close(log_prob, torch.tensor(ref["log_prob"]), rtol=0, atol=1e-10)
