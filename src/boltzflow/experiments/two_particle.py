"""Paper 001 §6.1: the two-particle Coulomb system, Table 1 and Figures 1–2.

Four rows: a RealNVP trained on singular data (ε = 1e-8) and on soft-core data with ε ∈ {0.03, 0.1, 0.5}; every
row is compared with the singular reference, with the noise floor of each W2 beside it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.energies.two_particle import pair_distance, two_particle_quadrature
from boltzflow.eval.dynamics import count_switches, fit_latent_ou, multirate_ou_walk
from boltzflow.eval.lipschitz import ball_supremum, bi_lipschitz, gaussian_ball_radius
from boltzflow.eval.wasserstein import w2_with_floor
from boltzflow.experiments.common import fmt, prepare_out_dir, provenance
from boltzflow.flows.realnvp import RealNVPConfig, n_parameters
from boltzflow.flows.spec import build_flow, realnvp_spec
from boltzflow.io import load_npz, save_json, save_npz, save_text
from boltzflow.samplers.langevin import overdamped_langevin
from boltzflow.systems.two_particle import TwoParticleSystem, observables
from boltzflow.training.config import TrainConfig
from boltzflow.training.loop import fit
from boltzflow.training.losses import nll

LIP_BALL_MASS = 0.999  # the latent ball of the "sup over the ball" Lipschitz estimate holds this base mass
CASES: list[tuple[str, float]] = [("unregularised", 1e-8), ("eps0.03", 0.03), ("eps0.1", 0.1), ("eps0.5", 0.5)]

# Paper 001 Table 1: min r real, mean r real, min r gen, mean r gen, W2(sing, gen), Lip.
PAPER_TABLE1 = {
    "unregularised": (0.401, 2.005, 0.077, 1.998, 0.017, 87.6643),
    "eps0.03": (0.475, 1.996, 0.148, 1.986, 0.023, 59.1671),
    "eps0.1": (0.379, 1.991, 0.180, 1.969, 0.047, 51.1226),
    "eps0.5": (0.084, 1.998, 0.155, 2.005, 0.016, 25.2612),
}


@dataclass
class TwoParticleScale:
    """Sizes of one reproduction run (``full`` = the paper's, ``quick`` = the demo's)."""

    n_ref_singular: int = 12_000
    n_ref_regularised: int = 10_000
    n_gen: int = 10_000
    flow: RealNVPConfig = field(default_factory=lambda: RealNVPConfig(dim=4, n_layers=8, hidden=[256, 256]))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=400, batch_size=256, lr=5e-4))
    mcmc_chains: int = 2000
    mcmc_burn_in: int = 20_000
    mcmc_thin: int = 100
    w2_n: int = 1000
    w2_draws: int = 5
    n_lipschitz: int = 10_000
    langevin_chains: int = 64
    langevin_time: float = 1000.0
    langevin_dt: float = 5e-3
    frame_interval: float = 0.1


def scale(name: str) -> TwoParticleScale:
    if name == "full":
        return TwoParticleScale()
    if name == "quick":
        return TwoParticleScale(
            n_ref_singular=4000, n_ref_regularised=4000, n_gen=4000,
            flow=RealNVPConfig(dim=4, n_layers=8, hidden=[64, 64]),
            train=TrainConfig(epochs=40, batch_size=256, lr=2e-3),
            mcmc_chains=1000, mcmc_burn_in=10_000, mcmc_thin=50, w2_draws=5, n_lipschitz=10_000,
            langevin_chains=16, langevin_time=200.0,
        )
    raise ValueError(f"unknown scale {name!r}; use quick or full")


def run(out: str | Path, scale_name: str = "quick", seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, only_case: str | None = None) -> dict[str, Any]:
    """Run the four rows of Table 1 and the dynamics comparison; write results.json, table1.md and figures.

    With ``only_case`` just that row's reference data and flow are made (checkpointed), so the rows can train as
    parallel processes; a later call without it reuses them and evaluates everything.
    """
    started = time.time()
    sc = scale(scale_name)
    out = prepare_out_dir(out, force)
    if only_case is not None:
        names = [name for name, _ in CASES]
        if only_case not in names:
            raise ValueError(f"unknown case {only_case!r}; cases: {names}")
        i = names.index(only_case)
        system = TwoParticleSystem(softcore_eps=CASES[i][1])
        x_real = _reference(out, only_case, system, sc.n_ref_singular if i == 0 else sc.n_ref_regularised,
                            seed + 1000 * i, sc, progress)
        _train(out, only_case, system, x_real, sc, seed + i, progress)
        return {}
    quad = {name: two_particle_quadrature(softcore_eps=eps if eps > 1e-6 else 0.0) for name, eps in CASES}
    singular = None
    rows, flows, data = [], {}, {}
    for i, (name, eps) in enumerate(CASES):
        system = TwoParticleSystem(softcore_eps=eps)
        n_ref = sc.n_ref_singular if i == 0 else sc.n_ref_regularised
        x_real = _reference(out, name, system, n_ref, seed + 1000 * i, sc, progress)
        singular = x_real if singular is None else singular
        flow, fit_result = _train(out, name, system, x_real, sc, seed + i, progress)
        x_gen = _sample(flow, sc.n_gen, seed + 10 + i)
        save_npz(out / "samples" / f"{name}_gen.npz", x=x_gen.astype(np.float32))
        rows.append(_row(name, eps, flow, x_real, x_gen, singular, quad[name], quad["unregularised"], sc, seed,
                         fit_result))
        flows[name], data[name] = flow, (x_real, x_gen)
    dyn = _dynamics(flows["unregularised"], TwoParticleSystem(softcore_eps=0.0), singular, sc, seed)
    results = {
        "rows": rows,
        "switches_real": dyn["switches_real"],
        "switches_gen": dyn["switches_gen"],
        "dynamics": {k: v for k, v in dyn.items() if not k.startswith("traj")},
        "quadrature": {k: v._asdict() for k, v in quad.items()},
        "config": {"scale": scale_name, "seed": seed, **_jsonable(dataclasses.asdict(sc))},
        "provenance": provenance(command, started),
    }
    _figures(out, data, dyn)
    save_text(out / "table1.md", table1_markdown(results))
    save_json(out / "results.json", results)
    return results


def _reference(out: Path, name: str, system: TwoParticleSystem, n: int, seed: int, sc: TwoParticleScale,
               progress: bool) -> np.ndarray:
    path = out / "samples" / f"{name}_real.npz"
    if path.exists():  # resumed run: reuse the data the checkpoint was trained on
        return load_npz(path, ["x"])["x"].astype(np.float64)
    x, acceptance = system.reference_samples(n, seed=seed, n_chains=sc.mcmc_chains, burn_in=sc.mcmc_burn_in,
                                             thin=sc.mcmc_thin, progress=progress)
    save_npz(path, x=x, acceptance=acceptance)
    return x


def _train(out: Path, name: str, system: TwoParticleSystem, x: np.ndarray, sc: TwoParticleScale, seed: int,
           progress: bool):
    spec = realnvp_spec(sc.flow)
    torch.manual_seed(seed)
    flow = build_flow(spec).float()  # float32 training whatever torch's default dtype is
    cfg = dataclasses.replace(sc.train, seed=seed)
    extra = {"flow_spec": spec, "system": {"name": system.name, **system.params()}}
    result = fit(flow, nll, torch.as_tensor(x, dtype=torch.float32), cfg, out / "checkpoints" / f"{name}.pt",
                 extra=extra, progress=progress, desc=f"train {name}")
    return flow.eval(), result


@torch.no_grad()
def _sample(flow, n: int, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return flow.sample(n, gen).x.double().numpy()


def _row(name, eps, flow, x_real, x_gen, singular, quad, quad_sing, sc, seed, fit_result) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    r = lambda a: pair_distance(torch.as_tensor(a)).numpy()  # noqa: E731
    w2r = w2_with_floor(r(singular), r(x_gen), n=sc.w2_n, draws=sc.w2_draws, generator=rng)
    w2x = w2_with_floor(singular, x_gen, n=sc.w2_n, draws=sc.w2_draws, generator=rng)
    w2r_train = w2_with_floor(r(x_real), r(x_gen), n=sc.w2_n, draws=sc.w2_draws, generator=rng)
    z = torch.randn(sc.n_lipschitz, 4, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float32)
    fmap = lambda v: flow.transform.forward(v)[0]  # noqa: E731
    fwd, inv = bi_lipschitz(fmap, z)
    radius = gaussian_ball_radius(4, LIP_BALL_MASS)
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
        "best_epoch": fit_result.best_epoch, "best_val_nll": fit_result.best_val,
        "skipped_steps": fit_result.skipped_steps,
        "train_seconds": fit_result.train_seconds,
    }


@torch.no_grad()
def _dynamics(flow, system: TwoParticleSystem, x_eq: np.ndarray, sc: TwoParticleScale, seed: int) -> dict[str, Any]:
    """Fig. 2: overdamped Langevin x1(t) vs the flow pushed along a latent OU walk calibrated on the real one.

    The Langevin chains start from equilibrium samples ``x_eq`` (n, 4).
    """
    gen = torch.Generator().manual_seed(seed + 99)
    energy = system.energy().double()
    x0 = torch.as_tensor(x_eq[: sc.langevin_chains], dtype=torch.float64)
    save_every = max(1, round(sc.frame_interval / sc.langevin_dt))
    n_steps = int(round(sc.langevin_time / sc.langevin_dt))
    with torch.enable_grad():
        traj = overdamped_langevin(energy, x0, n_steps=n_steps, dt=sc.langevin_dt, diffusion=1.0 / system.beta,
                                   save_every=save_every, generator=gen)  # (frames, chains, 4)
    traj = traj.numpy()
    frames, chains = traj.shape[:2]
    z_real = flow.transform.inverse(torch.as_tensor(traj.reshape(-1, 4), dtype=torch.float32))[0]
    z_real = z_real.reshape(frames, chains, 4).double().numpy()
    total_time = frames * sc.frame_interval * chains
    sw_real = sum(count_switches(traj[:, c, 0]) for c in range(chains))
    out: dict[str, Any] = {"switches_real": sw_real / total_time, "switch_counts_real": int(sw_real),
                           "total_time": total_time, "frame_interval": sc.frame_interval, "dt": sc.langevin_dt,
                           "chains": chains, "traj_real": traj[:, 0]}
    for method in ("integrated", "lag1"):
        ou = fit_latent_ou(z_real, method=method, max_lag=max(frames // 5, 1))
        walks = np.stack([multirate_ou_walk(frames, ou, gen).numpy() for _ in range(chains)], axis=1)
        x_gen = flow.transform.forward(torch.as_tensor(walks.reshape(-1, 4), dtype=torch.float32))[0]
        x_gen = x_gen.double().numpy().reshape(frames, chains, 4)
        sw_gen = sum(count_switches(x_gen[:, c, 0]) for c in range(chains))
        suffix = "" if method == "integrated" else "_lag1"
        out[f"switches_gen{suffix}"] = sw_gen / total_time
        out[f"switch_counts_gen{suffix}"] = int(sw_gen)
        out[f"latent_rho{suffix}"] = [float(v) for v in ou.rho]
        if method == "integrated":
            out["traj_gen"] = x_gen[:, 0]
    return out


def _figures(out: Path, data: dict[str, tuple[np.ndarray, np.ndarray]], dyn: dict[str, Any]) -> None:
    from boltzflow import plots

    singular = data["unregularised"][0]
    r = lambda a: pair_distance(torch.as_tensor(a)).numpy()  # noqa: E731
    panels = [(name, r(singular), r(xr), r(xg)) for name, (xr, xg) in data.items()]
    plots.save(plots.distance_histograms(panels), out / "figures" / "fig1_distances.png")
    real_all, gen_all = data["unregularised"]
    fig = plots.dynamics(real_all, gen_all, dyn["traj_real"][:, 0], dyn["traj_gen"][:, 0], dyn["frame_interval"])
    plots.save(fig, out / "figures" / "fig2_dynamics.png")


def table1_markdown(results: dict[str, Any]) -> str:
    """Our Table 1 beside the paper's."""
    head = ("| case | min r real (paper) | mean r real (paper) | min r gen (paper) | mean r gen (paper) | mean r "
            "quadrature | W2 on r: gen vs singular ± sd [floor] (paper) | W2 on x ± sd [floor] | collision fraction "
            "gen (r < 0.3) | Lip max / 99.9 % (paper) | inverse Lip max / 99.9 % | Lip / inverse Lip, sup on the "
            "99.9 % latent ball |\n|" + "---|" * 12 + "\n")
    lines = []
    for row in results["rows"]:
        p = PAPER_TABLE1[row["case"]]
        lines.append(
            f"| {row['case']} | {fmt(row['min_r_real'])} ({p[0]}) | {fmt(row['mean_r_real'])} ({p[1]}) "
            f"| {fmt(row['min_r_gen'])} ({p[2]}) | {fmt(row['mean_r_gen'])} ({p[3]}) | {fmt(row['mean_r_quadrature'])} "
            f"| {fmt(row['w2_r'])} ± {fmt(row['w2_r_sd'])} [{fmt(row['w2_r_floor'])}] ({p[4]}) "
            f"| {fmt(row['w2_x'])} ± {fmt(row['w2_x_sd'])} [{fmt(row['w2_x_floor'])}] "
            f"| {fmt(row['collision_fraction_gen'])} | {fmt(row['lip'])} / {fmt(row['lip_q999'])} ({p[5]}) "
            f"| {fmt(row['lip_inverse'])} / {fmt(row['lip_inverse_q999'])} "
            f"| {fmt(row.get('lip_ball'))} / {fmt(row.get('lip_inverse_ball'))} |"
        )
    dyn = results["dynamics"]
    foot = (f"\nWell switches of x1 per unit time (total time {fmt(dyn['total_time'])} over {dyn['chains']} "
            f"trajectories, frames every {dyn['frame_interval']}): real overdamped Langevin "
            f"{fmt(results['switches_real'])} ({dyn['switch_counts_real']} switches); flow along a latent OU walk "
            f"calibrated on the latent image of the real trajectories by integrated autocorrelation times "
            f"{fmt(results['switches_gen'])} ({dyn['switch_counts_gen']} switches; per-direction lag-1 ρ "
            f"{', '.join(fmt(v, 4) for v in dyn['latent_rho'])}); by lag-1 correlations only "
            f"{fmt(dyn['switches_gen_lag1'])} ({dyn['switch_counts_gen_lag1']} switches; ρ "
            f"{', '.join(fmt(v, 4) for v in dyn['latent_rho_lag1'])}).\n"
            "W2 values are means over independent 1,000-point subsample draws; the floor in brackets is the same W2 "
            "between two disjoint subsamples of the singular reference.\n")
    return "# Two-particle Coulomb system (paper 001 Table 1)\n\n" + head + "\n".join(lines) + "\n" + foot


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj
