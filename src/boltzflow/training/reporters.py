"""Reporters: what the training loop tells the outside world, step by step and epoch by epoch.

* :class:`ProgressBar`: a tqdm bar over the epochs of a stage, with the last losses;
* :class:`MetricsLog`: every metric of every step, and one summary per epoch, as JSON lines in
  ``metrics.jsonl`` of the run folder (flushed after each line). On resume, the lines this stage wrote after
  its last checkpoint are dropped before appending, so a killed and resumed run has each step exactly once.

A reporter has ``start(info)``, ``step(record)``, ``epoch(record)`` and ``close()``; records are flat dicts of
JSON scalars. Non-finite numbers are written as ``null`` (strict JSON).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

from tqdm.auto import tqdm

from boltzflow.io import save_text


class StageInfo(NamedTuple):
    """Where a stage starts.

    Attributes:
        stage: stage name.
        start_epoch: first epoch this call runs (0 for a fresh run).
        start_step: optimiser steps already done (0 for a fresh run).
        epochs: the stage's total epoch count.
    """

    stage: str
    start_epoch: int
    start_step: int
    epochs: int


class Reporter(Protocol):
    """Receives the loop's records."""

    def start(self, info: StageInfo) -> None: ...

    def step(self, record: dict[str, Any]) -> None: ...

    def epoch(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class ProgressBar:
    """tqdm over the epochs of a stage, showing the last training and validation losses.

    Args:
        desc: bar label (default: the stage name).
        disable: hide the bar.
    """

    def __init__(self, desc: str | None = None, disable: bool = False) -> None:
        self.desc, self.disable = desc, disable
        self.bar: Any = None

    def start(self, info: StageInfo) -> None:
        self.bar = tqdm(total=info.epochs, initial=info.start_epoch, desc=self.desc or info.stage,
                        disable=self.disable, leave=False)

    def step(self, record: dict[str, Any]) -> None:
        pass

    def epoch(self, record: dict[str, Any]) -> None:
        self.bar.set_postfix(loss=f"{record['train_loss']:.4f}", val=f"{record['val_loss']:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsLog:
    """JSON lines of every step (``"event": "step"``) and epoch (``"event": "epoch"``) in ``path``.

    Args:
        path: the log file, e.g. ``RUN/metrics.jsonl``; shared by stages of a run (each line names its stage;
            stages sharing a file need distinct names).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file: IO[str] | None = None
        self.stage = ""

    def start(self, info: StageInfo) -> None:
        self.stage = info.stage
        kept = [line for line in _read_lines(self.path) if _keep(line, info)]
        save_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  closed in close()

    def step(self, record: dict[str, Any]) -> None:
        self._write({"event": "step", **record})

    def epoch(self, record: dict[str, Any]) -> None:
        self._write({"event": "epoch", **record})

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def _write(self, record: dict[str, Any]) -> None:
        assert self.file is not None, "MetricsLog.start() was not called"
        self.file.write(json.dumps({k: _finite(v) for k, v in record.items()}) + "\n")
        self.file.flush()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a torn last line, from a kill mid-write, is skipped)."""
    return _read_lines(Path(path))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _keep(record: dict[str, Any], info: StageInfo) -> bool:
    """Lines of other stages, and lines of this stage from before the resumed checkpoint."""
    if record.get("stage") != info.stage:
        return True
    if record.get("event") == "epoch":
        return isinstance(record.get("epoch"), int) and record["epoch"] < info.start_epoch
    return isinstance(record.get("step"), int) and record["step"] < info.start_step


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v
