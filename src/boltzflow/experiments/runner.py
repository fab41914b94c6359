"""The skeleton every recipe runner shares: the run folder, the typed pieces of a recipe, the stage loop, the
BG evaluation and the results file.

A runner (one module per reproduction in this package, registered in :data:`boltzflow.recipes.RUNNERS`) has a
``Config`` dataclass (the recipe's tables) and ``run(out, config, *, seed, progress, force, command, device)``.
It calls, in order:

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
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.eval.evaluate import Draw, evaluate
from boltzflow.experiments.common import provenance
from boltzflow.flows.realnvp import RealNVPConfig
from boltzflow.io import save_json, save_text
from boltzflow.training.config import TrainConfig
from boltzflow.training.energy_fit import BGSamples, bg_samples, mixed_objective
from boltzflow.training.loop import FitResult, fit
from boltzflow.training.losses import linlog_cut, nll

RUN_MARKERS = ("results.json", "recipe.toml", "checkpoints")  # a folder holding any of these is a run folder
RUN_SUBDIRS = ("figures", "samples", "checkpoints")
LOSSES = ("nll", "mixed")


def positive(obj: Any, *names: str, allow_zero: bool = False) -> None:
    """Raise ValueError naming the first field of ``obj`` that is not a finite number > 0 (>= 0 if ``allow_zero``)."""
    for name in names:
        v = getattr(obj, name)
        if v is None:
            continue
        ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
        if not ok or v < 0 or (v == 0 and not allow_zero):
            raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}")


@dataclass
class RealNVPFlow:
    """A RealNVP on the system's coordinates (the dimension comes from the system).

    Attributes:
        n_layers: coupling layers.
        hidden: hidden widths of every s and t net.
        masked_input: nets on the masked full vector rather than the kept half.
        activation: "tanh", "silu", ... (see :class:`~boltzflow.flows.realnvp.RealNVPConfig`).
        scale_clamp: soft bound on |s| (None: unbounded).
    """

    n_layers: int = 8
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    masked_input: bool = True
    activation: str = "tanh"
    scale_clamp: float | None = 2.0

    def __post_init__(self) -> None:
        positive(self, "n_layers", "scale_clamp")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {self.hidden}")

    def config(self, dim: int) -> RealNVPConfig:
        """The flow library's config for event dimension ``dim``."""
        return RealNVPConfig(dim=dim, **dataclasses.asdict(self))


@dataclass
class Stage(TrainConfig):
    """One training stage: a loss on the training set with its schedule (the :class:`TrainConfig` fields).

    Attributes:
        name: stage name (checkpoint ``checkpoints/<name>.pt``, progress label, metrics-log stage).
        loss: "nll" (data NLL) or "mixed" (``w_n NLL + w_k reverse KL + w_i IW-NLL + w_f force matching``
            against the system's energy, cut lin-log above ``energy_high`` kT).
        seed: added to the run's ``--seed`` for this stage's generators.
        nll_weight, kl_weight, iw_weight, force_weight: the weights of the mixed loss.
        kl_batch: flow samples per reverse-KL / IW-NLL estimate.
        energy_high: lin-log cut of the training energy, kT.
    """

    name: str = "train"
    loss: str = "nll"
    nll_weight: float = 1.0
    kl_weight: float = 0.0
    iw_weight: float = 0.0
    force_weight: float = 0.0
    kl_batch: int = 256
    energy_high: float = 1e3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.name or "/" in self.name:
            raise ValueError(f"stage name must be a non-empty file name, got {self.name!r}")
        positive(self, "nll_weight", "kl_weight", "iw_weight", "force_weight", allow_zero=True)
        positive(self, "kl_batch", "energy_high")

    def schedule(self, seed: int) -> TrainConfig:
        """The stage's :class:`TrainConfig`, its generators seeded from ``seed + self.seed``."""
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{**kw, "seed": seed + self.seed})


@dataclass
class BGEvaluation:
    """How a Boltzmann generator is scored.

    Attributes:
        n_samples: flow samples per draw.
        n_draws: independent draws (ESS and populations are mean ± sd over them; >= 4 for a result).
        mh_steps: independence Metropolis-Hastings steps on the first draw.
        clip_fraction: share of the largest log weights clipped for the clipped ESS.
        chunk_size: samples per flow/energy call.
    """

    n_samples: int = 100_000
    n_draws: int = 4
    mh_steps: int = 99_999
    clip_fraction: float = 1e-4
    chunk_size: int = 5000

    def __post_init__(self) -> None:
        positive(self, "n_samples", "n_draws", "mh_steps", "clip_fraction", "chunk_size")
        if self.clip_fraction >= 1:
            raise ValueError(f"clip_fraction must be < 1, got {self.clip_fraction}")


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


def seeded(build: Callable[[], Any], seed: int) -> Any:
    """``build()`` with torch's global CPU generator started from ``seed`` (initial weights), then restored."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def make_loss(stage: Stage, energy_flat: Callable[[Tensor], Tensor] | None, dim: int) -> Callable[..., Tensor]:
    """The loss function of ``stage``; ``energy_flat`` is u on flattened configurations (n, dim) -> (n,), kT."""
    if stage.loss == "nll":
        return nll
    if energy_flat is None:
        raise BoltzflowError(f"stage {stage.name}: the mixed loss needs the system's energy")
    u_train = lambda v: linlog_cut(energy_flat(v), high=stage.energy_high)  # noqa: E731  never inf
    return mixed_objective(u_train, stage.nll_weight, stage.kl_weight, stage.force_weight, stage.kl_batch,
                           dim=dim, iw_weight=stage.iw_weight)


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
