"""The harness that runs CMT and its baselines step by step, with one energy counter, one log and checkpoints.

A *method* is a small object (:class:`Method`): a number of steps, the energy evaluations each step costs, and
``step(flow, target, i, generator) -> record`` that trains the flow in place. :func:`run_method` owns everything
else, identically for every method:

* the training budget: before the first step the planned cost ``Σ step_cost(i)`` is checked against the
  target's budget, and :class:`~boltzflow.training.cmt.harness.CountedTarget` refuses any evaluation beyond it;
* the log: every step's record gets its index, the cumulative training evaluations and its wall time, and,
  every ``eval_every`` steps and after the last, an evaluation on fresh samples with an uncounted energy
  (the ESS-vs-evaluations curve);
* checkpoints after every step: ``state-<step>.safetensors`` (flow parameters, the generator state, the
  method's tensors) and then ``state.json`` (the format, the resolved config, the step, the counter, the
  history, the method's JSON state) naming it. No pickle. A killed run resumes at its last finished step and
  continues bit-identically (the evaluation generator is re-seeded from the step index, so evaluations do not
  disturb training).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow
from boltzflow.io import atomic_path, save_json
from boltzflow.training.cmt.harness import CountedTarget

FORMAT = "boltzflow-anneal-run-v1"
Evaluator = Callable[[Flow, int], dict[str, float]]


class Method(Protocol):
    """What :func:`run_method` needs of a training method (CMT, reverse KL, temperature annealing)."""

    name: str

    @property
    def n_steps(self) -> int: ...

    def step_cost(self, step: int) -> int: ...

    def config_dict(self) -> dict[str, Any]: ...

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]: ...

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None: ...

    def step(self, flow: Flow, target: CountedTarget, step: int, generator: torch.Generator) -> dict[str, Any]: ...


class RunResult(NamedTuple):
    """Outcome of :func:`run_method`: per-step records, the training evaluations used, and the steps run now
    (0 when the run was already complete)."""

    history: list[dict[str, Any]]
    evals: int
    steps_run: int


def planned_cost(method: Method) -> int:
    """Training energy evaluations of a complete run of ``method``."""
    return sum(method.step_cost(i) for i in range(method.n_steps))


def run_method(
    method: Method,
    flow: Flow,
    target: CountedTarget,
    seed: int,
    out: str | Path | None = None,
    evaluator: Evaluator | None = None,
    eval_every: int = 1,
) -> RunResult:
    """Run (or resume) ``method`` on ``flow`` against ``target``; see the module docstring.

    Args:
        method: the training method (its config is stored with the checkpoint and must match on resume).
        flow: the model, trained in place; on resume its parameters are replaced by the checkpoint's.
        target: counted energy; its budget, if any, must cover :func:`planned_cost`.
        seed: seed of the training generator (latent samples and minibatch indices), on the flow's device.
        out: checkpoint folder (None: no checkpoints).
        evaluator: ``(flow, step) -> dict`` of evaluation numbers merged into a step's record.
        eval_every: evaluate after every ``eval_every``-th step and after the last.

    Raises:
        BoltzflowError: the budget is too small for the plan, or ``out`` holds a run with another config.
    """
    cost = planned_cost(method)
    if cost > target.remaining():
        raise BoltzflowError(f"{method.name} needs {cost} energy evaluations, the budget leaves {target.remaining()}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    device = next(flow.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    config = {**method.config_dict(), "seed": seed}
    history: list[dict[str, Any]] = []
    if out is not None and (Path(out) / "state.json").is_file():
        history = _resume(Path(out), method, flow, target, generator, config)
    start = len(history)
    for i in range(start, method.n_steps):
        t0 = time.perf_counter()
        record = {"step": i, **method.step(flow, target, i, generator)}
        record.update(evals=target.evals, seconds=time.perf_counter() - t0)
        if evaluator is not None and ((i + 1) % eval_every == 0 or i == method.n_steps - 1):
            record.update(evaluator(flow, i))
        history.append(record)
        if out is not None:
            _save(Path(out), method, flow, generator, config, history, target.evals)
    return RunResult(history, target.evals, method.n_steps - start)


def _save(
    out: Path, method: Method, flow: Flow, generator: torch.Generator, config: dict[str, Any],
    history: list[dict[str, Any]], evals: int,
) -> None:
    step = len(history)
    tensors, meta = method.state()
    payload = {f"flow.{k}": v for k, v in flow.state_dict().items()}
    payload.update({f"method.{k}": v for k, v in tensors.items()})
    payload["generator"] = generator.get_state()
    name = f"state-{step}.safetensors"
    with atomic_path(out / name) as tmp:
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in payload.items()}, str(tmp))
    state = {"format": FORMAT, "config": config, "step": step, "evals": evals, "tensors": name,
             "method_state": meta, "history": history}
    save_json(out / "state.json", state)
    for old in out.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink()


def _resume(
    out: Path, method: Method, flow: Flow, target: CountedTarget, generator: torch.Generator, config: dict[str, Any]
) -> list[dict[str, Any]]:
    try:
        state = json.loads((out / "state.json").read_text())
        tensors = load_file(str(out / state["tensors"]))
    except (OSError, ValueError, KeyError) as err:
        raise BoltzflowError(f"cannot resume from {out}: {type(err).__name__}: {err}") from None
    if state.get("format") != FORMAT:
        raise BoltzflowError(f"{out}/state.json is not a {FORMAT} checkpoint")
    if json.loads(json.dumps(config)) != state["config"]:
        raise BoltzflowError(f"{out} holds a run with another configuration; use a new output folder")
    device = next(flow.parameters()).device
    flow.load_state_dict({k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("flow.")})
    method.load_state({k[7:]: v.to(device) for k, v in tensors.items() if k.startswith("method.")},
                      state["method_state"])
    generator.set_state(tensors["generator"])
    target.evals = int(state["evals"])
    return list(state["history"])
