"""Inertial dynamics in torch (velocity Verlet, BAOAB) against closed forms and quadrature; flows as potentials."""

import math

import numpy as np
import pytest
import torch

from boltzflow.samplers.dynamics import autograd_potential, equilibrated_run, init_state, kinetic_energy, run
from boltzflow.samplers.flow_potential import BOLTZMANN_KJ_PER_MOL_K, FlowPotential
from boltzflow.training.force_matching import flow_forces


def harmonic_energy_sd(dt: float, n_periods: int = 40) -> tuple[float, float]:
    """Total-energy SD of velocity Verlet on U = x²/2 (m = 1, ω = 1) from x = 1, v = 0; and the amplitude."""
    pot = autograd_potential(lambda x: 0.5 * (x**2).sum(-1))
    n = int(round(n_periods * 2 * math.pi / dt))
    traj = run(pot, init_state(pot, torch.ones(1, 1), torch.zeros(1, 1)), torch.ones(1), dt, n)
    return float(traj.total[:, 0].std()), float(traj.x.abs().max())


def test_velocity_verlet_energy_error_is_the_closed_form_and_scales_as_dt_squared():
    """Velocity Verlet conserves H~ = v²/2 + x²(1 - h²/4)/2 exactly on the harmonic oscillator, so
    H = H~ + h² x² / 8 oscillates with SD h² A² / (16 sqrt 2) (SD of x² over a period: A² / (2 sqrt 2))."""
    sds = {}
    for dt in (0.1, 0.05):
        sd, amplitude = harmonic_energy_sd(dt)
        assert sd == pytest.approx(dt**2 * amplitude**2 / (16 * math.sqrt(2)), rel=0.03)
        sds[dt] = sd
    assert sds[0.1] / sds[0.05] == pytest.approx(4.0, rel=0.03)


def test_verlet_conserves_momentum_and_energy_of_a_molecule_shaped_system():
    """Two particles of different masses on a spring, shapes (r, n_atoms, 3) with masses (n_atoms,)."""
    pot = autograd_potential(lambda x: 50.0 * ((x[:, 0] - x[:, 1]).norm(dim=-1) - 0.1) ** 2)
    masses = torch.tensor([1.0, 12.0])
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[[0.0, 0.0, 0.0], [0.12, 0.01, 0.0]]]).repeat(3, 1, 1)
    v0 = torch.randn(x0.shape, generator=gen)
    traj = run(pot, init_state(pot, x0, v0), masses, 1e-3, 800, save_every=10)
    momentum = lambda v: (masses[:, None] * v).sum(-2)  # noqa: E731
    torch.testing.assert_close(momentum(traj.final.v), momentum(v0), atol=1e-12, rtol=0)
    assert float((traj.total - traj.total[0]).abs().max()) < 1e-3 * float(traj.kinetic.mean())
    assert float(kinetic_energy(v0, masses)[0]) == pytest.approx(0.5 * float((masses[:, None] * v0[0] ** 2).sum()))


def _quadrature_moments(u, grids, fns):
    mesh = torch.meshgrid(*grids, indexing="ij")
    w = torch.exp(-u(torch.stack(mesh, -1)))
    return [float((fn(*mesh) * w).sum() / w.sum()) for fn in fns]


@pytest.mark.parametrize("dim", [1, 2])
def test_baoab_langevin_samples_the_boltzmann_density(dim):
    """Double well (barrier 1 kT) in 1-D, and correlated with a harmonic y in 2-D: moments of 20000 independent
    chains after t = 40 (friction 1, dt 0.05) against quadrature, within 5 standard errors."""
    if dim == 1:
        u = lambda x: x[..., 0] ** 4 / 4 - x[..., 0] ** 2  # noqa: E731
        fns = [lambda x: x**2, lambda x: x**4, lambda x: (x > 0).double()]
    else:
        u = lambda x: x[..., 0] ** 4 / 4 - x[..., 0] ** 2 + 2 * (x[..., 1] - 0.5 * x[..., 0]) ** 2  # noqa: E731
        fns = [lambda x, y: x**2, lambda x, y: x * y, lambda x, y: y**2]
    grid = torch.linspace(-5, 5, 2001 if dim == 1 else 601)
    expected = _quadrature_moments(u, [grid] * dim, fns)
    gen = torch.Generator().manual_seed(11)
    n = 20000
    x0 = torch.zeros(n, dim)
    x0[:, 0] = math.sqrt(2) * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    traj = equilibrated_run(autograd_potential(u), x0, torch.ones(1), 1.0, 0.05, 0, 800, 800, friction=1.0,
                            generator=gen)
    x = traj.final.x
    for fn, e in zip(fns, expected, strict=True):
        values = fn(*x.T)
        assert abs(float(values.mean()) - e) < 5 * float(values.std()) / math.sqrt(n)


def test_langevin_without_kt_and_bad_steps_are_refused():
    pot = autograd_potential(lambda x: (x**2).sum(-1))
    state = init_state(pot, torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="kt"):
        run(pot, state, torch.ones(1), 0.1, 5, friction=1.0)
    with pytest.raises(ValueError, match="dt"):
        run(pot, state, torch.ones(1), -0.1, 5)


def tiny_alanine_flow():
    from boltzflow.experiments.bg_data import load_bg_data, to_internal
    from boltzflow.flows.ic_flow import ic_smooth_flow, ic_smooth_spec, ic_statistics
    from boltzflow.flows.internal import InternalCoordinates
    from boltzflow.systems.registry import get_system

    system = get_system("alanine-dipeptide")
    ic = InternalCoordinates(system.zmatrix())
    xyz = load_bg_data(None, system.temperature_kelvin, tuple(system.event_shape))["xyz"][::300]
    periodic = torch.zeros(ic.dim, dtype=torch.bool)
    periodic[ic.periodic_idx] = True
    stats = ic_statistics(to_internal(ic, xyz), periodic, min_scale=3e-3)
    kw = {"n_layers": 1, "components": 2, "hidden": (8,)}
    flow = ic_smooth_flow(ic.zmatrix, stats, **kw).double()
    return system, flow, ic_smooth_spec(ic.zmatrix, stats, **kw), xyz


def test_flow_potential_forces_are_kt_times_the_flow_forces_and_minus_grad_u():
    system, flow, _, xyz = tiny_alanine_flow()
    pot = FlowPotential(flow, system.event_shape, 300.0)
    x = torch.as_tensor(xyz[:3])
    u, f = pot(x)
    kt = BOLTZMANN_KJ_PER_MOL_K * 300.0
    torch.testing.assert_close(u, -kt * flow.log_prob(x.flatten(1)).detach())
    torch.testing.assert_close(f, kt * flow_forces(flow, x.flatten(1)).unflatten(-1, (22, 3)))
    e = torch.zeros_like(x)
    e[:, 5, 1] = 1e-6  # one Cartesian component, central difference
    fd = -(pot(x + e)[0] - pot(x - e)[0]) / 2e-6
    torch.testing.assert_close(f[:, 5, 1], fd, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        pot.reduced(x.flatten(1))


def _checkpoint(tmp_path):
    from boltzflow.training.checkpoint import save_checkpoint

    system, flow, spec, _ = tiny_alanine_flow()
    path = tmp_path / "flow.safetensors"
    save_checkpoint(path, {"model": flow.float().state_dict(), "flow_spec": spec,
                           "system": {"name": "alanine-dipeptide"}})
    return path


def test_simulate_with_a_flow_potential_writes_the_usual_output(tmp_path):
    from boltzflow.cli import main
    from boltzflow.io import load_npz

    path, out = _checkpoint(tmp_path), tmp_path / "run"
    args = ["simulate", "--potential", str(path), "--replicas", "2", "--ns", "0.00005", "--timestep-fs", "0.5",
            "--save-every-ps", "0.005", "--equilibrate-ps", "0.01", "--friction", "0", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} == {"topology.pdb", "provenance.json", "replica-00", "replica-01",
                                             "replica-00.xtc", "replica-01.xtc"}
    chunk = load_npz(out / "replica-01" / "chunk-00000.npz")
    assert chunk["xyz"].shape == (11, 22, 3) and chunk["energy_kj"].shape == (11,)
    np.testing.assert_allclose(chunk["time_ps"], 0.01 + 0.005 * np.arange(11))
    assert np.isfinite(chunk["energy_kj"]).all() and (chunk["kinetic_kj"] > 0).all()
    import mdtraj

    assert mdtraj.load(str(out / "replica-00.xtc"), top=str(out / "topology.pdb")).n_frames == 11


@pytest.mark.parametrize("extra, message", [
    (["--pdb", "x.pdb"], "--pdb"),
    (["--save-every-ps", "1"], "--save-every-ps"),
    (["--potential-missing"], None),
])
def test_simulate_potential_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    from boltzflow.cli import main

    path, out = _checkpoint(tmp_path), tmp_path / "run"
    if message is None:
        path, extra, message = tmp_path / "missing.safetensors", [], "missing.safetensors"
    args = ["simulate", "--potential", str(path), "--ns", "0.0001", "--timestep-fs", "1", "--out", str(out),
            "--save-every-ps", "0.01", *extra]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()
