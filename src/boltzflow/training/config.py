"""Typed configs with ``key=value`` overrides (type-checked against the dataclass fields)."""

from __future__ import annotations

import ast
import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`boltzflow.training.loop.train` and :func:`~boltzflow.training.loop.fit`.

    Every field is validated at construction (a ValueError names the field).

    Attributes:
        epochs: epochs of the stage (passes over the training data for a dataset source).
        batch_size: minibatch size of :func:`~boltzflow.training.loop.fit`'s dataset source.
        lr: Adam learning rate.
        lr_schedule: "cosine" (to ``lr * lr_final_fraction``), "constant" or "step" (×0.5 every quarter).
        lr_final_fraction: final learning rate as a fraction of ``lr`` for "cosine".
        weight_decay: Adam weight decay.
        grad_clip: max global gradient norm (None disables clipping).
        val_fraction: share of the data :func:`~boltzflow.training.loop.fit` holds out for validation and
            best-epoch selection.
        checkpoint_every: epochs between checkpoints (the last epoch is always saved).
        seed: seeds the loop's generators (split, minibatch order, flow samples); commands also seed the
            initial weights with it.
    """

    epochs: int = 400
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    lr_final_fraction: float = 0.01
    weight_decay: float = 0.0
    grad_clip: float | None = 100.0
    val_fraction: float = 0.1
    checkpoint_every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate every field; the message names the field.

        Raises:
            ValueError: a count below 1, a non-positive or non-finite rate, a negative weight decay, a
                ``val_fraction`` outside [0, 1), a ``lr_final_fraction`` outside (0, 1], or a wrong type.
        """
        if self.lr_schedule not in ("cosine", "constant", "step"):
            raise ValueError(f"lr_schedule must be cosine, constant or step, got {self.lr_schedule!r}")
        for name in ("epochs", "batch_size", "checkpoint_every"):
            _check_int(name, getattr(self, name), 1)
        _check_int("seed", self.seed, 0)
        _check_number("lr", self.lr, lambda v: v > 0, "> 0")
        _check_number("lr_final_fraction", self.lr_final_fraction, lambda v: 0 < v <= 1, "in (0, 1]")
        _check_number("weight_decay", self.weight_decay, lambda v: v >= 0, ">= 0")
        _check_number("val_fraction", self.val_fraction, lambda v: 0 <= v < 1, "in [0, 1)")
        if self.grad_clip is not None:
            _check_number("grad_clip", self.grad_clip, lambda v: v > 0, "> 0 (or None for no clipping)")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value: Any, ok: Any, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}")
    return cls(**data)


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a nested config dict (values parsed as Python literals).

    The new value must have the type of the old one (ints may become floats; None may be replaced).
    """
    config = dataclasses.replace(config) if dataclasses.is_dataclass(config) else _deep_copy(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. train.epochs=10)")
        key, raw = item.split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        *path, leaf = key.split(".")
        node = config
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {key!r}: no config section {part!r}")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"override {key!r}: unknown key; valid keys here: {sorted(node)}")
        old = node[leaf]
        if old is not None and value is not None and not _compatible(old, value):
            raise ValueError(f"override {key!r}: expected {type(old).__name__}, got {type(value).__name__}")
        node[leaf] = value
    return config


def _compatible(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float) and isinstance(new, int):
        return True
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return True
    return type(old) is type(new)


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d
