"""Paper 001 §6.1: the two-particle Coulomb system, Table 1 and Figures 1–2.

Four rows: a RealNVP trained on singular data (ε = 1e-8) and on soft-core data with ε ∈ {0.03, 0.1, 0.5}; every
row is compared with the singular reference, with the noise floor of each W2 beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.energies.two_particle import pair_distance, two_particle_quadrature
from boltzflow.eval.dynamics import count_switches, fit_latent_ou, multirate_ou_walk
from boltzflow.eval.evaluate import Draw, evaluate
from boltzflow.eval.lipschitz import ball_supremum, bi_lipschitz, gaussian_ball_radius
from boltzflow.eval.wasserstein import w2_with_floor
from boltzflow.experiments.runner import (
    RealNVPFlow,
    RunContext,
    Stage,
    check_device,
    finish,
    positive,
    seeded,
    start,
    train_stages,
)
from boltzflow.experiments.two_particle_report import figures, table1_markdown
from boltzflow.flows.realnvp import n_parameters
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.io import load_npz, save_npz, save_text
from boltzflow.samplers.langevin import overdamped_langevin
from boltzflow.systems.registry import get_system
from boltzflow.systems.two_particle import observables

LIP_BALL_MASS = 0.999  # the latent ball of the "sup over the ball" Lipschitz estimate holds this base mass

@dataclass
class Case:
    """One row of Table 1: the training data's soft-core ε (the first case is the singular reference)."""

    name: str = "unregularised"
    softcore_eps: float = 1e-8

    def __post_init__(self) -> None:
        positive(self, "softcore_eps", allow_zero=True)


@dataclass
class TwoParticleTarget:
    """The system (registry name) and its parameters."""

    name: str = "two-particle"
    lam: float = 0.7
    beta: float = 5.0

    def __post_init__(self) -> None:
        positive(self, "lam", allow_zero=True)
        positive(self, "beta")

    def system(self, softcore_eps: float) -> Any:
        return get_system({"name": self.name, "lam": self.lam, "beta": self.beta, "softcore_eps": softcore_eps})


@dataclass
class McmcData:
    """Reference data by Metropolis: sizes of the singular and the soft-core sets, chains, burn-in, thinning."""

    n_singular: int = 12_000
    n_regularised: int = 10_000
    mcmc_chains: int = 2000
    mcmc_burn_in: int = 20_000
    mcmc_thin: int = 100

    def __post_init__(self) -> None:
        positive(self, "n_singular", "n_regularised", "mcmc_chains", "mcmc_burn_in", "mcmc_thin")


@dataclass
class TableEvaluation:
    """Samples per model, W2 subsampling, Lipschitz points, and the Langevin dynamics comparison (Fig. 2)."""

    n_gen: int = 10_000
    w2_n: int = 1000
    w2_draws: int = 5
    n_lipschitz: int = 10_000
    langevin_chains: int = 64
    langevin_time: float = 1000.0
    langevin_dt: float = 5e-3
    frame_interval: float = 0.1

    def __post_init__(self) -> None:
        positive(self, "n_gen", "w2_n", "w2_draws", "n_lipschitz", "langevin_chains", "langevin_time",
                 "langevin_dt", "frame_interval")


def _default_cases() -> list[Case]:
    return [Case("unregularised", 1e-8), Case("eps0.03", 0.03), Case("eps0.1", 0.1), Case("eps0.5", 0.5)]


@dataclass
class Config:
    """The recipe ``two-particle`` (``recipes/two-particle.toml``).

    Attributes:
        system: the target.
        cases: the rows; the first is the singular reference every row is compared with.
        only_case: make the data and train the flow of this row only (rows as parallel processes); then run
            again without it to evaluate all rows.
        data: Metropolis reference data.
        flow: the RealNVP (dimension from the system).
        stages: training of every row's flow (seed offset + the row's index).
        evaluation: metric sizes.
    """

    system: TwoParticleTarget = field(default_factory=TwoParticleTarget)
    cases: list[Case] = field(default_factory=_default_cases)
    only_case: str | None = None
    data: McmcData = field(default_factory=McmcData)
    flow: RealNVPFlow = field(default_factory=RealNVPFlow)
    stages: list[Stage] = field(default_factory=lambda: [Stage(name="nll", epochs=400, lr=5e-4)])
    evaluation: TableEvaluation = field(default_factory=TableEvaluation)

    def __post_init__(self) -> None:
        names = [c.name for c in self.cases]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"cases must have distinct names, got {names}")
        if self.only_case is not None and self.only_case not in names:
            raise ValueError(f"only_case {self.only_case!r} is not a case; cases: {', '.join(names)}")
        if not self.stages:
            raise ValueError("stages must hold at least one stage")


CASES: list[tuple[str, float]] = [(c.name, c.softcore_eps) for c in _default_cases()]


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | None = None,
        recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the rows of Table 1 and the dynamics comparison; write results.json, table1.md and figures.

    With ``config.only_case`` just that row's reference data and flow are made (checkpointed), so the rows can
    train as parallel processes; a later call without it reuses them and evaluates everything.
    """
    check_device(device, "two-particle")
    cfg = config
    ctx = start(out, seed=seed, progress=progress, force=force, command=command)
    cases = [(c.name, c.softcore_eps) for c in cfg.cases]
    if cfg.only_case is not None:
        i = [name for name, _ in cases].index(cfg.only_case)
        system = cfg.system.system(cases[i][1])
        x_real = _reference(ctx.out, cfg.only_case, system, _n_ref(cfg, i), seed + 1000 * i, cfg, progress)
        _train(ctx, cfg.only_case, system, x_real, cfg, seed + i)
        return {"message": f"trained case {cfg.only_case} in {ctx.out}"}
    quad = {name: two_particle_quadrature(cfg.system.lam, cfg.system.beta, eps if eps > 1e-6 else 0.0)
            for name, eps in cases}
    first = cases[0][0]
    singular = None
    rows, flows, data = [], {}, {}
    for i, (name, eps) in enumerate(cases):
        system = cfg.system.system(eps)
        x_real = _reference(ctx.out, name, system, _n_ref(cfg, i), seed + 1000 * i, cfg, progress)
        singular = x_real if singular is None else singular
        flow, fit_result = _train(ctx, name, system, x_real, cfg, seed + i)
        x_gen, log_q = _sample(flow, cfg.evaluation.n_gen, seed + 10 + i)
        save_npz(ctx.out / "samples" / f"{name}_gen.npz", x=x_gen.astype(np.float32))
        rows.append(_row(name, eps, flow, x_real, x_gen, singular, quad[name], quad[first], cfg.evaluation, seed,
                         fit_result))
        rows[-1]["evaluation"] = _evaluation(system, x_gen, log_q, x_real)
        flows[name], data[name] = flow, (x_real, x_gen)
    dyn = _dynamics(flows[first], cfg.system.system(0.0), singular, cfg.evaluation, seed)
    results = {
        "rows": rows,
        "switches_real": dyn["switches_real"],
        "switches_gen": dyn["switches_gen"],
        "dynamics": {k: v for k, v in dyn.items() if not k.startswith("traj")},
        "quadrature": {k: v._asdict() for k, v in quad.items()},
    }
    figures(ctx.out, data, dyn, first)
    results = finish(ctx, results, cfg, recipe)
    save_text(ctx.out / "table1.md", table1_markdown(results))
    return results


def _n_ref(cfg: Config, i: int) -> int:
    return cfg.data.n_singular if i == 0 else cfg.data.n_regularised


def _reference(out: Path, name: str, system: Any, n: int, seed: int, cfg: Config, progress: bool) -> np.ndarray:
    path = out / "samples" / f"{name}_real.npz"
    if path.exists():  # resumed run: reuse the data the checkpoint was trained on
        return load_npz(path, ["x"])["x"].astype(np.float64)
    d = cfg.data
    x, acceptance = system.reference_samples(n, seed=seed, n_chains=d.mcmc_chains, burn_in=d.mcmc_burn_in,
                                             thin=d.mcmc_thin, progress=progress)
    save_npz(path, x=x, acceptance=acceptance)
    return x


def _train(ctx: RunContext, name: str, system: Any, x: np.ndarray, cfg: Config, seed: int):
    """The row's flow through the recipe's stages (generators from ``seed`` + the stage's offset)."""
    spec = realnvp_spec(cfg.flow.config(system.dim))
    flow = seeded(lambda: build_flow(spec).float(), seed)  # float32 training whatever torch's default dtype is
    extra = {"flow_spec": spec, "system": {"name": system.name, **system.params()}}
    stages = train_stages(ctx._replace(seed=seed), flow, cfg.stages, torch.as_tensor(x, dtype=torch.float32),
                          system.flat_energy(), system.dim, extra, prefix=f"{name}_")
    return flow.eval(), stages[-1]


@torch.no_grad()
def _sample(flow, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` flow samples (n, D) and their log q (n,), float64."""
    gen = torch.Generator().manual_seed(seed)
    s = flow.sample(n, gen)
    return s.x.double().numpy(), s.log_prob.double().numpy()


def _evaluation(system: Any, x_gen: np.ndarray, log_q: np.ndarray, x_real: np.ndarray, n_draws: int = 4) -> dict:
    """The standard metric set of the row's samples, reweighted to the row's energy (ESS over ``n_draws`` parts)."""
    x = torch.as_tensor(x_gen, dtype=torch.float64)
    u = system.flat_energy()(x).double()
    log_w = -u - torch.as_tensor(log_q, dtype=torch.float64)
    draws = [Draw(*part) for part in zip(x.tensor_split(n_draws), log_w.tensor_split(n_draws),
                                         u.tensor_split(n_draws), strict=True)]
    return evaluate(system, draws, reference_x=torch.as_tensor(x_real, dtype=torch.float64))


def _row(name, eps, flow, x_real, x_gen, singular, quad, quad_sing, sc: TableEvaluation, seed,
         fit: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    r = lambda a: pair_distance(torch.as_tensor(a)).numpy()  # noqa: E731
    w2r = w2_with_floor(r(singular), r(x_gen), n=sc.w2_n, draws=sc.w2_draws, generator=rng)
    w2x = w2_with_floor(singular, x_gen, n=sc.w2_n, draws=sc.w2_draws, generator=rng)
    w2r_train = w2_with_floor(r(x_real), r(x_gen), n=sc.w2_n, draws=sc.w2_draws, generator=rng)
    dim = x_gen.shape[1]
    z = torch.randn(sc.n_lipschitz, dim, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float32)
    fmap = lambda v: flow.transform.forward(v)[0]  # noqa: E731
    fwd, inv = bi_lipschitz(fmap, z)
    radius = gaussian_ball_radius(dim, LIP_BALL_MASS)
    ball, ball_inv = (ball_supremum(fmap, z, radius, inverse=i) for i in (False, True))
    real, gen = observables(x_real), observables(x_gen)
    return {
        "case": name, "eps": eps, "n_params": n_parameters(flow),
        "min_r_real": real["min_r"], "mean_r_real": real["mean_r"],
        "min_r_gen": gen["min_r"], "mean_r_gen": gen["mean_r"],
        "mean_r_quadrature": quad.mean_r, "mean_r_quadrature_singular": quad_sing.mean_r,
        "w2_r": w2r["w2"], "w2_r_sd": w2r["w2_sd"], "w2_r_floor": w2r["w2_floor"], "w2_r_floor_sd": w2r["w2_floor_sd"],
        "w2_x": w2x["w2"], "w2_x_sd": w2x["w2_sd"], "w2_x_floor": w2x["w2_floor"], "w2_x_floor_sd": w2x["w2_floor_sd"],
        "w2_r_train": w2r_train["w2"], "w2_r_train_floor": w2r_train["w2_floor"],
        "collision_fraction_real": real["collision_fraction"], "collision_fraction_gen": gen["collision_fraction"],
        "lip": fwd.max, "lip_q999": fwd.quantile, "lip_inverse": inv.max, "lip_inverse_q999": inv.quantile,
        "lip_ball": ball.value, "lip_inverse_ball": ball_inv.value, "lip_ball_radius": radius,
        "lip_ball_mass": LIP_BALL_MASS,
        "n_real": len(x_real), "n_gen": len(x_gen), "w2_subsample": sc.w2_n, "w2_draws": sc.w2_draws,
        "best_epoch": fit["best_epoch"], "best_val_nll": fit["best_val"], "skipped_steps": fit["skipped"],
        "train_seconds": fit["seconds"],
    }


@torch.no_grad()
def _dynamics(flow, system: Any, x_eq: np.ndarray, sc: TableEvaluation, seed: int) -> dict[str, Any]:
    """Fig. 2: overdamped Langevin x1(t) vs the flow pushed along a latent OU walk calibrated on the real one.

    The Langevin chains start from equilibrium samples ``x_eq`` (n, D).
    """
    gen = torch.Generator().manual_seed(seed + 99)
    energy = system.energy().double()
    x0 = torch.as_tensor(x_eq[: sc.langevin_chains], dtype=torch.float64)
    dim = x0.shape[1]
    save_every = max(1, round(sc.frame_interval / sc.langevin_dt))
    n_steps = int(round(sc.langevin_time / sc.langevin_dt))
    with torch.enable_grad():
        traj = overdamped_langevin(energy, x0, n_steps=n_steps, dt=sc.langevin_dt, diffusion=1.0 / system.beta,
                                   save_every=save_every, generator=gen)  # (frames, chains, D)
    traj = traj.numpy()
    frames, chains = traj.shape[:2]
    z_real = flow.transform.inverse(torch.as_tensor(traj.reshape(-1, dim), dtype=torch.float32))[0]
    z_real = z_real.reshape(frames, chains, dim).double().numpy()
    total_time = frames * sc.frame_interval * chains
    sw_real = sum(count_switches(traj[:, c, 0]) for c in range(chains))
    out: dict[str, Any] = {"switches_real": sw_real / total_time, "switch_counts_real": int(sw_real),
                           "total_time": total_time, "frame_interval": sc.frame_interval, "dt": sc.langevin_dt,
                           "chains": chains, "traj_real": traj[:, 0]}
    for method in ("integrated", "lag1"):
        ou = fit_latent_ou(z_real, method=method, max_lag=max(frames // 5, 1))
        walks = np.stack([multirate_ou_walk(frames, ou, gen).numpy() for _ in range(chains)], axis=1)
        x_gen = flow.transform.forward(torch.as_tensor(walks.reshape(-1, dim), dtype=torch.float32))[0]
        x_gen = x_gen.double().numpy().reshape(frames, chains, dim)
        sw_gen = sum(count_switches(x_gen[:, c, 0]) for c in range(chains))
        suffix = "" if method == "integrated" else "_lag1"
        out[f"switches_gen{suffix}"] = sw_gen / total_time
        out[f"switch_counts_gen{suffix}"] = int(sw_gen)
        out[f"latent_rho{suffix}"] = [float(v) for v in ou.rho]
        if method == "integrated":
            out["traj_gen"] = x_gen[:, 0]
    return out
