"""Sharded samples: file names, sizes, and the exact merge of their importance weights by logsumexp.

``boltzflow sample --shard K/N`` (or one process per rank under torchrun) writes ``shard-KKKK-of-NNNN.npz``
files; ``boltzflow merge DIR`` combines them. Each shard is summarised on its own by sums in log space
(:func:`weight_stats`: ``log Σ w``, ``log Σ w²``; :func:`moment_stats`: the self-normalised mean of an observable
and the second moments the delta-method error needs), and the summaries merge by ``logsumexp`` over shards, so
the ESS, log Z and reweighted means of the merged set equal those of one array holding every sample (to float
rounding), without ever holding all log weights in one place. Non-finite log weights count as weight zero, as
in :mod:`boltzflow.eval.weights`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.eval.weights import ReweightedEstimate

SHARD_FILE = re.compile(r"^shard-(\d{4,})-of-(\d{4,})\.npz$")


def shard_name(k: int, n: int) -> str:
    """File name of shard ``k`` of ``n``: ``shard-KKKK-of-NNNN.npz``."""
    return f"shard-{k:04d}-of-{n:04d}.npz"


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)`` with ``0 <= K < N``.

    Raises:
        ValueError: anything else (the message names ``--shard``).
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if m is None or not int(m[1]) < int(m[2]):
        raise ValueError(f"--shard must be K/N with 0 <= K < N (e.g. 0/4), got {text!r}")
    return int(m[1]), int(m[2])


def shard_sizes(n: int, shards: int) -> list[int]:
    """Samples per shard when ``n`` are split over ``shards`` (the first ``n % shards`` get one more)."""
    return [n // shards + (k < n % shards) for k in range(shards)]


class WeightStats(NamedTuple):
    """Log-space sums of one set of importance weights.

    Attributes:
        n: samples (non-finite log weights included).
        n_dropped: samples with a non-finite log weight.
        log_sum_w: ``log Σ w`` (-inf when every weight is dropped).
        log_sum_w2: ``log Σ w²``.
    """

    n: int
    n_dropped: int
    log_sum_w: float
    log_sum_w2: float

    @property
    def ess(self) -> float:
        """Kish ESS ``(Σw)² / Σw²``, a count."""
        return math.exp(2 * self.log_sum_w - self.log_sum_w2)

    @property
    def ess_fraction(self) -> float:
        """ESS / n."""
        return self.ess / self.n

    @property
    def log_z(self) -> float:
        """``log mean w`` (relative to q's normalisation, as :func:`~boltzflow.eval.weights.log_partition_estimate`)."""
        return self.log_sum_w - math.log(self.n)

    @property
    def log_z_stderr(self) -> float:
        """Delta-method standard error of :attr:`log_z`, ``sqrt(1/ESS - 1/n)``."""
        return math.sqrt(max(1.0 / self.ess - 1.0 / self.n, 0.0))


def _log_sums(log_w: Tensor) -> tuple[Tensor, int]:
    lw = torch.where(torch.isfinite(log_w), log_w, log_w.new_tensor(-math.inf))
    return lw, int((~torch.isfinite(log_w)).sum())


def weight_stats(log_w: Tensor) -> WeightStats:
    """The log-space sums of one shard's log weights, shape (n,) (a shard may have every weight dropped)."""
    if log_w.ndim != 1 or len(log_w) == 0:
        raise ValueError(f"log_w must be a non-empty 1-D tensor, got shape {tuple(log_w.shape)}")
    lw, dropped = _log_sums(log_w.double())
    return WeightStats(len(lw), dropped, float(torch.logsumexp(lw, 0)), float(torch.logsumexp(2 * lw, 0)))


def _lse(values: Sequence[float]) -> float:
    return float(torch.logsumexp(torch.tensor(values, dtype=torch.float64), 0))


def merge_weight_stats(stats: Sequence[WeightStats]) -> WeightStats:
    """The sums of the union of the shards: counts add, log sums combine by logsumexp.

    Raises:
        BoltzflowError: every weight of every shard is dropped.
    """
    merged = WeightStats(sum(s.n for s in stats), sum(s.n_dropped for s in stats),
                         _lse([s.log_sum_w for s in stats]), _lse([s.log_sum_w2 for s in stats]))
    if merged.n_dropped == merged.n:
        raise BoltzflowError(f"all {merged.n} log weights are non-finite; check the energies and log q")
    return merged


class MomentStats(NamedTuple):
    """One shard's self-normalised average of an observable f and the moments of its error.

    With ``w̄ = w / Σw`` over the shard and ``m = Σ w̄ f``: ``sum_w2 = Σ w̄²``, ``centred_1 = Σ w̄² (f - m)``,
    ``centred_2 = Σ w̄² (f - m)²``; shapes (*value_shape) except the scalars ``log_sum_w`` and ``sum_w2``.
    """

    log_sum_w: float
    mean: Tensor
    sum_w2: float
    centred_1: Tensor
    centred_2: Tensor
    n_dropped: int


def moment_stats(values: Tensor, log_w: Tensor) -> MomentStats:
    """The moments of ``values`` (n, *value_shape) under one shard's log weights (n,), float64."""
    if values.shape[:1] != log_w.shape:
        raise ValueError(f"values must have shape (n, ...) with n = {len(log_w)}, got {tuple(values.shape)}")
    lw, dropped = _log_sums(log_w.double())
    lse = torch.logsumexp(lw, 0)
    shape = (-1,) + (1,) * (values.ndim - 1)
    if not torch.isfinite(lse):
        zeros = values.new_zeros(values.shape[1:], dtype=torch.float64)
        return MomentStats(-math.inf, zeros, 0.0, zeros, zeros, dropped)
    w = torch.exp(lw - lse)
    used = (w > 0).reshape(shape).expand_as(values)
    if not bool(torch.isfinite(values[used]).all()):
        raise ValueError("values contain nan/inf at samples with a finite weight; drop or fix those samples")
    f = torch.where(used, values.double(), torch.zeros((), dtype=torch.float64))
    wb = w.reshape(shape)
    mean = (wb * f).sum(0)
    d = torch.where(used, f - mean, torch.zeros((), dtype=torch.float64))
    return MomentStats(float(lse), mean, float((w**2).sum()), (wb**2 * d).sum(0), (wb**2 * d**2).sum(0), dropped)


def merge_moments(stats: Sequence[MomentStats]) -> ReweightedEstimate:
    """The reweighted mean and delta-method standard error of the union of the shards, as
    :func:`boltzflow.eval.weights.reweight` gives them on the concatenated samples."""
    total = _lse([s.log_sum_w for s in stats])
    if not math.isfinite(total):
        raise BoltzflowError("every log weight of every shard is non-finite; nothing to reweight")
    a = [math.exp(s.log_sum_w - total) for s in stats]  # each shard's share of the total weight
    mean = sum(ak * s.mean for ak, s in zip(a, stats, strict=True))
    var = sum(ak**2 * (s.centred_2 + 2 * (s.mean - mean) * s.centred_1 + (s.mean - mean) ** 2 * s.sum_w2)
              for ak, s in zip(a, stats, strict=True))
    sum_w2 = sum(ak**2 * s.sum_w2 for ak, s in zip(a, stats, strict=True))
    return ReweightedEstimate(mean, torch.sqrt(var), 1.0 / sum_w2, sum(s.n_dropped for s in stats))


__all__ = ["MomentStats", "WeightStats", "merge_moments", "merge_weight_stats",
           "moment_stats", "parse_shard", "shard_name", "shard_sizes", "weight_stats"]
