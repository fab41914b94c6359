"""The typed recipe of the ``cmt`` runner: one system, one flow, one energy budget, and the methods that share it.

Equal budgets are a property of the config, not of tuning: the recipe gives each method's per-step sizes and the
one ``budget`` of training energy evaluations, and the step counts are derived from it (:meth:`Config.methods_for`):

* CMT: ``budget // n_samples`` annealing steps of N samples each (paper 002 Alg. 1);
* reverse KL: ``budget // (iters * batch_size)`` blocks of Adam steps;
* TA-BG: the ladder's ``n_ladder + n_final`` importance-weighted steps of ``n_samples`` each, and the rest of the
  budget as reverse-KL blocks at the high temperature factor ``tau_high`` (notes §1.9);
* md-nll (the data-trained baseline, :mod:`boltzflow.training.md_nll`): ``md_nll.steps`` blocks of maximum
  likelihood on reference samples. Training energy evaluations: 0, so its step count is the recipe's and does not
  come from the budget; the samples it trains on are never the evaluation's
  (:func:`boltzflow.experiments.cmt_report.training_samples`).

A budget too small for one step of any listed method is a one-line error naming ``budget``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor

from boltzflow.experiments.stages import BGEvaluation, positive
from boltzflow.training.annealing import (
    AnnealingConfig,
    ReverseKLConfig,
    ReverseKLMethod,
    TemperatureAnnealing,
    geometric_ladder,
)
from boltzflow.training.cmt.anneal import CMT, CMTConfig
from boltzflow.training.cmt.harness import FitConfig
from boltzflow.training.md_nll import MDNLLConfig, MDNLLMethod

METHODS = ("cmt", "reverse-kl", "ta-bg", "md-nll")
FLOW_KINDS = ("realnvp", "spline", "ic_spline")


def _fit(steps: int = 200, batch_size: int = 1024, lr: float = 1e-3) -> FitConfig:
    return FitConfig(steps=steps, batch_size=batch_size, lr=lr)


def _check_fit(fit: FitConfig) -> None:
    positive(fit, "steps", "batch_size", "lr", "clip_norm")


@dataclass
class CMTFlow:
    """The flow every method trains, from the same initial weights.

    Attributes:
        kind: "realnvp" (on the system's flat coordinates, de-standardised by the system's definition, see
            :func:`boltzflow.experiments.baselines.prior_affine`), "spline" (the same with rational-quadratic
            spline couplings, :mod:`boltzflow.flows.spline_coupling`) or "ic_spline" (molecules: the internal-
            coordinate spline flow, centred on the PDB structure, no data).
        n_layers: coupling layers (blocks for ic_spline).
        hidden: conditioner hidden widths.
        bins: spline bins (spline, ic_spline).
        prior: ic_spline's statistics. "pdb": bonds and angles centred on the PDB structure with ``bond_std``
            and ``angle_std``, every torsion uniform (TA-BG's prior); "scan": from one-dimensional energy scans of
            the PDB structure (:func:`boltzflow.systems.scan_prior.scan_statistics`; its energy evaluations are
            reported, and are the same for every method).
        bond_std: initial spread of the bonds, nm (prior "pdb").
        angle_std: initial spread of the angles, rad (prior "pdb").
        scan_temperature_factor: the scan profiles' temperature over the target's (prior "scan"; 4 = 1200 K).
        wide_spread: a torsion whose scan profile spreads more than this (rad) is uniform (prior "scan").
        wide_backbone: every backbone φ and ψ is uniform whatever its scan says (prior "scan").
    """

    kind: str = "realnvp"
    n_layers: int = 8
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    bins: int = 8
    prior: str = "pdb"
    bond_std: float = 0.005
    angle_std: float = 0.08
    scan_temperature_factor: float = 4.0
    wide_spread: float = 1.0
    wide_backbone: bool = True

    def __post_init__(self) -> None:
        if self.kind not in FLOW_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FLOW_KINDS)}, got {self.kind!r}")
        if self.prior not in ("pdb", "scan"):
            raise ValueError(f"flow.prior must be \"pdb\" or \"scan\", got {self.prior!r}")
        positive(self, "n_layers", "bins", "bond_std", "angle_std", "scan_temperature_factor", "wide_spread")
        if not isinstance(self.wide_backbone, bool):
            raise ValueError(f"flow.wide_backbone must be true or false, got {self.wide_backbone!r}")
        if not self.hidden or any(isinstance(h, bool) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {self.hidden}")


@dataclass
class CMTSettings:
    """CMT's per-step sizes (notes §1.4-1.5); the step count comes from the budget.

    Attributes:
        n_samples: buffer size N per annealing step (target evaluations per step).
        eps_tr: trust-region radius ε_tr, nats.
        eps_ent: entropy decay per step ε_ent, nats (None: trust region only).
        fit: the weighted-NLL inner loop (fixed Adam steps per annealing step).
        chunk: samples per forward pass.
    """

    n_samples: int = 10_000
    eps_tr: float = 0.3
    eps_ent: float | None = 0.5
    fit: FitConfig = field(default_factory=_fit)
    chunk: int = 4096

    def __post_init__(self) -> None:
        positive(self, "n_samples", "eps_tr", "eps_ent", "chunk")
        _check_fit(self.fit)


@dataclass
class ReverseKLSettings:
    """Reverse KL in blocks of ``iters`` Adam steps of ``batch_size`` samples (one block = one logged step)."""

    iters: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    clip_norm: float = 100.0

    def __post_init__(self) -> None:
        positive(self, "iters", "batch_size", "lr", "clip_norm")

    def config(self, n_blocks: int, temperature_factor: float = 1.0) -> ReverseKLConfig:
        return ReverseKLConfig(n_blocks, self.iters, self.batch_size, self.lr, temperature_factor, self.clip_norm)


@dataclass
class TABGSettings:
    """TA-BG-style temperature annealing (notes §1.9): reverse KL at τ_high, then a geometric ladder to τ = 1.

    Attributes:
        tau_high: temperature factor T_high / T of phase 1 (TA-BG: 1200 K / 300 K = 4).
        n_ladder: importance-weighted steps down the geometric ladder.
        n_final: extra importance-weighted steps at τ = 1.
        n_samples: buffer per importance-weighted step.
        fit: the weighted-NLL inner loop (the same as CMT's).
        reverse_kl: phase 1's blocks (their number is what the ladder leaves of the budget).
    """

    tau_high: float = 4.0
    n_ladder: int = 9
    n_final: int = 1
    n_samples: int = 10_000
    fit: FitConfig = field(default_factory=_fit)
    reverse_kl: ReverseKLSettings = field(default_factory=ReverseKLSettings)

    def __post_init__(self) -> None:
        positive(self, "tau_high", "n_ladder", "n_samples")
        positive(self, "n_final", allow_zero=True)
        if not self.tau_high > 1:
            raise ValueError(f"tau_high must be > 1, got {self.tau_high}")
        _check_fit(self.fit)


@dataclass
class MDNLLSettings:
    """The data-trained baseline: maximum likelihood on reference samples (training energy evaluations: 0).

    Attributes:
        steps: harness steps (blocks of ``iters`` Adam steps); not derived from the energy budget.
        iters: Adam steps per block.
        batch_size: samples per Adam step, drawn uniformly with replacement from the training set.
        lr: Adam learning rate.
        clip_norm: gradient-norm clip.
        n_train: fresh exact samples to train on when ``evaluation.reference`` is "exact" (drawn with a generator
            distinct from the evaluation's); a trajectory reference trains on all its frames that are not
            evaluation frames, and this is ignored.
    """

    steps: int = 10
    iters: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    clip_norm: float = 100.0
    n_train: int = 100_000

    def __post_init__(self) -> None:
        positive(self, "steps", "iters", "batch_size", "lr", "clip_norm", "n_train")

    def config(self) -> MDNLLConfig:
        return MDNLLConfig(self.steps, self.iters, self.batch_size, self.lr, self.clip_norm)


@dataclass
class CMTEvaluation(BGEvaluation):
    """How each trained flow is scored: :class:`~boltzflow.experiments.stages.BGEvaluation` (``n_samples`` per
    draw, the first saved as samples/<method>.npz; ``n_draws``; ``mh_steps``, 1 here, as the table reports no
    Metropolis-Hastings; ``clip_fraction``; ``chunk_size``; ``model_metrics_n``) with CMT's defaults, plus:

    Attributes:
        curve_points: about how many points of the ESS-vs-evaluations curve per method.
        curve_samples: fresh flow samples per curve point (uncounted energy).
        reference: the system's sample reference for EUBO, NLL and Ramachandran TV ("exact" or e.g. "md").
        n_reference: reference samples used (evenly spaced frames of a trajectory reference).
        umbrella: the system's free-energy reference for the αL population (molecules; absent: skipped).
    """

    n_samples: int = 20_000
    mh_steps: int = 1
    curve_points: int = 10
    curve_samples: int = 2000
    reference: str = "exact"
    n_reference: int = 10_000
    umbrella: str = "umbrella"

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "curve_points", "curve_samples", "n_reference")
        if self.curve_samples < 2 or self.n_samples < 2:
            raise ValueError("n_samples and curve_samples must be >= 2")


@dataclass
class Config:
    """The recipe of runner ``cmt`` (module docstring).

    Attributes:
        system: registry name (``boltzflow systems``).
        methods: which of "cmt", "reverse-kl", "ta-bg", "md-nll" to run, in order, each from the same initial flow.
        budget: training energy evaluations per method (md-nll uses none).
        energy_cap: lin-log cut of training energies above this many kT (Theorem-1 regulariser).
        flow, cmt, reverse_kl, ta_bg, md_nll, evaluation: the tables above.
    """

    system: str = "gmm40"
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    budget: int = 2_000_000
    energy_cap: float = 1e4
    flow: CMTFlow = field(default_factory=CMTFlow)
    cmt: CMTSettings = field(default_factory=CMTSettings)
    reverse_kl: ReverseKLSettings = field(default_factory=ReverseKLSettings)
    ta_bg: TABGSettings = field(default_factory=TABGSettings)
    md_nll: MDNLLSettings = field(default_factory=MDNLLSettings)
    evaluation: CMTEvaluation = field(default_factory=CMTEvaluation)

    def __post_init__(self) -> None:
        positive(self, "budget", "energy_cap")
        bad = [m for m in self.methods if m not in METHODS]
        if not self.methods or bad or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be distinct names from {', '.join(METHODS)}, got {self.methods}")
        self.methods_for()

    def methods_for(self, train_x: Tensor | None = None, train_source: str = "") -> dict[str, object]:
        """The listed methods, sized to ``budget`` (module docstring).

        Args:
            train_x: md-nll's training samples, shape (n, D) (None: md-nll is sized but cannot be stepped).
            train_source: their description, stored with md-nll's checkpoints.

        Raises:
            ValueError: the budget does not pay for one step of a method.
        """
        out: dict[str, object] = {}
        c, r, t = self.cmt, self.reverse_kl, self.ta_bg
        n_anneal = t.n_ladder + t.n_final
        sizes = {"cmt": self.budget // c.n_samples, "reverse-kl": self.budget // (r.iters * r.batch_size),
                 "ta-bg": (self.budget - n_anneal * t.n_samples) // (t.reverse_kl.iters * t.reverse_kl.batch_size),
                 "md-nll": self.md_nll.steps}
        for name in self.methods:
            if sizes[name] < 1:
                raise ValueError(f"budget {self.budget} pays for no {name} step; raise budget or lower that "
                                 "method's sizes")
        if "cmt" in self.methods:
            out["cmt"] = CMT(CMTConfig(sizes["cmt"], c.n_samples, c.eps_tr, c.eps_ent, c.fit, c.chunk))
        if "reverse-kl" in self.methods:
            out["reverse-kl"] = ReverseKLMethod(r.config(sizes["reverse-kl"]))
        if "ta-bg" in self.methods:
            ladder = geometric_ladder(t.tau_high, t.n_ladder)
            out["ta-bg"] = TemperatureAnnealing(AnnealingConfig(t.reverse_kl.config(sizes["ta-bg"], t.tau_high),
                                                                ladder, t.n_final, t.n_samples, t.fit))
        if "md-nll" in self.methods:
            out["md-nll"] = MDNLLMethod(self.md_nll.config(), train_x, train_source)
        return out


def eval_every(n_steps: int, points: int) -> int:
    """Steps between curve evaluations for about ``points`` points (the last step is always evaluated)."""
    return max(1, math.ceil(n_steps / points))
