"""The skeleton every recipe runner shares: the run folder, the stage loop, the BG evaluation and the results file.

A runner (one module per kind of reproduction in this package, registered in :data:`boltzflow.recipes.RUNNERS`)
has a ``Config`` dataclass (the recipe's tables, built from the pieces in :mod:`boltzflow.experiments.stages`)
and ``run(out, config, *, seed, progress, force, command, device, recipe)``. It calls, in order:

* :func:`start`: checks ``--out`` (never a file, never a folder of unrelated files, a finished run only with
  ``force``), creates ``figures/``, ``samples/``, ``checkpoints/`` and returns a :class:`RunContext`;
* :func:`train_stages`: one :func:`~boltzflow.training.loop.fit` per :class:`Stage` (loss by name, the training
  set as batch source, the stage's schedule; generators seeded from ``seed + stage.seed``), resumable from
  ``checkpoints/<stage>.pt``;
* :func:`bg_evaluation`: independent draws of flow samples with importance weights, scored by
  :func:`boltzflow.eval.evaluate.evaluate` (ESS mean ± sd and clipped, populations with bootstrap CI, ...);
* :func:`finish`: ``results.json`` with the resolved config and provenance, and the resolved recipe as
  ``recipe.toml`` (``boltzflow run out/recipe.toml`` repeats the run).

Nothing here knows an atom count: shapes come from the system (``event_shape``, ``dim``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.eval.evaluate import Draw, evaluate
from boltzflow.experiments.common import provenance
from boltzflow.experiments.stages import BGEvaluation, RealNVPFlow, Stage, make_loss, positive
from boltzflow.io import save_json, save_text
from boltzflow.training.energy_fit import BGSamples, bg_samples
from boltzflow.training.loop import FitResult, fit

RUN_MARKERS = ("results.json", "recipe.toml", "checkpoints")  # a folder holding any of these is a run folder
RUN_SUBDIRS = ("figures", "samples", "checkpoints")


class RunContext(NamedTuple):
    """What every step of a run needs: the folder, the seed, the progress flag, the clock, the command."""

    out: Path
    seed: int
    progress: bool
    command: list[str] | None
    started: float


def check_out_dir(out: str | Path, force: bool = False) -> Path:
    """Refuse an unusable ``--out`` before anything is created or changed.

    Raises:
        BoltzflowError: ``out`` is a file, a folder of unrelated files, or a finished run without ``force``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BoltzflowError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        entries = {p.name for p in out.iterdir()}
        if entries and not entries & set(RUN_MARKERS):
            raise BoltzflowError(f"--out {out} holds files that are not a boltzflow run ({sorted(entries)[0]}, ...); "
                                 "choose an empty or new folder")
        if "results.json" in entries and not force:
            raise BoltzflowError(f"{out} already holds a finished run (results.json); choose another --out or pass "
                                 "--force to replace it")
    return out


def prepare_out_dir(out: str | Path, force: bool = False) -> Path:
    """:func:`check_out_dir`, then (with ``force``) drop a finished run's outputs and create the sub-folders.

    A folder with checkpoints only is resumed.
    """
    out = check_out_dir(out, force)
    if (out / "results.json").exists():
        for sub in RUN_SUBDIRS:
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "results.json").unlink()
    for sub in RUN_SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    return out


def start(out: str | Path, *, seed: int, progress: bool, force: bool, command: list[str] | None) -> RunContext:
    """The run preamble: the clock, the checked and prepared folder."""
    started = time.time()
    return RunContext(prepare_out_dir(out, force), seed, progress, command, started)


def check_device(device: str | None, runner: str) -> None:
    """Runners that compute on the CPU only refuse another ``--device`` in one line."""
    if device not in (None, "cpu"):
        raise BoltzflowError(f"--device {device}: recipe runner {runner} runs on the CPU only (alanine-cartesian "
                             "runs on cuda)")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (to tie a saved stage result to the checkpoint it was computed from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_stage(path: str | Path, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The result saved at ``path`` if it was made with the same ``key``, else ``compute()``, saved there first.

    A long run's evaluation stages (scoring, MD) go through this so that a stopped run resumes after its last
    finished stage instead of recomputing, or losing, everything after training. ``key`` holds what the result
    depends on (settings, seed, the checkpoint's :func:`file_sha256`); a different key, or a file that cannot be
    read, recomputes and overwrites. The result must be JSON-able.
    """
    path = Path(path)
    key = json.loads(json.dumps(key))  # the form it takes in the file (tuples -> lists)
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and saved.get("key") == key and "result" in saved:
            return saved["result"]
    except (OSError, ValueError):  # missing or unreadable: compute it again
        pass
    result = compute()
    save_json(path, {"key": key, "result": result})
    return result


def seeded(build: Callable[[], Any], seed: int) -> Any:
    """``build()`` with torch's global CPU generator started from ``seed`` (initial weights), then restored."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def train_stages(ctx: RunContext, flow: torch.nn.Module, stages: Sequence[Stage], data: Tensor | Callable,
                 energy_flat: Callable[[Tensor], Tensor] | None, dim: int,
                 extra: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Train ``flow`` through ``stages`` in order; returns one summary per stage.

    Args:
        ctx: the run.
        flow: the model (trained in place, in the dtype of ``data``).
        stages: the recipe's stages.
        data: the training set (n, dim) (or a function stage -> the stage's batch tensor, e.g. packed forces).
        energy_flat: u on (n, dim), kT, for mixed stages.
        dim: width of a configuration in the batch.
        extra: JSON-serialisable entries for the checkpoints (``flow_spec`` makes them loadable).
        prefix: put before every stage name (checkpoint file and label), e.g. the model's name.
    """
    summaries = []
    for stage in stages:
        batch = data(stage) if callable(data) else data
        result = fit(flow, make_loss(stage, energy_flat, dim), batch, stage.schedule(ctx.seed),
                     ctx.out / "checkpoints" / f"{prefix}{stage.name}.pt",
                     extra={**extra, "stage": f"{prefix}{stage.name}"}, progress=ctx.progress,
                     desc=f"{prefix}{stage.name}")
        summaries.append(stage_summary(stage, result))
    return summaries


def stage_summary(stage: Stage, result: FitResult) -> dict[str, Any]:
    """One stage's line in results.json."""
    out = {"stage": stage.name, "loss": stage.loss, "best_epoch": result.best_epoch, "best_val": result.best_val,
           "final_train_loss": result.history[-1]["train_loss"] if result.history else None,
           "seconds": result.train_seconds, "skipped": result.skipped_steps}
    if stage.loss == "mixed":
        out["weights"] = {"nll": stage.nll_weight, "kl": stage.kl_weight, "fm": stage.force_weight,
                          "iw": stage.iw_weight}
    return out


@torch.no_grad()
def bg_evaluation(system: Any, flow: Any, energy_flat: Callable[[Tensor], Tensor], ev: BGEvaluation, seed: int,
                  reference_x: Tensor | None = None,
                  states: tuple[Callable[[Tensor], np.ndarray], Sequence[str]] | None = None,
                  ) -> tuple[dict[str, Any], list[BGSamples]]:
    """``ev.n_draws`` independent draws of flow samples (generator seeds ``seed + 1000 k``), scored by
    :func:`~boltzflow.eval.evaluate.evaluate`.

    Args:
        system: the :class:`~boltzflow.systems.base.System` (its event shape, log Z, observables).
        flow: the proposal q on flattened configurations (n, dim), in the evaluation dtype.
        energy_flat: u on (n, dim), kT.
        ev: sizes.
        seed: seed of the first draw.
        reference_x: held-out reference configurations (m, dim) for NLL, EUBO, Ramachandran TV.
        states: ``(labels_fn, names)`` for populations with CI; ``labels_fn`` takes (n, *event_shape).

    Returns:
        ``(metrics, draws)``.
    """
    shape = tuple(system.event_shape)
    draws = [bg_samples(flow, energy_flat, ev.n_samples, torch.Generator().manual_seed(seed + 1000 * k),
                        chunk_size=ev.chunk_size) for k in range(ev.n_draws)]
    log_q_ref = None
    if reference_x is not None:
        log_q_ref = torch.cat([flow.log_prob(c) for c in reference_x.split(ev.chunk_size)])
    metrics = evaluate(
        system, [Draw(d.x.unflatten(-1, shape), d.log_w, d.u) for d in draws],
        reference_x=None if reference_x is None else reference_x.unflatten(-1, shape),
        log_q_reference=log_q_ref, states=states, clip_fraction=ev.clip_fraction,
        model_metrics_n=ev.model_metrics_n or None,
    )
    return metrics, draws


def finish(ctx: RunContext, results: dict[str, Any], config: Any, recipe: dict[str, Any] | None) -> dict[str, Any]:
    """Add the resolved config and provenance, write ``results.json`` and ``recipe.toml``; returns ``results``.

    Args:
        ctx: the run.
        results: the runner's numbers.
        config: the runner's config dataclass.
        recipe: ``{name, scale, source, toml}`` from the command (None when called from Python).
    """
    recipe = recipe or {}
    results["config"] = {"recipe": recipe.get("name"), "scale": recipe.get("scale"), "seed": ctx.seed,
                         **dataclasses.asdict(config)}
    results["provenance"] = provenance(ctx.command, ctx.started)
    if recipe.get("toml"):
        save_text(ctx.out / "recipe.toml", recipe["toml"])
    save_json(ctx.out / "results.json", results)
    return results


__all__ = ["BGEvaluation", "RealNVPFlow", "RunContext", "Stage", "bg_evaluation", "cached_stage", "check_device",
           "check_out_dir", "file_sha256", "finish", "positive", "prepare_out_dir", "seeded", "start", "train_stages"]
