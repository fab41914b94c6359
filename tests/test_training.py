"""The fit loop: learning, determinism, resume after a kill, non-finite guard, configs."""

import math

import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.flows import RealNVPConfig
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.training.checkpoint import load_flow, read_checkpoint
from boltzflow.training.config import TrainConfig, apply_overrides, from_dict
from boltzflow.training.loop import fit, lr_factor
from boltzflow.training.losses import nll

SPEC = realnvp_spec(RealNVPConfig(dim=2, n_layers=4, hidden=[16]))


def _data(n=600):
    gen = torch.Generator().manual_seed(3)
    return torch.randn(n, 2, generator=gen) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -1.0])


def _flow(seed=0):
    torch.manual_seed(seed)
    return build_flow(SPEC)


def test_nll_training_reaches_the_gaussian_entropy():
    """On N(m, diag(0.5², 2²)) the best NLL is the entropy 1 + log(2π) + log(0.5·2)."""
    flow = _flow()
    cfg = TrainConfig(epochs=60, batch_size=100, lr=1e-2, val_fraction=0.2)
    result = fit(flow, nll, _data(2000), cfg, progress=False)
    entropy = 1 + math.log(2 * math.pi) + math.log(0.5 * 2.0)
    assert abs(result.best_val - entropy) < 0.08
    assert result.skipped_steps == 0
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_same_weights():
    cfg = TrainConfig(epochs=3, batch_size=64, lr=1e-2)
    a, b = _flow(), _flow()
    fit(a, nll, _data(), cfg, progress=False)
    fit(b, nll, _data(), cfg, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=64, lr=1e-2)
    ref = _flow()
    fit(ref, nll, _data(), cfg, checkpoint=tmp_path / "ref.pt", extra={"flow_spec": SPEC}, progress=False)

    calls = {"n": 0}

    def dying_nll(flow, x):
        calls["n"] += torch.is_grad_enabled()  # count training batches only
        if calls["n"] > 2 * 9 + 3:  # 540 training points / 64 = 9 batches per epoch: dies during epoch 3
            raise KeyboardInterrupt
        return nll(flow, x)

    ckpt = tmp_path / "killed.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(_flow(), dying_nll, _data(), cfg, checkpoint=ckpt, extra={"flow_spec": SPEC}, progress=False)
    assert read_checkpoint(ckpt)["epoch"] == 2
    resumed = _flow(seed=123)  # different init: everything must come from the checkpoint
    result = fit(resumed, nll, _data(), cfg, checkpoint=ckpt, extra={"flow_spec": SPEC}, progress=False)
    assert len(result.history) == 4  # the two epochs before the kill are kept, and timed
    assert result.train_seconds == pytest.approx(sum(h["seconds"] for h in result.history))
    assert result.train_seconds > sum(h["seconds"] for h in result.history[2:])
    for pa, pb in zip(ref.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(pa, pb)
    loaded, _ = load_flow(ckpt)
    for pa, pb in zip(ref.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_resume_refuses_other_settings(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(_flow(), nll, _data(), TrainConfig(epochs=1, batch_size=64), checkpoint=ckpt, extra={"flow_spec": SPEC},
        progress=False)
    with pytest.raises(BoltzflowError, match="different training settings"):
        fit(_flow(), nll, _data(), TrainConfig(epochs=2, batch_size=32), checkpoint=ckpt, progress=False)


def test_resume_refuses_another_architecture(tmp_path):
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=64)
    fit(_flow(), nll, _data(), cfg, checkpoint=ckpt, extra={"flow_spec": SPEC}, progress=False)
    other = realnvp_spec(RealNVPConfig(dim=2, n_layers=4, hidden=[16], activation="relu"))
    with pytest.raises(BoltzflowError, match="different flow architecture"):
        fit(build_flow(other), nll, _data(), cfg, checkpoint=ckpt, extra={"flow_spec": other}, progress=False)


def test_non_finite_steps_are_skipped_and_counted():
    calls = {"n": 0}

    def sometimes_nan(flow, x):
        calls["n"] += 1
        loss = nll(flow, x)
        return loss * math.nan if calls["n"] % 3 == 0 else loss

    flow = _flow()
    result = fit(flow, sometimes_nan, _data(), TrainConfig(epochs=2, batch_size=64, val_fraction=0.0),
                 progress=False)
    assert result.skipped_steps > 0
    assert all(torch.isfinite(p).all() for p in flow.parameters())


def test_nan_data_rejected():
    x = _data()
    x[5, 1] = math.nan
    with pytest.raises(BoltzflowError, match="NaN"):
        fit(_flow(), nll, x, TrainConfig(epochs=1), progress=False)


def test_cosine_schedule_endpoints():
    cfg = TrainConfig(epochs=11, lr_final_fraction=0.1)
    assert lr_factor(cfg, 0) == pytest.approx(1.0)
    assert lr_factor(cfg, 10) == pytest.approx(0.1)
    assert lr_factor(TrainConfig(lr_schedule="constant"), 7) == 1.0


def test_config_overrides_are_type_checked():
    config = {"train": {"epochs": 10, "lr": 1e-3, "grad_clip": None}, "flow": {"config": {"hidden": [8]}}}
    new = apply_overrides(config, ["train.epochs=3", "train.lr=1", "flow.config.hidden=[4,4]", "train.grad_clip=5.0"])
    assert new["train"] == {"epochs": 3, "lr": 1, "grad_clip": 5.0} and new["flow"]["config"]["hidden"] == [4, 4]
    assert config["train"]["epochs"] == 10  # original untouched
    with pytest.raises(ValueError, match="expected int"):
        apply_overrides(config, ["train.epochs=abc"])
    with pytest.raises(ValueError, match="unknown key"):
        apply_overrides(config, ["train.epoch=3"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(config, ["train.epochs"])
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        from_dict(TrainConfig, {"epochs": 1, "learning_rate": 0.1})
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
