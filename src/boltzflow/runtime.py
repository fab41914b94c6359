"""Process-wide settings every command applies first: the torch / OpenMP thread count.

Torch's default (one thread per core) is the wrong choice on a small shared machine: with two 2-thread
processes on 2 cores, epochs ran 30-50x slower than with one thread each (issue 11). So the default is
conservative: at most half the cores, and no more than the cores that the 1-minute load average leaves idle,
never fewer than one. ``--threads N`` or the ``BOLTZFLOW_THREADS`` environment variable override it.
"""

from __future__ import annotations

import os

ENV_THREADS = "BOLTZFLOW_THREADS"


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Threads for torch when the user names none: ``BOLTZFLOW_THREADS``, else min(cores // 2, idle cores), >= 1.

    Raises:
        ValueError: ``BOLTZFLOW_THREADS`` is set to something that is not a positive integer.
    """
    env = os.environ.get(ENV_THREADS)
    if env is not None:
        return validate_threads(env, ENV_THREADS)
    cores = available_cores()
    try:
        idle = round(cores - os.getloadavg()[0])
    except OSError:
        idle = cores
    return max(1, min(cores // 2, idle))


def validate_threads(value: object, name: str = "--threads") -> int:
    """``value`` as a thread count >= 1, or a one-line ValueError naming ``name``."""
    try:
        n = int(str(value))
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (and OpenMP's, for child processes) to ``threads`` or the default.

    Returns:
        the thread count now in use.
    """
    import torch

    n = default_threads() if threads is None else validate_threads(threads)
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    return n
