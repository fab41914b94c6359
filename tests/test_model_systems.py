"""Model systems in float64: GMM-40, ManyWell-32, DW4, LJ13 against quadrature, closed forms and hand computations."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from boltzflow.energies.model import GaussianMixtureEnergy, ManyWellEnergy, double_well_log_z
from boltzflow.energies.particles import LennardJonesClusterEnergy, MultiDoubleWellEnergy, pair_distances, remove_com
from boltzflow.systems.gmm import fab_gmm_means, fab_gmm_scale
from boltzflow.systems.particles import com_basis, from_com_free, to_com_free
from boltzflow.systems.registry import get_system


def _finite_difference_grad(fn, x, h=1e-6):
    """Central differences of a scalar-per-sample energy, x of shape (n, ...) -> (n, ...)."""
    flat = x.reshape(len(x), -1)
    grad = torch.zeros_like(flat)
    for k in range(flat.shape[1]):
        e = torch.zeros_like(flat)
        e[:, k] = h
        grad[:, k] = (fn((flat + e).reshape(x.shape)) - fn((flat - e).reshape(x.shape))) / (2 * h)
    return grad.reshape(x.shape)


# --- GMM-40 ---------------------------------------------------------------------------------------------------


def test_gmm_means_reproduce_fabs_global_seed_draw():
    torch.manual_seed(0)  # FAB: torch.manual_seed(0), then GMM(...) draws torch.rand((40, 2)) in float32
    fab = ((torch.rand((40, 2), dtype=torch.float32) - 0.5) * 2 * 40).double()
    ours = fab_gmm_means()
    assert torch.equal(ours, fab)
    assert ours.abs().max() <= 40 and ours.shape == (40, 2)
    assert fab_gmm_scale() == pytest.approx(math.log1p(math.e), abs=1e-7)  # softplus(1) in float32


def test_gmm_matches_torch_distributions_and_is_normalised_on_a_grid():
    system = get_system("gmm40")
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(40, dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(system.means, system.scale), 1))
    x = torch.randn(500, 2, dtype=torch.float64) * 30
    torch.testing.assert_close(-system.energy()(x), mix.log_prob(x), rtol=1e-12, atol=1e-10)
    # log Z = 0: trapezoid rule on [-55, 55]^2 (spectrally accurate for Gaussians; mass outside < 1e-30)
    t = torch.linspace(-55, 55, 551, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    h = float(t[1] - t[0])
    z = sum(float(torch.exp(-system.energy()(g)).sum()) for g in grid.split(200_000)) * h * h
    assert system.log_z == 0.0
    assert abs(math.log(z)) < 1e-10


def test_gmm_exact_samples_match_moments_and_marginal_cdfs():
    system = get_system("gmm40")
    x = system.sample_exact(100_000, torch.Generator().manual_seed(1))
    mu, s = system.means, system.scale
    mean = mu.mean(0)
    cov = torch.eye(2, dtype=torch.float64) * s**2 + torch.cov(mu.T, correction=0)
    se = torch.sqrt(torch.diagonal(cov) / len(x))
    assert bool(((x.mean(0) - mean).abs() < 5 * se).all())
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0.03, atol=0.0)
    for k in range(2):  # KS per coordinate against the exact mixture marginal
        cdf = lambda t, k=k: stats.norm.cdf((np.asarray(t)[:, None] - mu[:, k].numpy()) / s).mean(1)  # noqa: E731
        assert stats.kstest(x[:, k].numpy(), cdf).pvalue > 1e-3


def test_gmm_energy_dtype_device_and_force():
    energy = get_system("gmm40").energy()
    x = torch.randn(7, 2, dtype=torch.float64) * 20
    u32 = energy(x.float())
    assert u32.dtype == torch.float32
    torch.testing.assert_close(u32.double(), energy(x), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(energy.force(x), -_finite_difference_grad(energy, x), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="expects configurations of shape"):
        energy(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="scales must be > 0"):
        GaussianMixtureEnergy(torch.zeros(2, 2), -1.0)


# --- ManyWell-32 ----------------------------------------------------------------------------------------------


def test_double_well_log_z_against_gauss_legendre_and_fab():
    t, w = np.polynomial.legendre.leggauss(150)
    total = 0.0
    for lo, hi in ((-6.0, -2.0), (-2.0, 0.0), (0.0, 2.0), (2.0, 6.0)):  # mass beyond |x| = 6 is below e^-1000
        x = 0.5 * (hi - lo) * t + 0.5 * (hi + lo)
        total += 0.5 * (hi - lo) * float(np.sum(w * np.exp(-(-0.5 * x + -6 * x**2 + x**4))))
    assert double_well_log_z() == pytest.approx(math.log(total), abs=1e-12)
    assert math.exp(double_well_log_z()) == pytest.approx(11784.50927, rel=1e-9)  # FAB's constant


def test_manywell_log_z_is_16_pairs_and_matches_2d_quadrature_of_one_pair():
    system = get_system("manywell32")
    pair = ManyWellEnergy(dim=2)
    t = torch.linspace(-8, 8, 3201, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    h = float(t[1] - t[0])
    log_z_pair = math.log(float(torch.exp(-pair(grid)).sum()) * h * h)  # trapezoid, spectrally accurate
    assert pair.log_z() == pytest.approx(log_z_pair, abs=1e-9)
    assert system.log_z == pytest.approx(16 * log_z_pair, abs=1e-7)
    x = torch.randn(5, 32, dtype=torch.float64)
    torch.testing.assert_close(system.energy()(x), sum(pair(x[:, 2 * j : 2 * j + 2]) for j in range(16)))


def test_manywell_exact_samples_against_the_density():
    system = get_system("manywell32")
    assert system.grid.cdf_error < 1e-8
    x = system.sample_exact(20_000, torch.Generator().manual_seed(2))
    assert x.shape == (20_000, 32)
    # independent truth: CDF of the double-well coordinate by cumulative Simpson on another grid
    t = np.linspace(-4.5, 4.5, 180_001)
    dens = np.exp(-(-0.5 * t - 6 * t**2 + t**4) - 10.0)
    cdf = np.concatenate([[0.0], integrate.cumulative_simpson(dens, x=t)])
    cdf /= cdf[-1]
    z = math.exp(double_well_log_z() - 10.0)
    m1 = integrate.simpson(t * dens, x=t) / z
    m2 = integrate.simpson(t * t * dens, x=t) / z
    for j in (0, 7, 15):
        xj = x[:, 2 * j].numpy()
        assert stats.kstest(xj, lambda v: np.interp(v, t, cdf)).pvalue > 1e-3
        assert abs(xj.mean() - m1) < 5 * math.sqrt((m2 - m1**2) / len(xj))
        assert stats.kstest(x[:, 2 * j + 1].numpy(), "norm").pvalue > 1e-3
    p_deep = float(np.mean(x[:, 0::2].numpy() > 0))
    assert system.grid.p_positive == pytest.approx(1 - np.interp(0.0, t, cdf), abs=1e-8)
    assert abs(p_deep - system.grid.p_positive) < 5 * math.sqrt(0.25 / (20_000 * 16))


def test_manywell_force_modes_and_bad_dims():
    system = get_system("manywell32")
    energy = system.energy()
    x = torch.randn(4, 32, dtype=torch.float64) * 1.5
    analytic = torch.empty_like(x)
    analytic[:, 0::2] = -(-0.5 - 12 * x[:, 0::2] + 4 * x[:, 0::2] ** 3)
    analytic[:, 1::2] = -x[:, 1::2]
    torch.testing.assert_close(energy.force(x), analytic)
    torch.testing.assert_close(energy.force(x), -_finite_difference_grad(energy, x), rtol=1e-6, atol=1e-6)
    x[0, 0::2] = 1.0
    x[1, 0::2] = -1.0
    modes = system.mode_of(x)
    assert int(modes[0]) == 2**16 - 1 and int(modes[1]) == 0
    with pytest.raises(ValueError, match="even number"):
        ManyWellEnergy(dim=3)


# --- DW4 and LJ13 ---------------------------------------------------------------------------------------------


def test_dw4_energy_of_a_square_by_hand_and_forces():
    side = 2.0
    x = torch.tensor([[[0, 0], [side, 0], [side, side], [0, side]]], dtype=torch.float64)
    pair = lambda d: -4 * (d - 4) ** 2 + 0.9 * (d - 4) ** 4  # noqa: E731  a = 0, b = -4, c = 0.9, d0 = 4
    by_hand = 4 * pair(side) + 2 * pair(side * math.sqrt(2))
    energy = get_system("dw4").energy()
    assert float(energy(x)) == pytest.approx(by_hand, rel=1e-14)
    y = torch.randn(3, 4, 2, dtype=torch.float64) * 3
    torch.testing.assert_close(energy.force(y), -_finite_difference_grad(energy, y), rtol=1e-6, atol=1e-6)
    d_min = 4 - math.sqrt(4 / (2 * 0.9))  # pair minimum: derivative -8 s + 3.6 s^3 = 0
    two = MultiDoubleWellEnergy(n_particles=2, spatial_dim=2)
    r = torch.tensor([[[0.0, 0.0], [d_min, 0.0]]], dtype=torch.float64)
    assert float(two.force(r).abs().max()) < 1e-10


def test_lj13_energy_by_hand_on_a_line_and_forces():
    spacing = 1.1
    x = torch.zeros(1, 13, 3, dtype=torch.float64)
    x[0, :, 0] = spacing * torch.arange(13)
    lj = sum((13 - k) * ((1 / (spacing * k)) ** 12 - 2 * (1 / (spacing * k)) ** 6) for k in range(1, 13))
    centre = spacing * 6
    harmonic = 0.5 * sum((spacing * i - centre) ** 2 for i in range(13))
    energy = get_system("lj13").energy()
    assert float(energy(x)) == pytest.approx(lj + harmonic, rel=1e-13)
    sites = torch.stack(torch.meshgrid(*[torch.arange(3.0, dtype=torch.float64)] * 3, indexing="ij"), -1)
    y = remove_com(1.1 * sites.reshape(-1, 3)[:13] + 0.05 * torch.randn(2, 13, 3, dtype=torch.float64))
    torch.testing.assert_close(energy.force(y), -_finite_difference_grad(energy, y), rtol=1e-6, atol=1e-6)


def test_lj13_icosahedral_minimum_matches_the_cambridge_cluster_database():
    """Pure LJ (no harmonic term): the relaxed icosahedron gives -44.326801 epsilon (Wales & Doye 1997)."""
    phi = (1 + math.sqrt(5)) / 2
    verts = [(0, s1, s2 * phi) for s1 in (-1, 1) for s2 in (-1, 1)]
    verts = torch.tensor([v[i:] + v[:i] for v in verts for i in range(3)], dtype=torch.float64)
    unit = torch.cat([torch.zeros(1, 3, dtype=torch.float64), verts / verts.norm(dim=1, keepdim=True)])
    pure = LennardJonesClusterEnergy(harmonic=0.0)
    radii = torch.linspace(0.9, 1.1, 20001, dtype=torch.float64)
    u = pure.lj_energy(radii[:, None, None] * unit)
    assert float(u.min()) == pytest.approx(-44.326801, abs=2e-6)
    assert 0 < int(u.argmin()) < len(radii) - 1  # an interior minimum


def test_energies_are_invariant_under_rigid_motions_and_permutations():
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    for name, dim in (("dw4", 2), ("lj13", 3)):
        energy = get_system(name).energy()
        x = torch.randn(4, energy.event_shape[0], dim, dtype=torch.float64) * 1.5
        rot = q[:dim, :dim] if dim == 3 else torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
        moved = x[:, torch.randperm(x.shape[1])] @ rot.T + torch.randn(1, 1, dim, dtype=torch.float64)
        torch.testing.assert_close(energy(moved), energy(x), rtol=1e-10, atol=1e-9)


def test_com_free_coordinates_are_an_isometry_onto_the_zero_com_subspace():
    q = com_basis(13)
    torch.testing.assert_close(q.T @ q, torch.eye(12, dtype=torch.float64))
    assert float((q.T @ torch.ones(13, dtype=torch.float64)).abs().max()) < 1e-14
    x = torch.randn(5, 13, 3, dtype=torch.float64)
    y = to_com_free(x)
    assert y.shape == (5, 36)
    torch.testing.assert_close(from_com_free(y, 13), remove_com(x))
    torch.testing.assert_close(to_com_free(from_com_free(y, 13)), y)
    torch.testing.assert_close((from_com_free(y[:1], 13) - from_com_free(y[1:2], 13)).norm(), (y[0] - y[1]).norm())
    system = get_system("lj13")
    assert system.com_free_dim == 36
    torch.testing.assert_close(system.com_free_energy()(y), system.energy()(x))


def test_pair_distances_match_a_loop_and_have_zero_gradient_at_contact():
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    loop = torch.stack([torch.stack([(x[b, i] - x[b, j]).norm() for i in range(5) for j in range(i + 1, 5)])
                        for b in range(2)])
    torch.testing.assert_close(pair_distances(x), loop)
    y = torch.zeros(1, 2, 2, dtype=torch.float64, requires_grad=True)
    pair_distances(y).sum().backward()
    assert torch.isfinite(y.grad).all()


# --- the MCMC reference machinery -----------------------------------------------------------------------------


def test_integrated_autocorrelation_time_of_an_ar1_process():
    from boltzflow.eval.autocorrelation import autocorrelation, integrated_time, thinned_time

    rng = np.random.default_rng(0)
    phi, n_steps, n_chains = 0.8, 4000, 100
    x = np.zeros((n_steps, n_chains))
    x[0] = rng.normal(size=n_chains) / math.sqrt(1 - phi**2)
    for t in range(1, n_steps):
        x[t] = phi * x[t - 1] + rng.normal(size=n_chains)
    rho = autocorrelation(x)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(phi, abs=0.01)
    assert integrated_time(rho) == pytest.approx((1 + phi) / (1 - phi), rel=0.05)
    exact = phi ** np.arange(n_steps)
    assert thinned_time(exact, 3) == pytest.approx(1 + 2 * phi**3 / (1 - phi**3), rel=1e-9)


def test_com_projected_metropolis_samples_a_harmonic_cluster_exactly(tmp_path):
    """ε = 0 leaves u = ½ Σ|x_i − x̄|², i.e. a standard Gaussian in the (n − 1)·d subspace coordinates."""
    from boltzflow.systems.particles import ParticleSystem
    from boltzflow.systems.particles_reference import McmcSettings, run_seed

    system = ParticleSystem("harmonic", LennardJonesClusterEnergy(3, 2, epsilon=0.0), "test", "none")
    s = McmcSettings(n_chains=200, burn_in=600, n_per_chain=8, thin=40, record_every=4, init_spacing=1.0)
    run = run_seed(system, s, 0, False, tmp_path / "ck.pt")
    x = torch.as_tensor(run["x"])
    assert x.shape == (1600, 3, 2) and float(x.mean(1).abs().max()) < 1e-12
    y = to_com_free(x).numpy()
    assert abs(run["u"].mean() - 2.0) < 5 * math.sqrt(2.0 / len(y))  # u = ½ χ²_4: mean 2, variance 2
    for k in range(4):
        assert stats.kstest(y[:, k], "norm").pvalue > 1e-3


def test_mcmc_resumes_bit_identically_and_writes_provenance(tmp_path, monkeypatch):
    import boltzflow.systems.particles_reference as ref

    s = ref.McmcSettings(n_chains=8, burn_in=30, n_per_chain=4, thin=10, record_every=2)
    system = get_system("dw4")
    whole = ref.run_seed(system, s, 0, False, tmp_path / "a.safetensors", every=1000)
    saves, original = [], ref.save_run_checkpoint

    def stop_after_two(path, obj):  # a kill right after the second checkpoint
        original(path, obj)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ref, "save_run_checkpoint", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        ref.run_seed(system, s, 0, False, tmp_path / "b.safetensors", every=7)
    monkeypatch.setattr(ref, "save_run_checkpoint", original)
    resumed = ref.run_seed(system, s, 0, False, tmp_path / "b.safetensors", every=7)
    np.testing.assert_array_equal(resumed["x"], whole["x"])
    assert resumed["acceptance"] == whole["acceptance"]
    prov = ref.make_reference("dw4", tmp_path, (0, 1), False, s)
    assert prov["n_samples"] == 64 and len(prov["per_seed"]) == 2
    assert {"distance_w2", "distance_w2_floor", "energy_w2", "energy_w2_floor"} <= set(prov["noise_floors"])
    assert (tmp_path / "dw4-mcmc.npz").exists() and (tmp_path / "dw4-mcmc.json").exists()


@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_shipped_mcmc_references_are_centred_and_documented(name):
    from boltzflow.io import load_npz
    from boltzflow.systems.particles import data_dir

    system = get_system(name)
    raw = load_npz(data_dir() / f"{name}-mcmc.npz")
    assert raw["x"].dtype == np.float32 and 10_000 <= len(raw["x"]) <= 20_000
    x = system.reference("mcmc").load()
    assert x.dtype == np.float64 and x.shape == (len(raw["x"]), *system.event_shape)
    assert np.abs(x.mean(1)).max() < 1e-5  # centre of mass removed (float32 storage)
    prov = system.provenance()
    assert prov["n_samples"] == len(x) and sorted(set(raw["seed"].tolist())) == prov["seeds"]
    u = system.energy()(torch.as_tensor(x)).numpy()
    assert np.isfinite(u).all()
    assert u.mean() == pytest.approx(np.mean([s["mean_energy"] for s in prov["per_seed"]]), abs=0.05)
    floors = prov["noise_floors"]
    assert floors["distance_w2"] < floors["distance_w2_floor"] + 4 * max(floors["distance_w2_sd"], 1e-3)
    eq = prov["equilibrium_checks"]
    assert abs(eq["virial"] - system.com_free_dim) < 4 * eq["virial_se"]
    assert abs(eq["configurational_temperature"] - 1) < 4 * eq["configurational_temperature_se"]


def test_equilibrium_checks_are_exact_for_the_harmonic_cluster():
    """Exact N(0, I) samples in subspace coordinates: virial mean (n−1)d, configurational temperature 1."""
    from boltzflow.systems.particles import ParticleSystem
    from boltzflow.systems.particles_reference import equilibrium_checks

    system = ParticleSystem("harmonic", LennardJonesClusterEnergy(4, 3, epsilon=0.0), "test", "none")
    y = torch.randn(20_000, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = equilibrium_checks(system, from_com_free(y, 4).numpy())
    assert out["virial_expected"] == 9 and abs(out["virial"] - 9) < 4 * out["virial_se"]
    assert out["configurational_temperature"] == pytest.approx(1.0, abs=4 * out["configurational_temperature_se"])
    hot = equilibrium_checks(system, from_com_free(1.2 * y, 4).numpy())  # samples at kT = 1.44
    assert hot["configurational_temperature"] == pytest.approx(1.44, rel=0.03)
