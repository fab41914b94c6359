"""Batch sources: dataset passes and splits, data-free training on flow samples against closed forms, the replay
buffer's resampling statistics, capacity and state, and bit-identical resume of a data-free run."""

import math

import pytest
import torch
from torch import nn

from boltzflow.errors import BoltzflowError
from boltzflow.flows.base import StandardNormal
from boltzflow.flows.core import Transform
from boltzflow.flows.flow import Flow
from boltzflow.training.config import TrainConfig
from boltzflow.training.loop import train
from boltzflow.training.losses import sample_reverse_kl, weighted_nll
from boltzflow.training.replay import ReplayBuffer
from boltzflow.training.sources import DatasetSource, FlowSampleSource, Generators

TARGET_M = torch.tensor([1.0, -0.5], dtype=torch.float64)
TARGET_S = torch.tensor([0.5, 1.0], dtype=torch.float64)


class LearnableAffine(Transform):
    """x = loc + exp(log_scale) z with trainable loc and log_scale: q = N(loc, exp(2 log_scale))."""

    def __init__(self, loc, scale) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.as_tensor(loc, dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.log(torch.as_tensor(scale, dtype=torch.float64)))

    def forward(self, z):
        return self.loc + z * torch.exp(self.log_scale), self.log_scale.sum().expand(z.shape[:-1])

    def inverse(self, x):
        return (x - self.loc) * torch.exp(-self.log_scale), (-self.log_scale.sum()).expand(x.shape[:-1])


def gaussian_flow(loc=(0.0, 0.0), scale=(2.0, 2.0)) -> Flow:
    return Flow(StandardNormal(2), LearnableAffine(loc, scale))


def target_energy(x):
    """u = Σ (x - m)² / (2 s²): the target N(m, s²); log Z = Σ log(√(2π) s)."""
    return (((x - TARGET_M) / TARGET_S) ** 2).sum(-1) / 2


def gens(seed=0):
    return Generators(torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed))


def test_dataset_epoch_is_one_pass_over_the_training_split():
    x = torch.arange(50.0).reshape(25, 2)
    src = DatasetSource(x, batch_size=4, val_fraction=0.2)
    src.start(gens())
    assert len(src.train) == 20 and len(src.val) == 5
    rows = torch.cat(list(src.batches(None, gens(1))))
    assert sorted(rows[:, 0].tolist()) == sorted(src.train[:, 0].tolist())  # every training row exactly once
    val = torch.cat(src.validation_batches())
    assert set(val[:, 0].tolist()).isdisjoint(rows[:, 0].tolist())
    assert DatasetSource(x, 4).validation_batches() is None


def test_dataset_rejects_bad_data_and_fingerprints_the_values():
    x = torch.randn(10, 2)
    with pytest.raises(BoltzflowError, match="NaN"):
        DatasetSource(torch.tensor([[0.0, math.nan]]), 2)
    with pytest.raises(ValueError, match="batch_size"):
        DatasetSource(x, 0)
    with pytest.raises(ValueError, match="val_fraction"):
        DatasetSource(x, 2, val_fraction=1.0)
    a, b = DatasetSource(x, 2).fingerprint(), DatasetSource(x.clone(), 5).fingerprint()
    assert a == b and len(a["sha256"]) == 64
    y = x.clone()
    y[3, 1] += 1e-6
    assert DatasetSource(y, 2).fingerprint()["sha256"] != a["sha256"]


def test_reparameterised_flow_samples_carry_gradients_and_detached_ones_do_not():
    flow = gaussian_flow()
    rep = next(FlowSampleSource(target_energy, 8).batches(flow, gens()))
    assert rep.x.requires_grad and rep.u.requires_grad and rep.log_q.requires_grad and not rep.log_w.requires_grad
    sample_reverse_kl(flow, rep).backward()
    assert flow.transform.loc.grad is not None and torch.isfinite(flow.transform.loc.grad).all()
    det = next(FlowSampleSource(target_energy, 8, reparameterized=False).batches(flow, gens()))
    assert not (det.x.requires_grad or det.u.requires_grad or det.log_q.requires_grad)
    torch.testing.assert_close(det.log_w, -target_energy(det.x) - det.log_q)


@pytest.mark.parametrize("reparameterized, loss", [(True, sample_reverse_kl), (False, weighted_nll)])
def test_data_free_training_finds_the_gaussian_target(reparameterized, loss):
    """Reverse KL (reparameterised) and IW-NLL (detached) both have the target itself as optimum in this family."""
    flow = gaussian_flow()
    source = FlowSampleSource(target_energy, batch_size=256, steps_per_epoch=25, reparameterized=reparameterized)
    cfg = TrainConfig(epochs=12, lr=0.05, lr_schedule="cosine", val_fraction=0.0)
    result = train(flow, loss, source, cfg)
    torch.testing.assert_close(flow.transform.loc.detach(), TARGET_M, atol=0.05, rtol=0)
    torch.testing.assert_close(flow.transform.log_scale.exp().detach(), TARGET_S, atol=0.05, rtol=0)
    assert result.best_epoch == 11  # no validation data: the last weights are kept
    if reparameterized:  # at the optimum u + log q = -log Z for every sample
        assert result.history[-1]["train_loss"] == pytest.approx(-math.log(2 * math.pi * 0.5 * 1.0), abs=0.02)


def test_replay_buffer_resamples_in_proportion_to_the_weights():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0], dtype=torch.float64)
    buf = ReplayBuffer(batch_size=1000, steps_per_epoch=20)
    buf.add(torch.arange(5.0).unsqueeze(-1), torch.log(p) + 3.0)  # unnormalised log weights
    batches = list(buf.batches(None, gens()))
    x = torch.cat([b.x for b in batches])[:, 0].long()
    freq = torch.bincount(x, minlength=5).double() / len(x)
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)  # 4.5 sd of a frequency over 20,000 draws is ~0.015
    assert freq[4] == 0 and all((b.log_w == 0).all() for b in batches)


def test_replay_buffer_weighted_minibatches_visit_every_row_once_per_pass():
    buf = ReplayBuffer(batch_size=4, resample=False)
    x, log_w = torch.arange(10.0).unsqueeze(-1), torch.linspace(-1, 1, 10)
    buf.add(x, log_w)
    batches = list(buf.batches(None, gens()))
    assert [len(b.x) for b in batches] == [4, 4, 2]
    rows = torch.cat([b.x for b in batches])[:, 0].long()
    assert sorted(rows.tolist()) == list(range(10))
    torch.testing.assert_close(torch.cat([b.log_w for b in batches]), log_w[rows])


def test_replay_buffer_capacity_replace_and_state():
    buf = ReplayBuffer(batch_size=2, capacity=5)
    buf.add(torch.zeros(3, 2), torch.zeros(3), u=torch.ones(3))
    buf.add(torch.ones(4, 2), torch.ones(4), u=torch.ones(4))
    assert len(buf) == 5 and buf.data["x"][:, 0].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]  # the oldest two dropped
    with pytest.raises(ValueError, match="columns"):
        buf.add(torch.ones(1, 2), torch.ones(1))  # u was given before
    state = buf.state_dict()
    other = ReplayBuffer(batch_size=2, capacity=5)
    other.load_state_dict(state)
    assert all(torch.equal(other.data[k], buf.data[k]) for k in state)
    buf.replace(torch.full((2, 2), 7.0), torch.zeros(2))
    assert len(buf) == 2 and set(buf.data) == {"x", "log_w"}
    with pytest.raises(BoltzflowError, match="empty"):
        next(ReplayBuffer(batch_size=2).batches(None, gens()))
    with pytest.raises(ValueError, match="refresh"):
        ReplayBuffer(batch_size=2, refresh_n=5)


def test_replay_training_with_refresh_resumes_bit_identically(tmp_path):
    """Data-free replay training: kill in epoch 3, resume, and land on the uninterrupted run's weights and buffer."""
    cfg = TrainConfig(epochs=4, lr=0.05, lr_schedule="constant", val_fraction=0.0)

    def source():
        return ReplayBuffer(batch_size=64, steps_per_epoch=5, capacity=512, refresh_energy=target_energy,
                            refresh_n=128)

    ref_flow, ref_src = gaussian_flow(), source()
    train(ref_flow, weighted_nll, ref_src, cfg, checkpoint=tmp_path / "ref.safetensors")
    calls = {"n": 0}

    def dying(flow, batch):
        calls["n"] += 1
        if calls["n"] > 2 * 5 + 2:
            raise KeyboardInterrupt
        return weighted_nll(flow, batch)

    path = tmp_path / "killed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train(gaussian_flow(), dying, source(), cfg, checkpoint=path)
    flow, src = gaussian_flow(loc=(3.0, 3.0)), source()
    train(flow, weighted_nll, src, cfg, checkpoint=path)
    assert len(src) == len(ref_src) == 512
    assert all(torch.equal(src.data[k], ref_src.data[k]) for k in ("x", "log_w", "log_q", "u"))
    for a, b in zip(flow.parameters(), ref_flow.parameters(), strict=True):
        assert torch.equal(a, b)
    # the buffer's samples improve: the last refresh (flow near the target) has a higher ESS than the first
    first, last = ref_src.data["log_w"][:128], ref_src.data["log_w"][-128:]
    ess = [float(torch.softmax(w, 0).pow(2).sum().reciprocal()) for w in (first, last)]
    assert ess[1] > ess[0]
