"""Baselines of CMT in its harness: data-free reverse KL, and TA-BG-style temperature annealing (notes §1.9).

Both are methods of :func:`boltzflow.training.cmt.runner.run_method`, so they share the flow, the counted target
(one energy budget), the log and the checkpoints with :class:`~boltzflow.training.cmt.anneal.CMT`.

* :class:`ReverseKLMethod`: Adam on ``E_q[u/τ + log q]`` (:func:`boltzflow.training.losses.reverse_kl_terms`)
  with reparameterised samples; one harness step is a block of ``iters`` gradient steps costing
  ``iters * batch_size`` evaluations. The optimiser state persists across blocks and checkpoints.
* :class:`TemperatureAnnealing` (Schopmans & Friederich, ICML 2025): reverse KL at a high temperature factor
  τ_0 = T_high / T, then one importance-weighted step per temperature of a ladder τ_1 > ... > τ_K = 1 (and
  optional extra steps at τ = 1): draw a buffer from the current flow, weight it by
  ``w̄ ∝ exp(-u / τ_k) / q̂`` (self-normalised), fit by the same weighted NLL as CMT. TA-BG's ladder is
  geometric (1200 K -> 300 K in nine steps for alanine dipeptide), :func:`geometric_ladder`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from boltzflow.eval.weights import log_importance_weights, weight_summary
from boltzflow.flows.flow import Flow
from boltzflow.training.cmt.harness import CountedTarget, FitConfig, fill_buffer, fit_weighted
from boltzflow.training.losses import reverse_kl_terms


@dataclass
class ReverseKLConfig:
    """Reverse-KL training in blocks.

    Attributes:
        n_blocks: harness steps.
        iters: Adam steps per block.
        batch_size: samples (energy evaluations) per Adam step.
        lr: learning rate.
        temperature_factor: τ = T / T_target of the trained target exp(-u/τ).
        clip_norm: gradient-norm clip.
    """

    n_blocks: int = 10
    iters: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    temperature_factor: float = 1.0
    clip_norm: float = 100.0

    def __post_init__(self) -> None:
        if min(self.n_blocks, self.iters, self.batch_size) < 1 or not self.lr > 0 or not self.temperature_factor > 0:
            raise ValueError(f"ReverseKLConfig needs positive sizes, lr and temperature_factor, got {self}")


def optimizer_state(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Adam's moment tensors and step counts as flat tensors ``"<param index>.<name>"``."""
    return {
        f"{i}.{name}": (v if torch.is_tensor(v) else torch.tensor(v)).detach()
        for i, per in opt.state_dict()["state"].items()
        for name, v in per.items()
    }


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    """Restore what :func:`optimizer_state` saved into ``opt`` (built over the same parameters)."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v.cpu() if name == "step" else v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


class PersistentAdam:
    """One Adam over a method's whole run, saved with each checkpoint and restored on resume, so a resumed run
    equals an uninterrupted one. A method sets ``self.config.lr``, ``self._opt = None`` and ``self._pending = {}``
    in its constructor and gets ``state``, ``load_state`` and ``_optimizer`` of the Method protocol."""

    config: Any
    _opt: torch.optim.Optimizer | None
    _pending: dict[str, Tensor]

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return (optimizer_state(self._opt) if self._opt is not None else dict(self._pending)), {}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self._pending = dict(tensors)

    def _optimizer(self, flow: Flow) -> torch.optim.Optimizer:
        if self._opt is None:
            self._opt = torch.optim.Adam([p for p in flow.parameters() if p.requires_grad], lr=self.config.lr)
            if self._pending:
                load_optimizer_state(self._opt, self._pending)
                self._pending = {}
        return self._opt


class ReverseKLMethod(PersistentAdam):
    """Data-free reverse KL in blocks of Adam steps (module docstring).

    Args:
        config: :class:`ReverseKLConfig`.
        name: the method's name in logs ("reverse-kl").
    """

    def __init__(self, config: ReverseKLConfig, name: str = "reverse-kl") -> None:
        self.config = config
        self.name = name
        self._opt: torch.optim.Optimizer | None = None
        self._pending: dict[str, Tensor] = {}

    @property
    def n_steps(self) -> int:
        return self.config.n_blocks

    def step_cost(self, step: int) -> int:
        return self.config.iters * self.config.batch_size

    def config_dict(self) -> dict[str, Any]:
        return {"method": self.name, **asdict(self.config)}

    def step(self, flow: Flow, target: CountedTarget, step: int, generator: torch.Generator) -> dict[str, Any]:
        """``iters`` Adam steps on the reverse KL; returns the block's mean loss and non-finite/skipped counts."""
        cfg = self.config
        opt = self._optimizer(flow)
        params = [p for g in opt.param_groups for p in g["params"]]
        losses, bad, skipped = [], 0, 0
        for _ in range(cfg.iters):
            terms = reverse_kl_terms(flow, target.energy, cfg.batch_size, generator, cfg.temperature_factor)
            bad += terms.n_nonfinite
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(terms.loss):
                skipped += 1
                continue
            terms.loss.backward()
            if not torch.isfinite(torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)):
                skipped += 1
                continue
            opt.step()
            losses.append(terms.loss.item())
        mean = sum(losses) / len(losses) if losses else float("nan")
        return {"reverse_kl": mean, "temperature_factor": cfg.temperature_factor, "n_nonfinite": bad,
                "fit_skipped": skipped}


def geometric_ladder(tau_high: float, n: int) -> list[float]:
    """``n`` temperature factors from ``tau_high`` down to 1, geometric, excluding ``tau_high`` itself
    (TA-BG: ``geometric_ladder(4, 9)`` is 1200 K -> 1028.69, 881.84, ..., 349.96, 300 K at T = 300 K)."""
    if not tau_high > 1 or n < 1:
        raise ValueError(f"geometric_ladder needs tau_high > 1 and n >= 1, got {tau_high}, {n}")
    return [tau_high ** (1.0 - k / n) for k in range(1, n + 1)]


@dataclass
class AnnealingConfig:
    """TA-BG-style temperature annealing.

    Attributes:
        reverse_kl: phase 1, reverse KL at ``reverse_kl.temperature_factor`` = τ_0 > 1.
        ladder: temperature factors of the annealing steps, decreasing to 1.
        n_final: extra importance-weighted steps at τ = 1 after the ladder.
        n_samples: buffer size per annealing step (evaluations per step).
        fit: inner fitting loop (the same as CMT's).
        chunk: samples per forward pass when filling a buffer.
    """

    reverse_kl: ReverseKLConfig = field(default_factory=lambda: ReverseKLConfig(temperature_factor=4.0))
    ladder: list[float] = field(default_factory=lambda: geometric_ladder(4.0, 9))
    n_final: int = 1
    n_samples: int = 10_000
    fit: FitConfig = field(default_factory=FitConfig)
    chunk: int = 4096

    def __post_init__(self) -> None:
        if isinstance(self.reverse_kl, dict):
            self.reverse_kl = ReverseKLConfig(**self.reverse_kl)
        if isinstance(self.fit, dict):
            self.fit = FitConfig(**self.fit)
        self.ladder = [float(t) for t in self.ladder]
        if any(not t > 0 for t in self.ladder) or self.n_final < 0 or self.n_samples < 2:
            raise ValueError(f"AnnealingConfig needs positive ladder factors, n_final >= 0, n_samples >= 2: {self}")


class TemperatureAnnealing:
    """Reverse KL at τ_0, then importance-weighted steps down the ladder (module docstring).

    Args:
        config: :class:`AnnealingConfig`.
    """

    name = "ta-bg"

    def __init__(self, config: AnnealingConfig) -> None:
        self.config = config
        self.phase1 = ReverseKLMethod(config.reverse_kl, name="ta-bg reverse-kl")
        self._taus = list(config.ladder) + [1.0] * config.n_final

    @property
    def n_steps(self) -> int:
        return self.phase1.n_steps + len(self._taus)

    def step_cost(self, step: int) -> int:
        return self.phase1.step_cost(step) if step < self.phase1.n_steps else self.config.n_samples

    def config_dict(self) -> dict[str, Any]:
        return {"method": self.name, **asdict(self.config)}

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return self.phase1.state()

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.phase1.load_state(tensors, meta)

    def step(self, flow: Flow, target: CountedTarget, step: int, generator: torch.Generator) -> dict[str, Any]:
        """A reverse-KL block in phase 1, else one importance-weighted step at the ladder's next temperature."""
        if step < self.phase1.n_steps:
            return {"phase": "reverse_kl", **self.phase1.step(flow, target, step, generator)}
        cfg = self.config
        tau = self._taus[step - self.phase1.n_steps]
        buf = fill_buffer(flow, target, cfg.n_samples, generator, cfg.chunk)
        log_w = log_importance_weights(buf.u.double() / tau, buf.log_q.double())
        fit = fit_weighted(flow, buf.x, torch.softmax(log_w, 0).to(buf.x.dtype), cfg.fit, generator)
        at_tau = weight_summary(log_w.cpu())
        at_target = weight_summary(log_importance_weights(buf.u.double(), buf.log_q.double()).cpu())
        return {
            "phase": "anneal",
            "temperature_factor": tau,
            "buffer_ess_fraction": at_tau.ess_fraction,
            "target_ess_fraction": at_target.ess_fraction,
            "entropy": float(-buf.log_q.double().mean()),
            "n_nonfinite": buf.n_nonfinite,
            "nll_first": fit.nll_first,
            "nll_last": fit.nll_last,
            "fit_skipped": fit.n_skipped,
        }
