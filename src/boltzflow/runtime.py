"""Process-wide settings every command applies first: the torch / OpenMP thread count, and ``--device``.

Torch's default (one thread per core) is the wrong choice on a small shared machine: with two 2-thread
processes on 2 cores, epochs ran 30-50x slower than with one thread each (issue 11). So the default is
conservative: at most half the cores, and no more than the cores that the 1-minute load average leaves idle,
never fewer than one. ``--threads N`` or the ``BOLTZFLOW_THREADS`` environment variable override it.

Every command takes ``--device`` (:func:`add_device_argument`): ``cpu``, ``cuda`` or ``cuda:N``, checked by
argparse itself (:func:`resolve_device`), so ``--device cuda`` on a machine without CUDA is one line and exit 2
before anything is read or written. Commands that run OpenMM only (``simulate``, ``umbrella``) accept ``cpu``
and refuse ``cuda`` with the reason: their ``--platform`` chooses OpenMM's Reference or CPU platform, and
OpenMM's CUDA platform is not part of this install. ``systems`` computes nothing and only checks the value.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

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


DEVICE_KINDS = ("torch", "openmm", "none")


def resolve_device(name: object) -> torch.device:
    """The torch device named ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (None = cpu).

    Raises:
        ValueError: an unknown name, CUDA where torch sees none, or N out of range (one line, naming --device).
    """
    import torch

    if name is None:
        return torch.device("cpu")
    try:
        device = torch.device(str(name))
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cpu" and device.index is None:
        return device
    if device.type != "cuda":
        raise ValueError(f"--device {name}: only cpu, cuda and cuda:N are supported")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available to torch {torch.__version__}; use --device cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"--device {name}: only {count} CUDA device(s) visible (cuda:0 ... cuda:{count - 1})")
    return device


def _device_type(kind: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if kind == "openmm" and text != "cpu":  # refused whatever torch sees: OpenMM does not run on torch devices
            raise argparse.ArgumentTypeError(
                f"{text}: this command runs OpenMM, whose --platform (Reference or CPU) chooses where; OpenMM's "
                "CUDA platform is not installed, so only --device cpu applies")
        try:
            resolve_device(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"--device {text}: ")) from None
        return text

    parse.__name__ = "device"
    return parse


def add_device_argument(p: argparse.ArgumentParser, kind: str = "torch", what: str = "") -> None:
    """Add ``--device`` to a command's parser.

    Args:
        p: the command's parser.
        kind: "torch" (flows and torch energies run there), "openmm" (cpu only; OpenMM's --platform decides)
            or "none" (nothing is computed; the value is only checked).
        what: what runs on the device, for the help text.
    """
    if kind not in DEVICE_KINDS:
        raise ValueError(f"kind must be one of {DEVICE_KINDS}, got {kind!r}")
    text = {"torch": f"cpu (default), cuda or cuda:N: where {what or 'the flow and the torch energies'} run",
            "openmm": "cpu only: OpenMM runs on its --platform (Reference or CPU); cuda is refused",
            "none": "cpu (default), cuda or cuda:N; checked only (this command computes nothing)"}[kind]
    p.add_argument("--device", type=_device_type(kind), default=None, help=text)
