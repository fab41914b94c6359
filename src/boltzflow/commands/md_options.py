"""Checked argparse types and path checks for the MD commands (``simulate``, ``umbrella``, ``energy``).

A bad number is refused by argparse itself, before anything runs or is written, in one line that names the
option: ``boltzflow simulate: error: argument --ns: must be a finite number > 0, got 'inf'``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from boltzflow.errors import BoltzflowError


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type accepting whole numbers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


def writable_dir(path: str | Path, option: str) -> Path:
    """``path`` as a directory that exists or can be created (nothing is created here).

    Raises:
        BoltzflowError: ``path`` is a file, or a file stands where one of its parent directories would be.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BoltzflowError(f"{option} {p} is a file; give a directory")
    _parents_are_dirs(p, option)
    return p


def writable_file(path: str | Path, option: str, suffix: str) -> Path:
    """``path`` as a file ending in ``suffix`` that can be written (nothing is created here).

    Raises:
        BoltzflowError: wrong suffix, ``path`` is a directory, or a file stands where a parent directory would be.
    """
    p = Path(path)
    if p.suffix != suffix:
        raise BoltzflowError(f"{option} must end in {suffix}, got {p}")
    if p.is_dir():
        raise BoltzflowError(f"{option} {p} is a directory; give a file name ending in {suffix}")
    _parents_are_dirs(p, option)
    return p


def _parents_are_dirs(p: Path, option: str) -> None:
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise BoltzflowError(f"{option} {p}: {parent} is a file, not a directory")
            return
