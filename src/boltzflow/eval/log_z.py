"""The log Z error: the importance-sampling estimate of log Z from flow samples against the exact value.

For x_n ~ q with log weights log w_n = −u(x_n) − log q(x_n), ``log Ẑ = log mean_n w_n`` estimates
log Z = log ∫ exp(−u) (:func:`boltzflow.eval.weights.log_partition_estimate`). By Jensen's inequality
E[log Ẑ] <= log Z, so a model that misses mass (mode collapse) shows a negative error that more samples do not
remove; the delta-method standard error sqrt(1/ESS − 1/n) is reported beside it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from torch import Tensor

from boltzflow.eval.weights import log_partition_estimate


class LogZError(NamedTuple):
    """log Ẑ against the exact log Z.

    Attributes:
        log_z_estimate: log Ẑ.
        log_z_exact: the exact log Z.
        error: log Ẑ − log Z (negative: missing mass).
        abs_error: |error|.
        stderr: delta-method standard error of log Ẑ.
        n_dropped: samples with non-finite log weights (counted with weight zero).
    """

    log_z_estimate: float
    log_z_exact: float
    error: float
    abs_error: float
    stderr: float
    n_dropped: int


def log_z_error(log_w: Tensor, log_z_exact: float) -> LogZError:
    """Error of the importance-sampling log Z estimate.

    Args:
        log_w: log importance weights −u − log q of samples from a normalised q, shape (n,).
        log_z_exact: exact log ∫ exp(−u) dx of the target (``System.log_z``).

    Raises:
        ValueError: ``log_z_exact`` is not a finite number (the system has no exact log Z).
    """
    if log_z_exact is None or not math.isfinite(float(log_z_exact)):
        raise ValueError(f"log_z_error needs the system's exact log Z, got {log_z_exact!r}")
    est = log_partition_estimate(log_w)
    err = est.log_z - float(log_z_exact)
    return LogZError(est.log_z, float(log_z_exact), err, abs(err), est.stderr, est.n_dropped)
