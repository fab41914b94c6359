"""The loop: learning, determinism, resume after a kill, no global state, the step context, the metrics log,
divergence as an error, the data fingerprint, config validation."""

import math

import numpy as np
import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.flows import RealNVPConfig
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.training.checkpoint import load_flow, read_checkpoint
from boltzflow.training.config import TrainConfig, apply_overrides, from_dict
from boltzflow.training.energy_fit import mixed_objective
from boltzflow.training.loop import fit, lr_factor, train
from boltzflow.training.losses import nll
from boltzflow.training.reporters import MetricsLog, read_metrics
from boltzflow.training.sources import DatasetSource

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


def _gauss_u(x):
    return 0.5 * (x**2).sum(-1)


def _global_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), torch.get_default_dtype()


def _legacy_global_draw(flow, x):
    """A loss from before the context: it draws from torch's global generator."""
    return nll(flow, x) + 0.01 * flow.sample(8).x.pow(2).mean()


@pytest.mark.parametrize("loss", [mixed_objective(_gauss_u, 1.0, 0.2, kl_batch=16, iw_weight=0.1),
                                  _legacy_global_draw])
def test_fit_leaves_no_global_state_behind_and_ignores_it(tmp_path, loss):
    """Same weights whatever the caller's global RNG state; the global state and default dtype are untouched."""
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-2)
    weights = []
    for caller_seed in (1, 2):
        flow = _flow()
        torch.manual_seed(caller_seed)
        np.random.seed(caller_seed)
        before = _global_state()
        fit(flow, loss, _data(), cfg, checkpoint=tmp_path / f"c{caller_seed}.safetensors", progress=False)
        after = _global_state()
        assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
        weights.append([p.detach().clone() for p in flow.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_mixed_objective_draws_from_the_context_generator():
    """Its reverse-KL and IW terms follow ctx.generator: another generator seed gives another loss value."""
    from boltzflow.training.losses import StepContext

    loss, flow, x = mixed_objective(_gauss_u, 0.0, 1.0, kl_batch=32, iw_weight=1.0), _flow(), _data(32)
    values = []
    for seed in (0, 0, 1):
        torch.manual_seed(99)  # the global generator never changes the value
        ctx = StepContext(0, 0, "t", torch.Generator().manual_seed(seed), {})
        values.append(float(loss(flow, x, ctx).detach()))
        assert set(ctx.metrics) == {"reverse_kl", "iw_nll"}
    assert values[0] == values[1] != values[2]


def test_the_loss_sees_step_epoch_and_stage():
    seen = []

    def loss(flow, batch, ctx):
        seen.append((ctx.step, ctx.epoch, ctx.stage, flow.training))
        ctx.metrics["rows"] = float(len(batch))
        return nll(flow, batch)

    fit(_flow(), loss, _data(200), TrainConfig(epochs=2, batch_size=64, val_fraction=0.0), progress=False,
        desc="warmup")
    train_calls = [s for s in seen if s[3]]
    assert [s[:2] for s in train_calls] == [(i, i // 4) for i in range(8)]  # 200 rows / 64: 4 steps per epoch
    assert {s[2] for s in seen} == {"warmup"}


def test_metrics_log_has_every_step_once_after_a_kill_and_resume(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=64, lr=1e-2)
    ckpt = tmp_path / "run" / "c.safetensors"
    calls = {"n": 0}

    def dying_nll(flow, x):
        calls["n"] += torch.is_grad_enabled()
        if calls["n"] > 2 * 9 + 5:
            raise KeyboardInterrupt
        return nll(flow, x)

    with pytest.raises(KeyboardInterrupt):
        fit(_flow(), dying_nll, _data(), cfg, checkpoint=ckpt, extra={"flow_spec": SPEC}, progress=False)
    logged = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len([r for r in logged if r["event"] == "step"]) == 2 * 9 + 5  # every step, flushed before the kill
    fit(_flow(), nll, _data(), cfg, checkpoint=ckpt, extra={"flow_spec": SPEC}, progress=False)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    steps = [r["step"] for r in records if r["event"] == "step"]
    epochs = [r["epoch"] for r in records if r["event"] == "epoch"]
    assert steps == list(range(4 * 9)) and epochs == [0, 1, 2, 3]
    assert all(r["stage"] == "train" and math.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in records
               if r["event"] == "step")


def test_metrics_log_keeps_other_stages(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for stage in ("a", "b"):
        train(_flow(), nll, DatasetSource(_data(128), 64), TrainConfig(epochs=1), reporters=[MetricsLog(path)],
              stage=stage)
    train(_flow(), nll, DatasetSource(_data(128), 64), TrainConfig(epochs=1), reporters=[MetricsLog(path)],
          stage="a")  # a fresh run of stage a replaces a's lines only
    stages = [r["stage"] for r in read_metrics(path)]
    assert stages.count("a") == stages.count("b") == 3  # two steps and one epoch line each


def test_diverging_training_is_an_error_not_a_result():
    """lr=1e308 used to end with "best validation NLL inf at epoch -1" and exit 0."""
    with pytest.raises(BoltzflowError, match="skipped|finite") as err:
        fit(_flow(), nll, _data(), TrainConfig(epochs=3, batch_size=64, lr=1e308), progress=False)
    assert "\n" not in str(err.value) and "lr=1e+308" in str(err.value)
    with pytest.raises(BoltzflowError, match="all 9 steps of epoch 0 were skipped"):
        fit(_flow(), lambda f, b: nll(f, b) * math.nan, _data(), TrainConfig(epochs=2, batch_size=64),
            progress=False)
    with pytest.raises(BoltzflowError, match="no epoch reached a finite validation loss"):
        fit(_flow(), lambda f, b: nll(f, b) if f.training else nll(f, b) * math.inf, _data(),
            TrainConfig(epochs=2, batch_size=64), progress=False)


def test_resume_refuses_other_data(tmp_path):
    ckpt = tmp_path / "c.safetensors"
    cfg = TrainConfig(epochs=1, batch_size=64)
    fit(_flow(), nll, _data(), cfg, checkpoint=ckpt, extra={"flow_spec": SPEC}, progress=False)
    other = _data()
    other[0, 0] += 1e-3
    with pytest.raises(BoltzflowError, match="other data") as err:
        fit(_flow(), nll, other, TrainConfig(epochs=2, batch_size=64), checkpoint=ckpt, progress=False)
    assert "sha256" in str(err.value)
    fit(_flow(), nll, _data(), TrainConfig(epochs=2, batch_size=64), checkpoint=ckpt, progress=False)  # same data
    assert read_checkpoint(ckpt)["epoch"] == 2


@pytest.mark.parametrize(
    "field, value",
    [("epochs", 0), ("epochs", 2.5), ("batch_size", 0), ("checkpoint_every", 0), ("lr", 0.0), ("lr", -1e-3),
     ("lr", math.inf), ("lr", math.nan), ("grad_clip", -1.0), ("grad_clip", 0.0), ("grad_clip", math.nan),
     ("weight_decay", -0.1), ("weight_decay", math.inf), ("val_fraction", 1.0), ("val_fraction", -0.1),
     ("lr_final_fraction", 0.0), ("lr_final_fraction", 1.5), ("seed", -1), ("seed", True), ("lr", "1e-3")],
)
def test_every_numeric_train_option_is_validated_with_its_name(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_checkpoints_resume_and_load_on_cpu(tmp_path):
    from boltzflow.training.losses import sample_reverse_kl
    from boltzflow.training.sources import FlowSampleSource

    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-2)
    flow = _flow().cuda()
    fit(flow, nll, _data().cuda(), cfg, checkpoint=tmp_path / "d.safetensors", extra={"flow_spec": SPEC},
        progress=False)
    fit(flow, nll, _data().cuda(), TrainConfig(epochs=3, batch_size=64, lr=1e-2), checkpoint=tmp_path / "d.safetensors",
        extra={"flow_spec": SPEC}, progress=False)
    cpu, _ = load_flow(tmp_path / "d.safetensors")
    x = _data(16)
    torch.testing.assert_close(cpu.log_prob(x), flow.log_prob(x.cuda()).cpu())
    source = FlowSampleSource(_gauss_u, 128, steps_per_epoch=3)
    result = train(flow, sample_reverse_kl, source, TrainConfig(epochs=2, lr=1e-3, val_fraction=0.0),
                   checkpoint=tmp_path / "kl.safetensors", extra={"flow_spec": SPEC})
    assert math.isfinite(result.best_val) and read_checkpoint(tmp_path / "kl.safetensors")["epoch"] == 2
