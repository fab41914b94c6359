"""The recipe of the Cartesian alanine reproduction (paper 001 §6.3): its typed tables and the resolved sizes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from boltzflow.experiments.cartesian_training import TRAINED
from boltzflow.experiments.stages import RealNVPFlow, Stage, positive
from boltzflow.flows.realnvp import RealNVPConfig
from boltzflow.training.config import TrainConfig


@dataclass
class CartesianScale:
    """The resolved sizes the training and scoring code reads (built from :class:`Config` by :meth:`Config.sizes`)."""

    n_frames: int | None = None  # MD frames used (random subset; None = all)
    n_gen: int = 10_000
    flow: RealNVPConfig | None = None  # the dimension comes from the system
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=200, batch_size=256, lr=5e-4, checkpoint_every=1)
    )
    lam: float = 5.0
    eps_nm: float = 0.17
    anneal_zero_fraction: float = 0.5  # λ reaches 0 after this share of the epochs
    smooth_lam: float = 1.0
    smooth_width_nm: float = 0.01
    reject_r_min_nm: float = 0.15
    w2_n: int = 2000
    w2_draws: int = 5
    models: tuple[str, ...] = TRAINED


@dataclass
class CartesianData:
    """MD frames: a packed ``.npz`` or a ``boltzflow simulate`` run folder (None: the shipped set)."""

    path: str | None = None
    n_frames: int | None = None

    def __post_init__(self) -> None:
        positive(self, "n_frames")


@dataclass
class Penalties:
    """The collision penalty of eq. (17) and its remedies (nm, dimensionless weights)."""

    lam: float = 5.0
    eps_nm: float = 0.17
    anneal_zero_fraction: float = 0.5
    smooth_lam: float = 1.0
    smooth_width_nm: float = 0.01
    reject_r_min_nm: float = 0.15

    def __post_init__(self) -> None:
        positive(self, "lam", "smooth_lam", allow_zero=True)
        positive(self, "eps_nm", "anneal_zero_fraction", "smooth_width_nm", "reject_r_min_nm")


@dataclass
class CartesianEvaluation:
    """Samples per row and the PCA W2 subsampling."""

    n_gen: int = 10_000
    w2_n: int = 2000
    w2_draws: int = 5

    def __post_init__(self) -> None:
        positive(self, "n_gen", "w2_n", "w2_draws")


@dataclass
class Config:
    """The recipe ``alanine-cartesian`` (``recipes/alanine-cartesian.toml``).

    Attributes:
        system: registry name (the molecule whose Cartesian coordinates are modelled).
        data: the MD frames.
        flow: the RealNVP (dimension from the system).
        stages: one stage, the NLL schedule every model shares (each model adds its penalty).
        penalties: eq. (17) and the remedies.
        evaluation: sizes of the scoring.
        models: subset of nll, penalty, anneal, smooth, penalty_sum (nll_reject comes with nll).
        train_only: train and checkpoint the models, score nothing (models as parallel processes into one
            folder, then once more without it to score).
        deadline_minutes: start no training epoch later than this after the start (0: train nothing new, score
            the checkpoints); None: no deadline.
    """

    system: str = "alanine-dipeptide"
    data: CartesianData = field(default_factory=CartesianData)
    flow: RealNVPFlow = field(default_factory=lambda: RealNVPFlow(n_layers=12, hidden=[512, 512]))
    stages: list[Stage] = field(default_factory=lambda: [Stage(name="train", epochs=200, lr=5e-4)])
    penalties: Penalties = field(default_factory=Penalties)
    evaluation: CartesianEvaluation = field(default_factory=CartesianEvaluation)
    models: list[str] = field(default_factory=lambda: list(TRAINED))
    train_only: bool = False
    deadline_minutes: float | None = None

    def __post_init__(self) -> None:
        if len(self.stages) != 1 or self.stages[0].loss != "nll":
            raise ValueError("stages must hold exactly one stage with loss = \"nll\" (the models add their penalties)")
        unknown = sorted(set(self.models) - set(TRAINED))
        if not self.models or unknown:
            raise ValueError(f"models must be a non-empty subset of {', '.join(TRAINED)}; got {self.models}")
        positive(self, "deadline_minutes", allow_zero=True)

    def sizes(self, dim: int) -> CartesianScale:
        """The resolved sizes for a system of ``dim`` coordinates."""
        st = self.stages[0]
        train = TrainConfig(**{f.name: getattr(st, f.name) for f in dataclasses.fields(TrainConfig)})
        return CartesianScale(n_frames=self.data.n_frames, n_gen=self.evaluation.n_gen, flow=self.flow.config(dim),
                              train=train, **dataclasses.asdict(self.penalties), w2_n=self.evaluation.w2_n,
                              w2_draws=self.evaluation.w2_draws, models=tuple(self.models))
