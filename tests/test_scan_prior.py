"""Data-free statistics from energy scans (systems/scan_prior.py) against closed forms, and the CMT prior option."""

import math

import numpy as np
import pytest
import torch

from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.zmatrix import build_zmatrix
from boltzflow.systems.scan_prior import scan_statistics

CHAIN = [(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)]  # 6 atoms: d = 12 (5 bonds, 4 angles, 3 torsions)


def _setup(kappa: float = 6.0, tau: float = 2.0):
    ic = InternalCoordinates(build_zmatrix(CHAIN, 6)).double()
    d = ic.dim
    c = torch.empty(d, dtype=torch.float64)
    c[ic.bond_idx] = torch.linspace(0.10, 0.15, ic.bond_idx.numel(), dtype=torch.float64)
    c[ic.angle_idx] = torch.linspace(1.8, 2.1, ic.angle_idx.numel(), dtype=torch.float64)
    mu = torch.tensor([0.7, -2.5, 3.0], dtype=torch.float64)[: ic.torsion_idx.numel()]
    c[ic.torsion_idx] = mu
    k = torch.empty(d, dtype=torch.float64)
    k[ic.bond_idx] = 2e5  # kT/nm^2: sd sqrt(tau / k) = 3.2e-3 nm at tau = 2
    k[ic.angle_idx] = 300.0  # kT/rad^2: sd 0.082 rad
    kappas = torch.tensor([kappa, 0.05, 2 * kappa], dtype=torch.float64)[: ic.torsion_idx.numel()]

    def energy(x):
        q = ic.inverse(x)[0]
        lin = torch.cat([ic.bond_idx, ic.angle_idx])
        u = 0.5 * (k[lin] * (q[..., lin] - c[lin]) ** 2).sum(-1)
        return u - (kappas * torch.cos(q[..., ic.torsion_idx] - mu)).sum(-1)

    x_ref = ic(c[None])[0][0]
    return ic, energy, x_ref, c, k, mu, kappas, tau


def test_scan_matches_closed_forms():
    ic, energy, x_ref, c, k, mu, kappas, tau = _setup()
    r = scan_statistics(ic, energy, x_ref, temperature_factor=tau, wide_spread=1.0, n_grid=241)
    lin = torch.cat([ic.bond_idx, ic.angle_idx])
    torch.testing.assert_close(r.stats.loc[lin], c[lin], rtol=0, atol=1e-6)
    torch.testing.assert_close(r.stats.scale[lin], (tau / k[lin]).sqrt(), rtol=1e-3, atol=0)
    assert float(r.edge_weight.max()) < 1e-6
    # von Mises profile exp(kappa cos(t - mu) / tau): R = I1(kappa / tau) / I0(kappa / tau)
    kt = (kappas / tau).numpy()
    from scipy.special import i0e, i1e

    spread = np.sqrt(-2 * np.log(i1e(kt) / i0e(kt)))
    np.testing.assert_allclose(r.spread[ic.torsion_idx].numpy(), spread, rtol=1e-8)
    narrow = spread < 1.0
    assert narrow.tolist() == [True, False, True]
    t = ic.torsion_idx[torch.as_tensor(narrow)]
    torch.testing.assert_close(r.stats.loc[t], mu[torch.as_tensor(narrow)], rtol=0, atol=1e-8)
    torch.testing.assert_close(r.stats.scale[t], torch.as_tensor(spread[narrow]), rtol=1e-8, atol=0)
    assert r.wide.tolist() == [False] * 9 + [False, True, False]
    assert float(r.stats.scale[ic.torsion_idx[1]]) == 1.0
    assert r.n_evaluations == ic.dim * 241
    assert r.summary()["wide_indices"] == [10]


def test_forced_wide_and_temperature():
    ic, energy, x_ref, *_ = _setup()
    rows = ic.zmatrix.rows
    t0 = int(ic.torsion_idx[0])
    atoms = tuple(int(a) for a in rows[3])[::-1]  # either direction names the torsion
    r = scan_statistics(ic, energy, x_ref, wide=[atoms])
    assert bool(r.wide[t0]) and float(r.stats.scale[t0]) == 1.0
    hot = scan_statistics(ic, energy, x_ref, temperature_factor=8.0)
    cold = scan_statistics(ic, energy, x_ref, temperature_factor=2.0)
    torch.testing.assert_close(hot.stats.scale[ic.bond_idx], 2 * cold.stats.scale[ic.bond_idx], rtol=1e-3, atol=0)
    with pytest.raises(ValueError, match="not a torsion of the Z-matrix"):
        scan_statistics(ic, energy, x_ref, wide=[(0, 1, 2, 5)])


@pytest.mark.parametrize("kwargs", [{"temperature_factor": 0.0}, {"temperature_factor": math.nan},
                                    {"wide_spread": -1.0}, {"n_grid": 4}, {"bond_range": 1.0}])
def test_bad_settings(kwargs):
    ic, energy, x_ref, *_ = _setup()
    with pytest.raises(ValueError):
        scan_statistics(ic, energy, x_ref, **kwargs)


def test_nonfinite_energies_are_excluded():
    ic, energy, x_ref, *_ = _setup()

    def holey(x):
        u = energy(x)
        return torch.where(u > 50.0, torch.nan, u)

    r = scan_statistics(ic, holey, x_ref)
    assert torch.isfinite(r.stats.loc).all() and torch.isfinite(r.stats.scale).all()
    assert torch.isfinite(r.barrier).all()
    with pytest.raises(ValueError, match="not finite anywhere"):
        scan_statistics(ic, lambda x: torch.full(x.shape[:-1], torch.nan, dtype=x.dtype), x_ref)


def test_cmt_scan_prior_starts_near_the_target():
    """The alanine-dipeptide flow from the scan prior samples energies thousands of kT below the PDB prior's."""
    from boltzflow.experiments.cmt_config import CMTFlow
    from boltzflow.experiments.cmt_report import build_flow_for
    from boltzflow.systems.registry import get_system

    system = get_system("alanine-dipeptide")
    energy = system.flat_energy()
    medians = {}
    for prior in ("pdb", "scan"):
        flow, spec = build_flow_for(system, CMTFlow(kind="ic_spline", n_layers=1, hidden=[8], bins=4, prior=prior), 0)
        with torch.no_grad():
            x = flow.double().sample(2000, generator=torch.Generator().manual_seed(1)).x
        medians[prior] = float(energy(x).median())
        if prior == "scan":
            scan = spec["info"]["scan"]
            assert scan["n_evaluations"] == 60 * 121
            assert scan["n_wide_torsions"] == 5  # phi, psi (backbone) and the three methyl rotors
    assert medians["scan"] < 300.0 < 3000.0 < medians["pdb"], medians


@pytest.mark.parametrize("field,value", [("prior", "md"), ("scan_temperature_factor", 0.0),
                                         ("wide_spread", math.inf), ("wide_backbone", "yes")])
def test_cmt_flow_prior_settings_rejected(field, value):
    from boltzflow.experiments.cmt_config import CMTFlow

    with pytest.raises(ValueError, match=field):
        CMTFlow(kind="ic_spline", **{field: value})
