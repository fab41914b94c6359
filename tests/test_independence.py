"""Independence Metropolis–Hastings: invariance on Gaussian and discrete targets, acceptance, bad input."""

import math

import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.samplers.independence import Proposals, independence_mh


def gaussian_sampler(std: float):
    """A sampler (m, generator) -> (x of shape (m, 1), log q) for N(0, std^2)."""

    def sample(m: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = std * torch.randn(m, 1, generator=generator, dtype=torch.float64)
        return x, -0.5 * (x[:, 0] / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))

    return sample


def target_log_prob(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised N(1, 0.5^2) on x of shape (m, 1)."""
    return -0.5 * ((x[:, 0] - 1.0) / 0.5) ** 2


def test_gaussian_moments_from_predrawn_batch():
    g = torch.Generator().manual_seed(3)
    x, log_q = gaussian_sampler(1.5)(40001, g)
    result = independence_mh(None, Proposals(x, log_q, target_log_prob(x)), None, g)
    assert result.samples.shape == (40001, 1) and result.indices.shape == (40001,)
    torch.testing.assert_close(result.samples, x[result.indices])
    chain = result.samples[:, 0]
    assert abs(chain.mean().item() - 1.0) < 0.03
    assert abs(chain.var().item() - 0.25) < 0.03
    assert 0.2 < result.acceptance_rate < 0.9 and result.n_dropped == 0
    # the proposals themselves are far from the target: the test can fail for an identity "sampler"
    assert abs(x[:, 0].mean().item() - 1.0) > 0.5


def test_acceptance_is_one_when_proposal_is_target():
    g = torch.Generator().manual_seed(4)
    x, log_q = gaussian_sampler(1.0)(1000, g)
    result = independence_mh(lambda v: -0.5 * v[:, 0] ** 2 + 7.0, Proposals(x, log_q), None, g)
    assert result.acceptance_rate == 1.0
    assert torch.equal(result.indices, torch.arange(1000))


def test_discrete_target_with_chunked_sampler():
    """Three states, proposal q, target p: the chain's occupation frequencies converge to p."""
    q = torch.tensor([0.5, 0.3, 0.2])
    p = torch.tensor([0.1, 0.3, 0.6])

    def sampler(m: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.multinomial(q, m, replacement=True, generator=generator)
        return k[:, None].to(torch.float64), torch.log(q[k])

    log_target = lambda v: torch.log(3 * p[v[:, 0].long()])  # noqa: E731  (unnormalised on purpose)
    g = torch.Generator().manual_seed(5)
    result = independence_mh(log_target, sampler, 60000, g, chunk_size=7001)
    assert result.samples.shape == (60001, 1) and result.indices is None
    freq = torch.bincount(result.samples[:, 0].long(), minlength=3) / result.samples.shape[0]
    torch.testing.assert_close(freq, p, atol=0.01, rtol=0)
    # consecutive chunks join up: the log weight of each state is that of its sample
    torch.testing.assert_close(
        result.log_w, log_target(result.samples) - torch.log(q[result.samples[:, 0].long()])
    )


def test_non_finite_proposals_are_never_accepted():
    x = torch.arange(6, dtype=torch.float64)[:, None]
    log_target = torch.tensor([math.nan, 0.0, math.inf, -1.0, math.nan, 0.5])
    g = torch.Generator().manual_seed(6)
    result = independence_mh(None, Proposals(x, torch.zeros(6), log_target), None, g)
    assert result.n_dropped == 3
    assert result.indices[0] == 0 and result.log_w[0] == -math.inf  # starts on the dropped proposal ...
    assert result.indices[1] == 1  # ... and leaves it at the first finite one
    assert not bool(torch.isin(result.indices[1:], torch.tensor([0, 2, 4])).any())
    with pytest.raises(BoltzflowError, match="finite log weight"):
        independence_mh(None, Proposals(x, torch.zeros(6), torch.full((6,), math.nan)), None, g)


def test_bad_input_raises():
    g = torch.Generator().manual_seed(7)
    x, log_q = gaussian_sampler(1.0)(10, g)
    with pytest.raises(ValueError, match="allow 1 to 9 steps"):
        independence_mh(target_log_prob, Proposals(x, log_q), 10, g)
    with pytest.raises(ValueError, match="give log_target"):
        independence_mh(None, Proposals(x, log_q), None, g)
    with pytest.raises(ValueError, match="leading size"):
        independence_mh(None, Proposals(x, log_q, log_q[:5]), None, g)
    with pytest.raises(ValueError, match="n_steps"):
        independence_mh(target_log_prob, gaussian_sampler(1.0), None, g)
