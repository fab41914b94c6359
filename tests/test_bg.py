"""Boltzmann-generator mode: mixed objectives, exact reweighting, data handling and the two experiments."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzflow.eval.weights import reweight
from boltzflow.flows.base import StandardNormal
from boltzflow.flows.core import Affine
from boltzflow.flows.flow import Flow
from boltzflow.io import load_npz
from boltzflow.training.energy_fit import bg_samples, mixed_objective, pack_forces
from boltzflow.training.losses import force_matching, importance_weighted_nll, nll, reverse_kl


def gaussian_flow(loc, scale) -> Flow:
    return Flow(StandardNormal(len(loc)), Affine(torch.as_tensor(loc), torch.as_tensor(scale)))


def gaussian_u(x, m=1.0, s=0.5):
    return (((x - m) / s) ** 2).sum(-1) / 2


def test_reweighting_a_wrong_flow_recovers_the_target_mean():
    flow = gaussian_flow([0.0, 0.0], [1.0, 1.0])  # q = N(0, I), target N(1, 0.25 I)
    s = bg_samples(flow, gaussian_u, 40_000, torch.Generator().manual_seed(0), chunk_size=7000)
    assert s.x.shape == (40_000, 2) and not s.x.requires_grad
    torch.testing.assert_close(s.log_w, -gaussian_u(s.x) - flow.log_prob(s.x))
    est = reweight(s.x, s.log_w)
    assert (est.mean - 1.0).abs().max() < 4 * est.stderr.max()
    assert float(s.x.mean(0).abs().max()) < 0.05  # unweighted, the samples sit at the flow's mean


def test_mixed_objective_is_the_weighted_sum():
    flow = gaussian_flow([0.3, -0.2], [0.8, 1.1])
    x = torch.randn(64, 2)
    f = -(x - 1.0) / 0.25
    loss = mixed_objective(gaussian_u, 0.5, 0.25, 0.25, kl_batch=50, dim=2)
    torch.manual_seed(7)
    value = loss(flow, pack_forces(x, f))
    torch.manual_seed(7)
    kl = reverse_kl(flow, gaussian_u, 50)
    expected = 0.5 * nll(flow, x) + 0.25 * kl + 0.25 * force_matching(flow, x, f)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(mixed_objective(None, 1.0)(flow, x), nll(flow, x))
    with_iw = mixed_objective(gaussian_u, 0.5, 0.0, iw_weight=0.5, kl_batch=50)
    torch.manual_seed(8)
    value = with_iw(flow, x)
    torch.manual_seed(8)
    torch.testing.assert_close(value, 0.5 * nll(flow, x) + 0.5 * importance_weighted_nll(flow, gaussian_u, 50))


def test_mixed_objective_validates():
    with pytest.raises(ValueError, match="energy"):
        mixed_objective(None, 1.0, 0.5)
    with pytest.raises(ValueError, match="energy"):
        mixed_objective(None, 1.0, iw_weight=0.5)
    with pytest.raises(ValueError, match="dim"):
        mixed_objective(gaussian_u, 1.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="same shape|both be"):
        pack_forces(torch.zeros(3, 2), torch.zeros(3, 3))


def test_split_by_replica_holds_out_the_end_of_each_replica():
    from boltzflow.experiments.bg_data import split_by_replica

    replica = np.repeat([0, 1, 2], 10)
    train, test = split_by_replica(replica, 0.2)
    assert sorted(test.tolist()) == [8, 9, 18, 19, 28, 29]
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 30


def test_constrained_bonds_get_harmonic_lengths():
    from boltzflow.energies.openmm_system import alanine_dipeptide, kt_kj_per_mol
    from boltzflow.experiments.bg_data import unconstrain_bonds
    from boltzflow.flows.internal import InternalCoordinates
    from boltzflow.flows.zmatrix import build_zmatrix

    mol = alanine_dipeptide(constraints="none")
    ic = InternalCoordinates(build_zmatrix(mol.topology))
    q = ic.inverse(torch.as_tensor(mol.positions).flatten()[None])[0].repeat(4000, 1)
    q[:, ic.bond_idx[0]] += 0.003 * torch.randn(4000)  # one free bond; all others look constrained
    new, fixed = unconstrain_bonds(q, ic, mol.system, np.random.default_rng(0), 300.0)
    assert len(fixed) == ic.bond_idx.numel() - 1
    torch.testing.assert_close(new[:, ic.bond_idx[0]], q[:, ic.bond_idx[0]])
    torch.testing.assert_close(new[:, ic.angle_idx], q[:, ic.angle_idx])
    # an X-H bond: std sqrt(kT / k) with the force field's k (about 0.004 nm at 300 K)
    rows = ic.zmatrix.rows
    names = [a.element.symbol for a in mol.topology.atoms()]
    r = next(r for r in range(2, len(rows)) if "H" in (names[rows[r, 0]], names[rows[r, 1]]))
    std = float(new[:, ic.bond_idx[r - 1]].std())
    assert 0.002 < std < 0.006
    k_ch = 284512.0  # amber99 CT-HC bond constant, kJ/mol/nm^2 (ignored if this bond is of another type)
    if names[rows[r, 1]] == "C":
        assert std == pytest.approx(math.sqrt(kt_kj_per_mol(300.0) / k_ch), rel=0.1)


def test_two_particle_bg_smoke(tmp_path):
    from boltzflow.experiments.two_particle_bg import run
    from boltzflow.recipes import load_recipe

    res = run(tmp_path / "tp", load_recipe("two-particle-bg", "smoke").config, seed=0, progress=False)
    saved = json.loads((tmp_path / "tp" / "results.json").read_text())
    for key in ("mean_r_bg", "mean_r_bg_err", "mean_r_quadrature", "ess_fraction", "acceptance_rate"):
        assert key in saved and saved[key] is not None
    assert 0 < res["ess_fraction"] <= 1 and 0 <= res["acceptance_rate"] <= 1
    assert abs(res["mean_r_bg"] - res["mean_r_quadrature"]) < 0.3  # a 3-epoch flow: only a sanity bound
    assert (tmp_path / "tp" / "checkpoints" / "nll+kl.pt").is_file()
    ess = saved["evaluation"]["ess_fraction"]  # one evaluation: mean ± sd over >= 4 independent draws
    assert len(ess["values"]) == saved["n_draws"] >= 4 and ess["mean"] == pytest.approx(np.mean(ess["values"]))
    assert len(set(ess["values"])) == len(ess["values"])  # the draws are independent, not one draw repeated


def test_alanine_bg_smoke(tmp_path):
    from boltzflow.energies.openmm_system import alanine_dipeptide
    from boltzflow.experiments.alanine_bg import alpha_l, run
    from boltzflow.flows.ic_flow import build_ic_spline
    from boltzflow.recipes import load_recipe
    from boltzflow.samplers.dataset import load_alanine_dataset
    from boltzflow.systems.registry import get_system
    from boltzflow.training.checkpoint import read_checkpoint

    system = get_system("alanine-dipeptide")
    ds = load_alanine_dataset()  # 360 frames outside αL and 40 in it, from the shipped MD
    in_al = alpha_l(system, torch.as_tensor(ds.xyz).flatten(-2)).numpy() > 0
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(~in_al), 360, replace=False), np.flatnonzero(in_al)[::10][:40]])
    rows = rng.permutation(rows)
    np.savez(tmp_path / "data.npz", xyz=ds.xyz[rows], replica=np.repeat([0, 1], 200), temperature_kelvin=300.0)
    cfg = load_recipe("alanine-bg", "smoke", [f"data.path={tmp_path / 'data.npz'}"]).config
    res = run(tmp_path / "ala", cfg, seed=0, progress=False)
    # the αL seeding ran: 2 short MD runs x 5 frames from αL training frames, still in αL, cached for a resume
    assert res["n_alpha_l_seed_frames"] == 10
    assert [st["stage"] for st in res["stages"]] == ["nll", "energy", "polish"]
    assert (tmp_path / "ala" / "checkpoints" / "polish.pt").is_file()
    seed_xyz = load_npz(tmp_path / "ala" / "data" / "alpha_l_seed.npz")["xyz"]
    assert seed_xyz.shape == (10, 22, 3) and alpha_l(system, torch.as_tensor(seed_xyz).flatten(-2)).mean() >= 0.8
    pop = res["evaluation"]["populations"]["alphaL"]  # reweighted αL with a bootstrap CI, beside the reference
    assert pop["lo"] <= pop["mean"] <= pop["hi"] and res["alpha_l_population_bg_ci95"] == [pop["lo"], pop["hi"]]
    assert res["alpha_l_population_umbrella"] == system.reference("umbrella").load()["alpha_l_population"]
    assert len(res["evaluation"]["ess_fraction"]["values"]) == 4
    keys = [
        "nll_test",
        "ess_fraction",
        "n_samples",
        "acceptance_rate",
        "alpha_l_population_data",
        "alpha_l_population_umbrella",
        "alpha_l_population_umbrella_err",
        "alpha_l_population_bg",
        "train_seconds",
    ]
    saved = json.loads((tmp_path / "ala" / "results.json").read_text())
    assert all(k in saved for k in keys) and math.isfinite(res["nll_test"])
    ckpt = read_checkpoint(tmp_path / "ala" / "checkpoints" / "energy.pt")
    spec = ckpt["flow_spec"]
    assert spec["kind"] == "ic_spline" and spec["info"]["molecule"] == "alanine-dipeptide"
    flow = build_ic_spline(spec["config"], spec["loc"], spec["scale"]).float()
    flow.load_state_dict(ckpt["model"])
    assert flow.sample(3).x.shape == (3, 66)
    for name in ("free_energy_phi_psi.png", "free_energy_phi.png", "energy_histograms.png"):
        assert (tmp_path / "ala" / "figures" / name).is_file()
    # `boltzflow sample` on a molecule checkpoint: xyz in the PDB's atom order, AMBER energy, log weights
    from boltzflow.cli import main
    from boltzflow.energies.amber import AmberEnergy

    out = tmp_path / "samples.npz"
    assert main(["sample", str(tmp_path / "ala" / "checkpoints" / "energy.pt"), "-n", "50", "--out", str(out)]) == 0
    s = load_npz(out)
    assert s["xyz"].shape == (50, 22, 3) and s["x"].shape == (50, 66)
    amber = AmberEnergy.from_system(alanine_dipeptide(constraints="none").system, 300.0)
    np.testing.assert_allclose(s["energy"], amber.energy(torch.as_tensor(s["x"]).reshape(50, 22, 3)).numpy(),
                               rtol=1e-9)
    np.testing.assert_allclose(s["log_w"], -s["energy"] - s["log_prob"], rtol=1e-12)


def test_pretrained_alanine_checkpoint_samples_with_weights(tmp_path):
    from boltzflow.cli import main
    from boltzflow.eval.weights import ess_fraction
    from boltzflow.systems.alanine import phi_psi
    from boltzflow.training.checkpoint import load_flow

    load_flow("alanine-dipeptide-bg")  # the shipped model, by name: a checkpoint of the registered ic_spline flow
    out = tmp_path / "s.npz"
    assert main(["sample", "alanine-dipeptide-bg", "-n", "500", "--seed", "1", "--out", str(out)]) == 0
    s = load_npz(out)
    assert s["xyz"].shape == (500, 22, 3) and np.isfinite(s["log_w"]).all()
    angles = phi_psi(torch.as_tensor(s["xyz"], dtype=torch.float64)).numpy()
    assert (angles[:, 0] < 0).mean() > 0.9  # the flow samples the phi < 0 basins
    assert ess_fraction(torch.as_tensor(s["log_w"])) > 0.02  # far from the degenerate single-sample limit


def test_umbrella_reference_loads_with_a_radian_grid():
    from boltzflow.systems.alanine import DEFAULT_UMBRELLA, load_umbrella, load_umbrella_reference

    ref = load_umbrella(Path(__file__).parents[1] / "docs" / "results" / "alanine-umbrella.json")
    grid = np.asarray(ref["phi_grid"])
    assert grid.shape == np.asarray(ref["free_energy_kt"]).shape and np.abs(grid).max() <= np.pi
    assert 0 < ref["alpha_l_population"] < 1
    # the package ships the same reference (no dependence on the working directory); the default is another candidate
    assert load_umbrella_reference("umbrella-0.5ns") == ref
    assert load_umbrella() == load_umbrella_reference(DEFAULT_UMBRELLA) != ref


def test_oversample_repeats_the_masked_rows():
    from boltzflow.experiments.bg_data import oversample

    x = torch.arange(8.0).reshape(4, 2)
    mask = torch.tensor([False, True, False, True])
    out = oversample(x, mask, 3)
    assert out.shape == (8, 2)
    torch.testing.assert_close(out[:4], x)
    torch.testing.assert_close(out[4:], torch.cat([x[mask], x[mask]]))
    assert oversample(x, mask, 1) is x
    with pytest.raises(ValueError, match=">= 1"):
        oversample(x, mask, 0)


def test_alpha_l_seeding_is_off_without_runs_or_alpha_l_frames_and_its_cache_follows_the_settings(tmp_path):
    import dataclasses

    from boltzflow.experiments.alanine_bg import _alpha_l_seed, alpha_l
    from boltzflow.experiments.runner import RunContext
    from boltzflow.recipes import load_recipe
    from boltzflow.samplers.dataset import load_alanine_dataset
    from boltzflow.systems.registry import get_system

    system = get_system("alanine-dipeptide")
    ds = load_alanine_dataset()
    in_al = alpha_l(system, torch.as_tensor(ds.xyz).flatten(-2)).numpy() > 0
    d = load_recipe("alanine-bg", "smoke").config.data
    ctx = [RunContext(tmp_path, s, False, None, 0.0) for s in (0, 1)]
    assert _alpha_l_seed(ctx[0], system, ds.xyz[~in_al][:50], d).shape == (0, 22, 3)  # no αL frame: no seeds
    mixed = np.concatenate([ds.xyz[~in_al][:50], ds.xyz[in_al][:5]]).astype(np.float64)
    assert _alpha_l_seed(ctx[0], system, mixed, dataclasses.replace(d, alpha_l_seed_runs=0)).shape == (0, 22, 3)
    a = _alpha_l_seed(ctx[0], system, mixed, d)
    assert a.shape == (d.alpha_l_seed_runs * d.alpha_l_seed_frames, 22, 3)
    np.testing.assert_array_equal(_alpha_l_seed(ctx[0], system, mixed, d), a)  # read back from the cache
    b = _alpha_l_seed(ctx[1], system, mixed, d)  # another seed is another run, not the cached one
    assert b.shape == a.shape and not np.array_equal(a, b)
    c = _alpha_l_seed(ctx[1], system, mixed + 0.001, d)  # other start frames at the same indices: a new run
    assert not np.array_equal(b, c)
